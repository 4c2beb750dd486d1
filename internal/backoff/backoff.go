// Package backoff is the one exponential backoff every retry loop uses.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Exp returns base·2^attempt capped at max, with ±25% jitter so that
// replicas retrying the same thing spread out. attempt counts from 0.
func Exp(attempt int, base, max time.Duration) time.Duration {
	d := base << min(max0(attempt), 30)
	if d > max || d <= 0 {
		d = max
	}
	return time.Duration(float64(d) * (0.75 + rand.Float64()/2))
}

func max0(n int) int {
	if n < 0 {
		return 0
	}
	return n
}
