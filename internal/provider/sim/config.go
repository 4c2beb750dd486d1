package sim

import (
	"errors"
	"flag"
	"fmt"
	"time"
)

// Config sets the simulator's latency and failure injection. The zero
// Config is valid: jobs complete at once and nothing fails.
type Config struct {
	// JobDuration is how long a generation runs; Jitter spreads it
	// uniformly over [JobDuration-Jitter, JobDuration+Jitter], never below 0.
	JobDuration, Jitter time.Duration

	// The rates below are fractions in [0, 1].
	//
	// RateLimitRate, AuthFailureRate and TransientRate partition one draw
	// per new submission, in that order: each is the share of new
	// submissions refused with 429, 401 or 503 respectively (if they sum
	// past 1, the later ones get what is left). FailureRate is the share
	// of created generations that end "failed".
	FailureRate, AuthFailureRate, RateLimitRate, TransientRate float64

	// RateLimitRetryAfter is sent as Retry-After (whole seconds, rounded
	// up) with injected 429s; 0 sends no header.
	RateLimitRetryAfter time.Duration
	// TokenLifetime and RefreshTokenLifetime set the exp of tokens issued
	// by the refresh route.
	TokenLifetime, RefreshTokenLifetime time.Duration

	// LTXAPIDelay is how long an LTX-2 API call takes before the video
	// comes back (real time: the call is synchronous).
	LTXAPIDelay time.Duration
	// LTXAPIKeyLimit is how many calls one API key may have in flight; the
	// next is refused with 429 (0: no limit).
	LTXAPIKeyLimit int
	// LTXAPIVideoBytes is the size of the videos sent (at least
	// MinVideoBytes; larger ones are padded and stay valid MP4).
	LTXAPIVideoBytes int

	// Seed seeds the random draws, so a run with the same requests in the
	// same order makes the same decisions.
	Seed int64
}

// DefaultConfig is what the flags default to: two-second jobs with a
// little jitter, no injected failures, LTX-like token lifetimes.
func DefaultConfig() Config {
	return Config{
		JobDuration:          2 * time.Second,
		Jitter:               500 * time.Millisecond,
		RateLimitRetryAfter:  30 * time.Second,
		TokenLifetime:        time.Hour,
		RefreshTokenLifetime: 720 * time.Hour,
		LTXAPIDelay:          2 * time.Second,
		LTXAPIKeyLimit:       2,
		LTXAPIVideoBytes:     64 << 10,
		Seed:                 1,
	}
}

// RegisterFlags adds one flag per field to fs, defaulting to c's current
// values (call it on a DefaultConfig for the documented defaults).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.JobDuration, "job-duration", c.JobDuration, "how long a simulated generation runs")
	fs.DurationVar(&c.Jitter, "jitter", c.Jitter, "uniform ± spread around -job-duration")
	fs.Float64Var(&c.FailureRate, "failure-rate", c.FailureRate, "share of generations that end failed (0..1)")
	fs.Float64Var(&c.AuthFailureRate, "auth-failure-rate", c.AuthFailureRate, "share of submissions refused with 401 (0..1)")
	fs.Float64Var(&c.RateLimitRate, "rate-limit-rate", c.RateLimitRate, "share of submissions refused with 429 (0..1)")
	fs.Float64Var(&c.TransientRate, "transient-rate", c.TransientRate, "share of submissions refused with 503 (0..1)")
	fs.DurationVar(&c.RateLimitRetryAfter, "rate-limit-retry-after", c.RateLimitRetryAfter, "Retry-After sent with injected 429s")
	fs.DurationVar(&c.TokenLifetime, "token-lifetime", c.TokenLifetime, "lifetime of lt_token issued on refresh")
	fs.DurationVar(&c.RefreshTokenLifetime, "refresh-token-lifetime", c.RefreshTokenLifetime, "lifetime of lt_refresh_token issued on refresh")
	fs.DurationVar(&c.LTXAPIDelay, "ltxapi-delay", c.LTXAPIDelay, "how long an LTX-2 API generation call takes")
	fs.IntVar(&c.LTXAPIKeyLimit, "ltxapi-key-limit", c.LTXAPIKeyLimit, "LTX-2 API calls one key may have in flight before 429 (0: no limit)")
	fs.IntVar(&c.LTXAPIVideoBytes, "ltxapi-video-bytes", c.LTXAPIVideoBytes, "size of the MP4 each LTX-2 API call returns")
	fs.Int64Var(&c.Seed, "seed", c.Seed, "seed for failure injection and jitter")
}

// Validate reports rates outside [0, 1] and negative durations. New and
// SetConfig clamp such values instead of failing; Validate is for
// command-line front ends that should refuse them.
func (c Config) Validate() error {
	var errs []error
	for _, r := range []struct {
		name string
		v    float64
	}{
		{"failure-rate", c.FailureRate},
		{"auth-failure-rate", c.AuthFailureRate},
		{"rate-limit-rate", c.RateLimitRate},
		{"transient-rate", c.TransientRate},
	} {
		if !(r.v >= 0 && r.v <= 1) { // also catches NaN
			errs = append(errs, fmt.Errorf("%s must be between 0 and 1, got %v", r.name, r.v))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"job-duration", c.JobDuration},
		{"jitter", c.Jitter},
		{"rate-limit-retry-after", c.RateLimitRetryAfter},
		{"token-lifetime", c.TokenLifetime},
		{"refresh-token-lifetime", c.RefreshTokenLifetime},
		{"ltxapi-delay", c.LTXAPIDelay},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %v", d.name, d.v))
		}
	}
	return errors.Join(errs...)
}

// clamped returns c with rates forced into [0, 1] (NaN becomes 0) and
// negative durations raised to 0.
func (c Config) clamped() Config {
	rate := func(v float64) float64 {
		if !(v > 0) {
			return 0
		}
		return min(v, 1)
	}
	c.FailureRate = rate(c.FailureRate)
	c.AuthFailureRate = rate(c.AuthFailureRate)
	c.RateLimitRate = rate(c.RateLimitRate)
	c.TransientRate = rate(c.TransientRate)
	c.JobDuration = max(c.JobDuration, 0)
	c.Jitter = max(c.Jitter, 0)
	c.RateLimitRetryAfter = max(c.RateLimitRetryAfter, 0)
	c.TokenLifetime = max(c.TokenLifetime, 0)
	c.RefreshTokenLifetime = max(c.RefreshTokenLifetime, 0)
	c.LTXAPIDelay = max(c.LTXAPIDelay, 0)
	c.LTXAPIKeyLimit = max(c.LTXAPIKeyLimit, 0)
	return c
}
