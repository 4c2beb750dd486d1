package sim

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
)

// RouteFaults sets one account's injected faults (a Faults body; answers
// 204). Like the other /_sim routes it is unauthenticated.
const RouteFaults = "PUT /_sim/accounts/{email}/faults"

// The refusals Faults.Submit can inject.
const (
	FaultRateLimited  = "rate_limited" // 429 with Retry-After Faults.RetryAfter
	FaultDailyQuota   = "daily_quota"  // 429 daily_quota_exceeded until Faults.QuotaReset, then none
	FaultUnauthorized = "unauthorized" // 401
	FaultUnavailable  = "unavailable"  // 503, with Retry-After Faults.RetryAfter if set
)

// Faults are failures injected for one account, on top of Config's rates:
// they let a test break one account of a pool and mend it again.
type Faults struct {
	// Submit refuses every new submission of the account with one of the
	// Fault* refusals ("" refuses none).
	Submit     string        `json:"submit"`
	RetryAfter time.Duration `json:"retryAfter"`
	QuotaReset time.Time     `json:"quotaReset"`
	// ProbeFails makes the account's probes (ltxstudio.RouteMe) answer 401.
	ProbeFails bool `json:"probeFails"`
}

// SetFaults replaces the faults injected for email's account.
func (s *Server) SetFaults(email string, f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accountLocked(strings.ToLower(email)).faults = f
}

// refusalLocked is the refusal a's faults impose on a new submission at
// now, if any.
func (a *account) refusalLocked(now time.Time) *refusal {
	f := a.faults
	switch f.Submit {
	case FaultRateLimited:
		return &refusal{status: http.StatusTooManyRequests, code: ltxstudio.CodeRateLimited,
			msg: "simulated rate limit", retryAfter: f.RetryAfter}
	case FaultDailyQuota:
		if now.Before(f.QuotaReset) {
			return &refusal{status: http.StatusTooManyRequests, code: ltxstudio.CodeDailyQuota,
				msg: "simulated daily quota exhausted", resetAt: f.QuotaReset}
		}
	case FaultUnauthorized:
		return &refusal{status: http.StatusUnauthorized, code: ltxstudio.CodeUnauthorized,
			msg: "simulated authentication failure"}
	case FaultUnavailable:
		return &refusal{status: http.StatusServiceUnavailable, code: ltxstudio.CodeUnavailable,
			msg: "simulated service outage", retryAfter: f.RetryAfter}
	}
	return nil
}

// probe counts a probe of email's account and reports whether it passes.
func (s *Server) probe(email string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accountLocked(email)
	a.probes++
	return !a.faults.ProbeFails
}

func (s *Server) handleMe(w http.ResponseWriter, _ *http.Request, email string) {
	if !s.probe(email) {
		writeError(w, http.StatusUnauthorized, ltxstudio.CodeUnauthorized, "simulated probe failure")
		return
	}
	writeJSON(w, http.StatusOK, ltxstudio.Me{Email: email})
}

func (s *Server) handleFaults(w http.ResponseWriter, r *http.Request) {
	var f Faults
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBytes)).Decode(&f); err != nil {
		writeError(w, http.StatusBadRequest, ltxstudio.CodeInvalid, "body is not a Faults object")
		return
	}
	s.SetFaults(r.PathValue("email"), f)
	w.WriteHeader(http.StatusNoContent)
}
