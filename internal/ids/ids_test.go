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

func TestTimeReadsBackTheCreationTime(t *testing.T) {
	for _, at := range []time.Time{
		time.Date(2026, 1, 2, 3, 4, 5, 678_000_000, time.UTC),
		time.UnixMilli(0).UTC(),
		time.UnixMilli(1<<48 - 1).UTC(),
	} {
		id := New("job", at)
		got, ok := Time("job", id)
		if !ok || !got.Equal(at) {
			t.Errorf("Time(%q) = %v, %v; want %v, true", id, got, ok, at)
		}
	}
}

func TestTimeRefusesWhatNewCannotMake(t *testing.T) {
	good := New("job", time.Now())
	for _, id := range []string{
		"", "job_", good[:len(good)-1], good + "0", "key" + good[3:],
		"job_" + strings.Repeat("Z", 26),                // top digit above 7: more than 128 bits
		"job_" + strings.Repeat("0", 25) + "U",          // U is not Crockford
		"job_" + "0000000000" + strings.Repeat("i", 16), // lower case is not what New writes
	} {
		if _, ok := Time("job", id); ok {
			t.Errorf("Time(%q) accepted a malformed id", id)
		}
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
