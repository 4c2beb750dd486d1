package usage_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/usage"
)

// resolution is how far a reported percentile may be from the true one:
// a quarter-octave bucket reported by its geometric middle.
var resolution = math.Exp2(1.0 / 8)

func within(got, want time.Duration) bool {
	r := float64(got) / float64(want)
	return r <= resolution*1.0001 && r >= 1/resolution/1.0001
}

// exact is the q-quantile of sorted samples by the same rank rule.
func exact(sorted []time.Duration, q float64) time.Duration {
	return sorted[max(int(math.Ceil(q*float64(len(sorted))))-1, 0)]
}

func TestQuantilesOfKnownDistributions(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	cases := map[string]func() time.Duration{
		"uniform 1s..1000s": func() time.Duration { return time.Duration(1+rng.IntN(1000)) * time.Second },
		"log-normal around 30s": func() time.Duration {
			return time.Duration(30 * float64(time.Second) * math.Exp(rng.NormFloat64()))
		},
		"two modes 200ms and 90s": func() time.Duration {
			if rng.IntN(10) < 7 {
				return 200 * time.Millisecond
			}
			return 90 * time.Second
		},
	}
	for name, draw := range cases {
		t.Run(name, func(t *testing.T) {
			var h usage.Histogram
			samples := make([]time.Duration, 10000)
			for i := range samples {
				samples[i] = draw()
				h.Add(samples[i])
			}
			slices.Sort(samples)
			for _, q := range []float64{0.5, 0.95} {
				got, ok := h.Quantile(q)
				if want := exact(samples, q); !ok || !within(got, want) {
					t.Errorf("p%.0f = %v, true value %v: outside the documented ±9%%", q*100, got, want)
				}
			}
		})
	}
	t.Run("uniform p50 and p95 are where they should be", func(t *testing.T) {
		var h usage.Histogram
		for s := 1; s <= 1000; s++ {
			h.Add(time.Duration(s) * time.Second)
		}
		p50, _ := h.Quantile(0.5)
		p95, _ := h.Quantile(0.95)
		if !within(p50, 500*time.Second) || !within(p95, 950*time.Second) {
			t.Errorf("p50 %v, p95 %v; want about 500s and 950s", p50, p95)
		}
	})
}

func TestMergedHistogramsAnswerLikeOne(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	var whole usage.Histogram
	parts := make([]usage.Histogram, 24) // e.g. one per hour
	for range 5000 {
		d := time.Duration(rng.ExpFloat64() * float64(5*time.Second))
		whole.Add(d)
		parts[rng.IntN(len(parts))].Add(d)
	}
	var merged usage.Histogram
	for _, p := range parts {
		merged.Merge(p)
	}
	for _, q := range []float64{0.5, 0.95} {
		a, _ := whole.Quantile(q)
		b, _ := merged.Quantile(q)
		if a != b {
			t.Errorf("p%.0f: %v from one histogram, %v from merged parts", q*100, a, b)
		}
	}
}

func TestQuantileEdges(t *testing.T) {
	t.Parallel()
	var empty usage.Histogram
	if _, ok := empty.Quantile(0.5); ok {
		t.Error("an empty histogram has a p50")
	}
	var h usage.Histogram
	h.Add(0)
	h.Add(1000 * time.Hour) // beyond the last bucket's lower bound: counted, not lost
	if h.Count() != 2 {
		t.Errorf("count %d, want 2", h.Count())
	}
	if p, _ := h.Quantile(0.5); p >= usage.HistBase {
		t.Errorf("p50 of {0, 1000h} = %v, want under %v", p, usage.HistBase)
	}
	if p, _ := h.Quantile(1); p < 24*time.Hour {
		t.Errorf("max of {0, 1000h} = %v, want the overflow bucket (over a day)", p)
	}
}
