package sim_test

import (
	"context"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/provider/sim"
)

// TestRequestsCounted: what a job and an account cost the upstream is
// visible from the simulator's side, every route and answer included, so
// the bench and tests can hold poolgate to a request budget.
func TestRequestsCounted(t *testing.T) {
	t.Parallel()
	e := setup(t, testConfig())
	ctx := context.Background()
	a, b := e.account("a@example.com"), e.account("b@example.com")

	st := e.submit(a, submission("job_1", 1, ""))
	e.clock.Advance(time.Second)
	e.status(a, st.UpstreamID)
	e.clock.Advance(time.Second)
	e.status(a, st.UpstreamID)
	if _, _, err := e.client.Lookup(ctx, a, "job_1/1"); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Cancel(ctx, a, st.UpstreamID); err != nil {
		t.Fatal(err)
	}
	e.submit(a, submission("job_1", 2, "")) // a second attempt counts under the same job
	e.submit(b, submission("job_2", 1, ""))
	if _, err := e.client.Refresh(ctx, b); err != nil { // names no job, costs the account
		t.Fatal(err)
	}
	// A status read of another account's generation is refused, and still
	// costs the caller a request.
	if _, err := e.client.Status(ctx, b, st.UpstreamID); err == nil {
		t.Fatal("b read a's generation")
	}

	stats := e.sim.Stats()
	if got := stats.Requests["job_1"]; got != 6 {
		t.Errorf("job_1: %d requests, want 6 (2 submits, 2 reads, a lookup, a cancel)", got)
	}
	if got := stats.Requests["job_2"]; got != 1 {
		t.Errorf("job_2: %d requests, want 1", got)
	}
	if got := accountStats(t, e.sim, "a@example.com").Requests; got != 6 {
		t.Errorf("account a: %d requests, want 6", got)
	}
	if got := accountStats(t, e.sim, "b@example.com").Requests; got != 3 {
		t.Errorf("account b: %d requests, want 3 (submit, refresh, refused read)", got)
	}
	times := e.sim.RequestTimes("a@example.com")
	if len(times) != 6 || !times[0].Equal(epoch) || !times[1].Equal(epoch.Add(time.Second)) || !times[5].Equal(epoch.Add(2*time.Second)) {
		t.Errorf("a's request times = %v, want 6 arrivals at the fake clock's readings", times)
	}

	ends := e.sim.Ends()
	if len(ends["job_1"]) != 1 || !ends["job_2"]["1"].Equal(epoch.Add(2*time.Second+testConfig().JobDuration)) {
		t.Errorf("Ends() = %v, want job_1's second attempt (the first was canceled) and job_2's", ends)
	}

	e.sim.Reset()
	if st := e.sim.Stats(); len(st.Requests) != 0 || len(e.sim.RequestTimes("a@example.com")) != 0 {
		t.Errorf("Reset kept request counts: %v", st.Requests)
	}
}

func TestOverrun(t *testing.T) {
	t.Parallel()
	at := func(ms ...int) []time.Time {
		var ts []time.Time
		for _, m := range ms {
			ts = append(ts, epoch.Add(time.Duration(m)*time.Millisecond))
		}
		return ts
	}
	for _, tc := range []struct {
		name  string
		times []time.Time
		want  float64
	}{
		{"none", nil, -2},
		{"a burst, then the rate", at(0, 0, 100, 200, 300), 0},
		{"one too many at once", at(0, 0, 0), 1},
		{"too fast later on", at(0, 1000, 1000, 1000, 1010), 1.9},
	} {
		if got, _, _ := sim.Overrun(tc.times, 10, 2); got < tc.want-1e-9 || got > tc.want+1e-9 {
			t.Errorf("%s: Overrun = %v, want %v", tc.name, got, tc.want)
		}
	}
}
