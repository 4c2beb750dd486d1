package scheduler

import (
	"encoding/json"
	"testing"
	"time"
)

func TestExpectations(t *testing.T) {
	t.Parallel()
	x := newExpectations(DefaultExpectations())
	for params, want := range map[string]time.Duration{
		`{"prompt":"a fox"}`:                  50 * time.Second, // the default clip, 6 s
		`{"prompt":"a fox","duration":10}`:    70 * time.Second,
		`{"prompt":"a fox","duration":"ten"}`: 50 * time.Second, // not a number: the default
		`[1,2]`:                               50 * time.Second,
	} {
		if got := x.of(kindOf("video", json.RawMessage(params))); got != want {
			t.Errorf("video %s: expected %s, want %s", params, got, want)
		}
	}
	image := kindOf("image", json.RawMessage(`{"duration":10}`))
	if got := x.of(image); got != 10*time.Second {
		t.Errorf("image: expected %s, want 10s", got)
	}
	if got := x.of(kindOf("audio", nil)); got != 0 {
		t.Errorf("a type the table does not list: expected %s, want none", got)
	}
	// What the replica saw replaces the table, then moves towards what it
	// sees, for that kind only.
	x.learn(image, 4*time.Second)
	x.learn(image, 14*time.Second)
	if got := x.of(image); got != 7*time.Second {
		t.Errorf("image after 4s and 14s: expected %s, want 7s", got)
	}
	if got := x.of(kindOf("video", nil)); got != 50*time.Second {
		t.Errorf("video after learning images: expected %s, want the table's 50s", got)
	}
}

// TestPollPlan: the first wait ends shortly before the expected end, the
// next ones double from min up to max, and none leaves [min, max] after
// the first.
func TestPollPlan(t *testing.T) {
	t.Parallel()
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for range 100 {
		p := newPollPlan(time.Second, 10*time.Second, 60*time.Second, start, start.Add(2*time.Second))
		if first := p.next(); first < 41*time.Second || first > 46*time.Second {
			t.Fatalf("first wait %s, want 80%% of 60s less the 2s gone, less up to a tenth", first)
		}
		for i := range 8 {
			d := p.next()
			if d < time.Second || d > 10*time.Second {
				t.Fatalf("wait %d: %s, outside [1s, 10s]", i, d)
			}
			if i == 7 && d < 5*time.Second {
				t.Fatalf("wait %d: %s, want the cap less up to a half", i, d)
			}
		}
	}
	if d := newPollPlan(time.Second, 10*time.Second, 0, start, start).next(); d != time.Second {
		t.Errorf("no expectation: first wait %s, want min", d)
	}
}
