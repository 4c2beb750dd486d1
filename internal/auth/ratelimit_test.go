package auth

import (
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/fakeclock"
)

func TestParseRateLimit(t *testing.T) {
	cases := []struct {
		in   string
		want RateLimit
		bad  bool
	}{
		{"600/1m", RateLimit{600, time.Minute}, false},
		{" 100/1s ", RateLimit{100, time.Second}, false},
		{"5/1h30m", RateLimit{5, 90 * time.Minute}, false},
		{"0", RateLimit{}, false},
		{"off", RateLimit{}, false},
		{"OFF", RateLimit{}, false},
		{"", RateLimit{}, true},
		{"600", RateLimit{}, true},
		{"600/", RateLimit{}, true},
		{"-1/1m", RateLimit{}, true},
		{"0/1m", RateLimit{}, true},
		{"10/0s", RateLimit{}, true},
		{"ten/1m", RateLimit{}, true},
		{"10/minute", RateLimit{}, true},
	}
	for _, c := range cases {
		got, err := ParseRateLimit(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("ParseRateLimit(%q) = %v, %v; want %v, error %v", c.in, got, err, c.want, c.bad)
		}
	}
	for _, s := range []string{"600/1m", "100/1s", "5/90s", "7/1500ms", "2/24h", "off"} {
		r, err := ParseRateLimit(s)
		if err != nil || r.String() != s {
			t.Errorf("%q round-trips to %q (%v)", s, r.String(), err)
		}
	}
}

func TestLimiterGCRA(t *testing.T) {
	clock := fakeclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	l := NewLimiter(RateLimit{Requests: 3, Per: 3 * time.Second}, clock.Now)

	// A fresh key may burst up to the limit.
	for i, wantRemaining := range []int{2, 1, 0} {
		d, ok := l.Allow("key_a", nil)
		if !ok || !d.Allowed || d.Limit != 3 || d.Remaining != wantRemaining {
			t.Fatalf("request %d: %+v, %v; want allowed with %d remaining", i+1, d, ok, wantRemaining)
		}
		if want := time.Duration(i+1) * time.Second; d.Reset != want {
			t.Errorf("request %d: reset %s, want %s", i+1, d.Reset, want)
		}
	}
	d, _ := l.Allow("key_a", nil)
	if d.Allowed || d.RetryAfter != time.Second || d.Remaining != 0 || d.Reset != 3*time.Second {
		t.Fatalf("over the burst: %+v; want refused, retry after 1s, reset 3s", d)
	}
	// Refusals do not push the next allowance further out.
	for range 5 {
		l.Allow("key_a", nil)
	}
	clock.Advance(999 * time.Millisecond)
	if d, _ := l.Allow("key_a", nil); d.Allowed || d.RetryAfter != time.Millisecond {
		t.Fatalf("just before one interval: %+v", d)
	}
	clock.Advance(time.Millisecond)
	if d, _ := l.Allow("key_a", nil); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("after one interval: %+v; want exactly one more", d)
	}
	// Keys are independent, and a key's own limit beats the default.
	if d, _ := l.Allow("key_b", &RateLimit{Requests: 1, Per: time.Hour}); !d.Allowed || d.Limit != 1 {
		t.Fatalf("own limit: %+v", d)
	}
	if d, _ := l.Allow("key_b", &RateLimit{Requests: 1, Per: time.Hour}); d.Allowed || d.RetryAfter != time.Hour {
		t.Fatalf("own limit exhausted: %+v", d)
	}
	// A full refill is the same as a key never seen, and is swept.
	clock.Advance(2 * time.Hour)
	if d, _ := l.Allow("key_a", nil); !d.Allowed || d.Remaining != 2 {
		t.Fatalf("after a long pause: %+v; want a full burst", d)
	}
	n := 0
	for i := range l.shards {
		l.shards[i].sweep(clock.Now())
		n += len(l.shards[i].tat)
	}
	if n != 1 {
		t.Errorf("%d keys remembered after the sweep, want 1 (key_a)", n)
	}
	if s := l.Stats(); s.Allowed != 6 || s.Limited != 8 {
		t.Errorf("stats %+v, want 6 allowed and 8 limited", s)
	}
}

func TestLimiterOff(t *testing.T) {
	l := NewLimiter(RateLimit{}, time.Now)
	if _, ok := l.Allow("key_a", nil); ok {
		t.Error("an off default limits keys without their own")
	}
	if d, ok := l.Allow("key_a", &RateLimit{Requests: 1, Per: time.Minute}); !ok || !d.Allowed {
		t.Error("a key's own limit is ignored when the default is off")
	}
}
