package backoff

import (
	"testing"
	"time"
)

func TestExpGrowsAndCaps(t *testing.T) {
	for _, tc := range []struct {
		attempt  int
		min, max time.Duration
	}{
		{0, 75 * time.Millisecond, 125 * time.Millisecond},
		{3, 600 * time.Millisecond, time.Second},
		{-1, 75 * time.Millisecond, 125 * time.Millisecond},
		{10, 3 * time.Second, 5 * time.Second},   // capped at 4s
		{1000, 3 * time.Second, 5 * time.Second}, // no overflow
	} {
		for range 50 {
			d := Exp(tc.attempt, 100*time.Millisecond, 4*time.Second)
			if d < tc.min || d > tc.max {
				t.Fatalf("Exp(%d) = %v, want within [%v, %v]", tc.attempt, d, tc.min, tc.max)
			}
		}
	}
}
