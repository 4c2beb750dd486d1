package auth

import (
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/poolgate/poolgate/internal/errs"
)

// RateLimit allows Requests per Per, in bursts of up to Requests. The zero
// value means no limit.
type RateLimit struct {
	Requests int
	Per      time.Duration
}

// Bounds of a key's own limit.
const (
	maxLimitRequests = 1_000_000
	minLimitPer      = time.Second
	maxLimitPer      = 24 * time.Hour
)

// Off reports whether r limits nothing.
func (r RateLimit) Off() bool { return r.Requests <= 0 || r.Per <= 0 }

// String is r in the form ParseRateLimit reads: "600/1m", or "off".
func (r RateLimit) String() string {
	if r.Off() {
		return "off"
	}
	return strconv.Itoa(r.Requests) + "/" + FormatPer(r.Per)
}

// FormatPer writes d in the largest whole unit ("1m", "90s", "1500ms"), the
// way people write limits, rather than time.Duration's "1m0s".
func FormatPer(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	default:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	}
}

// ParseRateLimit reads "REQUESTS/PERIOD" ("600/1m", "100/1s"); "0" and
// "off" mean no limit.
func ParseRateLimit(s string) (RateLimit, error) {
	s = strings.TrimSpace(s)
	if s == "0" || strings.EqualFold(s, "off") {
		return RateLimit{}, nil
	}
	n, per, ok := strings.Cut(s, "/")
	requests, err := strconv.Atoi(n)
	if !ok || err != nil || requests <= 0 {
		return RateLimit{}, fmt.Errorf("rate limit %q is not REQUESTS/PERIOD like 600/1m (or off)", s)
	}
	d, err := time.ParseDuration(per)
	if err != nil || d <= 0 {
		return RateLimit{}, fmt.Errorf("rate limit %q: period must be a duration like 1s or 1m", s)
	}
	return RateLimit{Requests: requests, Per: d}, nil
}

// validate checks a key's own limit; field names are as clients spell them.
// exceeds reports whether r allows more than o: a bigger burst, or more
// requests per unit of time.
func (r RateLimit) exceeds(o RateLimit) bool {
	// Milliseconds keep the products below 2^63 (1e6 requests × 24 h).
	return r.Requests > o.Requests ||
		int64(r.Requests)*o.Per.Milliseconds() > int64(o.Requests)*r.Per.Milliseconds()
}

func (r RateLimit) validate() error {
	var fields []errs.FieldError
	if r.Requests < 1 || r.Requests > maxLimitRequests {
		fields = append(fields, errs.FieldError{Field: "rateLimit.requests", Message: fmt.Sprintf("must be 1 to %d", maxLimitRequests)})
	}
	if r.Per < minLimitPer || r.Per > maxLimitPer {
		fields = append(fields, errs.FieldError{Field: "rateLimit.per", Message: "must be a duration from 1s to 24h, like 1m"})
	}
	if len(fields) > 0 {
		return errs.Fields(fields...)
	}
	return nil
}

// Decision is the outcome of one Limiter.Allow, with what the RateLimit-*
// headers report.
type Decision struct {
	Allowed    bool
	Limit      int
	Remaining  int
	Reset      time.Duration // until the full burst is available again
	RetryAfter time.Duration // when refused: until one request is allowed
}

// Limiter enforces per-key rate limits with GCRA (the generic cell rate
// algorithm: a token bucket kept as one timestamp per key). State lives in
// this replica's memory, so a limit holds per replica: checking it costs no
// database round trip, and with N replicas behind a balancer a key gets at
// most N times its limit in total.
type Limiter struct {
	def    RateLimit
	now    func() time.Time
	seed   maphash.Seed
	shards [limiterShards]limiterShard

	allowed, limited atomic.Uint64
}

const (
	limiterShards = 32
	sweepEvery    = time.Minute
)

type limiterShard struct {
	mu        sync.Mutex
	tat       map[string]time.Time // theoretical arrival time per key id
	lastSweep time.Time
}

// NewLimiter returns a Limiter that applies def to keys without a limit of
// their own; def may be off.
func NewLimiter(def RateLimit, now func() time.Time) *Limiter {
	l := &Limiter{def: def, now: now, seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].tat = map[string]time.Time{}
	}
	return l
}

// Default is the limit of keys without their own.
func (l *Limiter) Default() RateLimit { return l.def }

// Allow counts one request of key keyID, whose own limit is own (nil for the
// default). ok is false when no limit applies to the key.
func (l *Limiter) Allow(keyID string, own *RateLimit) (d Decision, ok bool) {
	lim := l.def
	if own != nil {
		lim = *own
	}
	if lim.Off() {
		return Decision{}, false
	}
	interval := lim.Per / time.Duration(lim.Requests)
	now := l.now()
	sh := &l.shards[maphash.String(l.seed, keyID)%limiterShards]

	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.sweep(now)
	tat := sh.tat[keyID]
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(interval)
	d = Decision{Limit: lim.Requests}
	if allowAt := next.Add(-lim.Per); now.Before(allowAt) {
		l.limited.Add(1)
		d.Reset, d.RetryAfter = tat.Sub(now), allowAt.Sub(now)
		return d, true
	}
	sh.tat[keyID] = next
	l.allowed.Add(1)
	d.Allowed = true
	d.Reset = next.Sub(now)
	d.Remaining = int((lim.Per - d.Reset) / interval)
	return d, true
}

// sweep forgets keys whose bucket has refilled, which are the same as keys
// never seen; it keeps memory proportional to recently active keys.
func (sh *limiterShard) sweep(now time.Time) {
	if now.Sub(sh.lastSweep) < sweepEvery {
		return
	}
	sh.lastSweep = now
	for k, tat := range sh.tat {
		if !tat.After(now) {
			delete(sh.tat, k)
		}
	}
}

// LimiterStats are counters for metrics.
type LimiterStats struct {
	Allowed, Limited uint64
}

// Stats returns how many requests were allowed and refused so far.
func (l *Limiter) Stats() LimiterStats {
	return LimiterStats{Allowed: l.allowed.Load(), Limited: l.limited.Load()}
}
