package ids

import (
	"strings"
	"testing"
	"time"
)

func TestNewSortsByTime(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	prev := New("job", t0)
	for i := 1; i < 1000; i++ {
		id := New("job", t0.Add(time.Duration(i)*time.Millisecond))
		if id <= prev {
			t.Fatalf("id %s made later sorts before %s", id, prev)
		}
		prev = id
	}
}

func TestNewShapeAndUniqueness(t *testing.T) {
	seen := make(map[string]bool)
	now := time.Now()
	for range 10000 {
		id := New("key", now)
		if !strings.HasPrefix(id, "key_") || len(id) != 4+26 {
			t.Fatalf("bad id shape %q", id)
		}
		if strings.Trim(id[4:], crockford) != "" {
			t.Fatalf("id %q has characters outside Crockford base32", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
}

func TestValid(t *testing.T) {
	id := New("job", time.Now())
	if !Valid("job", id) {
		t.Fatalf("Valid(%q) = false", id)
	}
	for _, bad := range []string{"", "job_", id[:len(id)-1], id + "0", "alr" + id[3:], "job_" + strings.Repeat("I", 26),
		"job_" + strings.Repeat("Z", 26), "\x00", "job_0000000000000000000000000\xff"} {
		if Valid("job", bad) {
			t.Errorf("Valid(%q) = true", bad)
		}
	}
}
