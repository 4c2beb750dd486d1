// Package sim is an in-process simulator of the LTX Studio HTTP contract
// defined in internal/provider/ltxstudio/wire.go, so the real ltxstudio
// client runs against it unchanged. It injects latency and failures as
// configured, and records what it saw (peak concurrency per account,
// submissions per job attempt) so tests and benchmarks can check poolgate's
// invariants from the upstream's side.
//
// Time comes from an injected clock and a generation's state is derived
// from it on every read, so tests can drive it with a fake clock. The clock
// is expected not to run backwards; if it does, answers stay exact but get
// slower.
package sim

import (
	"context"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/poolgate/poolgate/internal/cookies"
	"github.com/poolgate/poolgate/internal/provider/ltxapi"
	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
)

// The simulator's own routes, outside the LTX contract and unauthenticated.
const (
	RouteStats = "GET /_sim/stats"  // answers Stats as JSON
	RouteReset = "POST /_sim/reset" // clears all state, answers 204
)

// ModerationTrigger in a submission's params.prompt makes the simulator
// refuse it with 422 and ltxstudio.CodeModerated.
const ModerationTrigger = "moderate-me"

// FailureMessage is the error of a generation failed by Config.FailureRate.
const FailureMessage = "simulated generation failure"

// Server is the simulator. It is an http.Handler; all its methods are safe
// for concurrent use.
type Server struct {
	now func() time.Time
	mux *http.ServeMux

	// mu guards everything below. Every state change reads the clock while
	// holding it, so lock order is time order and the running counts that
	// peaks are computed from are exact.
	mu         sync.Mutex
	cfg        Config
	rng        *rand.Rand
	accounts   map[string]*account // by lower-cased email
	submits    map[string]int      // submit POSTs received, by idempotency key
	total      int                 // submit POSTs received with a key
	duplicates int                 // of those, ones whose key had been seen before
	jobCalls   map[string]int      // requests naming a job (submit, status, lookup, cancel), by job id
	lastID     uint64              // survives Reset, so ids are never reused

	// tokens caches decoded lt_tokens: a token's claims never change, and
	// decoding one per request was a tenth of a benchmark's CPU.
	tokens tokenCache

	apiKeys apiKeys // the LTX-2 API side (ltxapi.go), under its own lock
}

// tokenCache maps an lt_token to its claims; bounded, it starts over when
// full.
type tokenCache struct {
	mu sync.Mutex
	m  map[string]cookies.Claims
}

func (c *tokenCache) claims(tok string) (cookies.Claims, error) {
	c.mu.Lock()
	cl, ok := c.m[tok]
	c.mu.Unlock()
	if ok {
		return cl, nil
	}
	cl, err := cookies.DecodeJWT(tok)
	if err != nil {
		return cl, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= 10_000 {
		c.m = map[string]cookies.Claims{}
	}
	c.m[tok] = cl
	c.mu.Unlock()
	return cl, nil
}

// account is one upstream identity, as named by its token's email claim.
type account struct {
	byID  map[string]*generation
	byKey map[string]*generation
	// active holds every generation whose endsAt is after prunedAt, and
	// possibly some that ended since; see running.
	active   []*generation
	prunedAt time.Time

	submitted, peak, refreshes, probes int
	refused                            int // new submissions refused by injection

	// requests counts every request made as this account; requestTimes
	// holds when the latest of them arrived (up to maxRequestTimes), so a
	// test can check the rate poolgate kept to.
	requests     int
	requestTimes []time.Time
	faults       Faults
}

// maxRequestTimes bounds the arrival times kept per account.
const maxRequestTimes = 100_000

// generation is one simulated job. It runs over [startedAt, endsAt);
// cancelling moves endsAt to the time of the cancel.
type generation struct {
	id, key, typ, clientRef string
	startedAt, endsAt       time.Time
	fail, canceled          bool
}

// New returns a simulator configured by cfg (rates outside [0, 1] and
// negative durations are clamped) and reading time from now, or from
// time.Now if now is nil.
func New(cfg Config, now func() time.Time) *Server {
	if now == nil {
		now = time.Now
	}
	s := &Server{now: now}
	s.cfg = cfg.clamped()
	s.clear()
	s.mux = s.routes()
	return s
}

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc(ltxstudio.RouteSubmit, s.handleSubmit)
	mux.HandleFunc(ltxstudio.RouteGet, s.authed(s.handleGet))
	mux.HandleFunc(ltxstudio.RouteLookup, s.authed(s.handleLookup))
	mux.HandleFunc(ltxstudio.RouteCancel, s.authed(s.handleCancel))
	mux.HandleFunc(ltxstudio.RouteRefresh, s.handleRefresh)
	mux.HandleFunc(ltxstudio.RouteMe, s.authed(s.handleMe))
	mux.HandleFunc(RouteFaults, s.handleFaults)
	mux.HandleFunc(ltxapi.RouteTextToVideo, s.handleGenerate)
	mux.HandleFunc(ltxapi.RouteImageToVideo, s.handleGenerate)
	mux.HandleFunc(RouteStats, s.handleStats)
	mux.HandleFunc(RouteReset, s.handleReset)
	return mux
}

// ServeHTTP serves the LTX contract and the simulator's own routes. Every
// request to the contract is counted against the account its cookies
// name, before anything else is decided about it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, simPrefix) {
		jar := parseCookies(r)
		r = r.WithContext(context.WithValue(r.Context(), jarKey{}, jar))
		if email := s.requester(jar); email != "" {
			s.countRequest(email)
		}
	}
	s.mux.ServeHTTP(w, r)
}

// simPrefix starts the simulator's own routes, which no account calls.
const simPrefix = "/_sim/"

// SetConfig replaces the configuration (clamped as in New) and reseeds the
// random source from it. Generations already created keep their outcome
// and duration.
func (s *Server) SetConfig(cfg Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg = cfg.clamped()
	s.rng = newRand(s.cfg.Seed)
}

// Reset forgets every account, generation and counter, and reseeds the
// random source. Generation ids keep counting up, so an id from before a
// Reset is never reissued.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clear()
}

func (s *Server) clear() {
	s.rng = newRand(s.cfg.Seed)
	s.accounts = make(map[string]*account)
	s.submits = make(map[string]int)
	s.jobCalls = make(map[string]int)
	s.total, s.duplicates = 0, 0
	s.apiKeys.clear()
}

func newRand(seed int64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15))
}

// accountLocked returns the account for email, creating it on first use.
func (s *Server) accountLocked(email string) *account {
	a, ok := s.accounts[email]
	if !ok {
		a = &account{byID: make(map[string]*generation), byKey: make(map[string]*generation)}
		s.accounts[email] = a
	}
	return a
}

// knownLocked returns email's account, or an empty one that is not
// stored, so that reads do not create accounts.
func (s *Server) knownLocked(email string) *account {
	if a, ok := s.accounts[email]; ok {
		return a
	}
	return &account{}
}

// countSubmit records one submit POST for key, before anything else is
// decided about it, so every attempt poolgate makes is visible.
func (s *Server) countSubmit(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total++
	if s.submits[key] > 0 {
		s.duplicates++
	}
	s.submits[key]++
	s.countJobLocked(key)
}

// countJobLocked counts one request naming the attempt with idempotency
// key under its job.
func (s *Server) countJobLocked(key string) {
	job, _ := splitKey(key)
	s.jobCalls[job]++
}

// countRequest records one request made as email, whatever the route
// and its answer.
func (s *Server) countRequest(email string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accountLocked(email)
	a.requests++
	if len(a.requestTimes) >= maxRequestTimes {
		a.requestTimes = append(a.requestTimes[:0], a.requestTimes[maxRequestTimes/2:]...)
	}
	a.requestTimes = append(a.requestTimes, s.now())
}

// RequestTimes returns when the requests made as email arrived, oldest
// first (only the latest ones, if there were very many).
func (s *Server) RequestTimes(email string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.knownLocked(email).requestTimes)
}

// refusal is an error answer decided while holding the lock and written
// after releasing it.
type refusal struct {
	status     int
	code, msg  string
	retryAfter time.Duration
	resetAt    time.Time // a daily quota's reset
}

func (f *refusal) write(w http.ResponseWriter) {
	if f.retryAfter > 0 {
		secs := (f.retryAfter + time.Second - 1) / time.Second
		w.Header().Set(ltxstudio.HeaderRetryAfter, strconv.FormatInt(int64(secs), 10))
	}
	d := ltxstudio.ErrorDetail{Code: f.code, Message: f.msg}
	if !f.resetAt.IsZero() {
		d.ResetAt = f.resetAt.UTC().Format(time.RFC3339)
	}
	writeJSON(w, f.status, ltxstudio.ErrorResponse{Error: d})
}

// submit creates the generation for key on email's account, or returns the
// one created before; created says which.
func (s *Server) submit(email, key string, req ltxstudio.SubmitRequest) (g ltxstudio.Generation, created bool, f *refusal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	a := s.accountLocked(email)
	if old, ok := a.byKey[key]; ok {
		return old.view(now), false, nil
	}
	if f := a.refusalLocked(now); f != nil {
		return ltxstudio.Generation{}, false, f
	}
	if f := s.injectLocked(); f != nil {
		a.refused++
		return ltxstudio.Generation{}, false, f
	}
	if moderated(req.Params) {
		return ltxstudio.Generation{}, false, &refusal{status: http.StatusUnprocessableEntity,
			code: ltxstudio.CodeModerated, msg: "prompt rejected by content moderation"}
	}
	return s.createLocked(a, key, req, now).view(now), true, nil
}

// injectLocked draws once to decide whether a new submission is refused.
func (s *Server) injectLocked() *refusal {
	c := s.cfg
	u := s.rng.Float64()
	switch {
	case u < c.RateLimitRate:
		return &refusal{status: http.StatusTooManyRequests, code: ltxstudio.CodeRateLimited,
			msg: "simulated rate limit", retryAfter: c.RateLimitRetryAfter}
	case u < c.RateLimitRate+c.AuthFailureRate:
		return &refusal{status: http.StatusUnauthorized, code: ltxstudio.CodeUnauthorized,
			msg: "simulated authentication failure"}
	case u < c.RateLimitRate+c.AuthFailureRate+c.TransientRate:
		return &refusal{status: http.StatusServiceUnavailable, code: ltxstudio.CodeUnavailable,
			msg: "simulated service outage"}
	}
	return nil
}

func (s *Server) createLocked(a *account, key string, req ltxstudio.SubmitRequest, now time.Time) *generation {
	c := s.cfg
	fail := c.FailureRate > 0 && s.rng.Float64() < c.FailureRate
	d := c.JobDuration
	if c.Jitter > 0 {
		d += time.Duration(s.rng.Int64N(2*int64(c.Jitter)+1)) - c.Jitter
	}
	s.lastID++
	g := &generation{
		id:        "gen_" + strconv.FormatUint(s.lastID, 10),
		key:       key,
		typ:       req.Type,
		clientRef: req.ClientRef,
		startedAt: now,
		endsAt:    now.Add(max(d, 0)),
		fail:      fail,
	}
	a.peak = max(a.peak, a.running(now)+1)
	a.submitted++
	a.byID[g.id] = g
	a.byKey[key] = g
	if g.endsAt.After(now) {
		a.active = append(a.active, g)
	}
	return g
}

// running counts the account's generations running at now, dropping from
// a.active those that ended by now. With a clock that never runs backwards
// a dropped generation can never run again; if the clock did run
// backwards, active is rebuilt from all generations first.
func (a *account) running(now time.Time) int {
	if now.Before(a.prunedAt) {
		a.active = a.active[:0]
		for _, g := range a.byID {
			if g.endsAt.After(now) {
				a.active = append(a.active, g)
			}
		}
	}
	a.prunedAt = now
	n := 0
	kept := a.active[:0]
	for _, g := range a.active {
		if !g.endsAt.After(now) {
			continue
		}
		kept = append(kept, g)
		if g.runningAt(now) {
			n++
		}
	}
	clear(a.active[len(kept):]) // let ended generations' memory go with them
	a.active = kept
	return n
}

func (g *generation) runningAt(t time.Time) bool {
	return !t.Before(g.startedAt) && t.Before(g.endsAt)
}

// view renders g on the wire as it stands at now.
func (g *generation) view(now time.Time) ltxstudio.Generation {
	v := ltxstudio.Generation{ID: g.id, Type: g.typ, ClientRef: g.clientRef, IdempotencyKey: g.key}
	switch {
	case now.Before(g.endsAt):
		v.Status = ltxstudio.StatusProcessing
	case g.canceled:
		v.Status = ltxstudio.StatusCanceled
	case g.fail:
		v.Status = ltxstudio.StatusFailed
		v.Error = FailureMessage
	default:
		v.Status = ltxstudio.StatusCompleted
		v.Result = resultOf(g)
	}
	return v
}

func resultOf(g *generation) []byte {
	ext := ".mp4"
	if g.typ == "image" {
		ext = ".png"
	}
	// ids are "gen_<digits>", so no JSON escaping is needed.
	return []byte(`{"url":"https://sim.invalid/` + g.id + ext + `"}`)
}

// status returns email's generation id as it stands now.
func (s *Server) status(email, id string) (ltxstudio.Generation, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.knownLocked(email).byID[id]
	if g == nil {
		return ltxstudio.Generation{}, false
	}
	s.countJobLocked(g.key)
	return g.view(s.now()), true
}

// lookup returns the generation email created with key.
func (s *Server) lookup(email, key string) (ltxstudio.Generation, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.countJobLocked(key)
	g := s.knownLocked(email).byKey[key]
	if g == nil {
		return ltxstudio.Generation{}, false
	}
	return g.view(s.now()), true
}

// cancel stops email's generation id if it is running; one that has
// ended is left as it is.
func (s *Server) cancel(email, id string) (ltxstudio.Generation, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.knownLocked(email).byID[id]
	if g == nil {
		return ltxstudio.Generation{}, false
	}
	s.countJobLocked(g.key)
	now := s.now()
	if g.runningAt(now) {
		g.endsAt = now
		g.canceled = true
	}
	return g.view(now), true
}

// refresh issues a new token pair for email and counts it.
func (s *Server) refresh(email string) ltxstudio.RefreshResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.accountLocked(email).refreshes++
	return ltxstudio.RefreshResponse{
		Token:        token(email, useAccess, now, now.Add(s.cfg.TokenLifetime)),
		RefreshToken: token(email, useRefresh, now, now.Add(s.cfg.RefreshTokenLifetime)),
	}
}

// splitKey splits an idempotency key "<jobID>/<attempt>" at its last
// slash; a key without one is all job id, with attempt "".
func splitKey(key string) (jobID, attempt string) {
	i := strings.LastIndexByte(key, '/')
	if i < 0 {
		return key, ""
	}
	return key[:i], key[i+1:]
}
