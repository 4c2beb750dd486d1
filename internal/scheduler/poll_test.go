package scheduler_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/fakeclock"
	"github.com/poolgate/poolgate/internal/provider/budget"
	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/scheduler"
)

// fakeAfter times the waits between status reads on clock: each wait
// moves the clock on by its length and ends at once, so a minute of
// polling takes no real time and every read's time is exact.
func fakeAfter(clock *fakeclock.Clock) func(time.Duration) <-chan time.Time {
	return func(d time.Duration) <-chan time.Time {
		clock.Advance(d)
		c := make(chan time.Time, 1)
		c <- clock.Now()
		return c
	}
}

func clip(seconds int) scheduler.NewJob {
	params, _ := json.Marshal(map[string]any{"prompt": "a fox", "duration": seconds})
	return scheduler.NewJob{Type: "video", Params: params}
}

// TestPoliteToTheUpstream: a job that runs 60 s upstream costs at most 10
// upstream requests (submit and status reads; at 1 s polling it cost 62),
// and is still seen ending within one PollMaxInterval of its end, both
// when the expectation table times its first read and when the replica has
// learned from the jobs before it. Time is a fake clock that the
// scheduler's waits move, so the figures are exact.
func TestPoliteToTheUpstream(t *testing.T) {
	t.Parallel()
	const upstreamRun, maxInterval = 60 * time.Second, 10 * time.Second
	for _, tc := range []struct {
		name   string
		table  scheduler.Expectations
		jobs   []scheduler.NewJob
		judged int // jobs from this index on must be polite; the ones before teach the replica
	}{
		{"the default table", scheduler.DefaultExpectations(), []scheduler.NewJob{clip(6), clip(8), clip(10), video("no duration")}, 0},
		{"learned", nil, []scheduler.NewJob{clip(8), clip(8), clip(8), clip(8)}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := fakeclock.New(time.Now().Truncate(time.Second))
			w := newWorldAt(t, sim.Config{JobDuration: upstreamRun, Seed: 1}, clock.Now)
			w.addAccounts(1, 1)
			s := w.replica(func(c *scheduler.Config) {
				c.Now, c.After = clock.Now, fakeAfter(clock)
				c.PollInterval, c.PollMaxInterval, c.PollExpect = time.Second, maxInterval, tc.table
				c.LeaseTTL = time.Hour // the fake clock leaps; leases must not lapse in real seconds
			})
			for i, nj := range tc.jobs {
				// One at a time: every wait moves the one clock.
				j := w.await(s, w.create(s, nj).ID, 30*time.Second)
				if j.State != scheduler.StateSucceeded {
					t.Fatalf("job %d ended %s: %+v", i, j.State, j.Error)
				}
				if i < tc.judged {
					continue
				}
				t.Logf("job %d: %d requests, late %s", i, w.sim.Stats().Requests[j.ID], j.FinishedAt.Sub(j.StartedAt.Add(upstreamRun)))
				if n := w.sim.Stats().Requests[j.ID]; n > 10 {
					t.Errorf("job %d (%s): %d upstream requests, want at most 10", i, nj.Params, n)
				}
				// Placement and submission take no fake time, so the
				// upstream ran from StartedAt for exactly upstreamRun.
				if late := j.FinishedAt.Sub(j.StartedAt.Add(upstreamRun)); late < 0 || late > maxInterval {
					t.Errorf("job %d (%s): seen ending %s after the upstream ended, want within %s", i, nj.Params, late, maxInterval)
				}
			}
		})
	}
}

// TestCancelCutsPollWaitShort: a running job whose next status read is
// an hour away is canceled at once, frees its slot, and its execution
// reads the cancellation right away instead of sleeping out its wait.
// Shutting down does not wait for such a wait either.
func TestCancelCutsPollWaitShort(t *testing.T) {
	t.Parallel()
	w := newWorld(t, sim.Config{JobDuration: 2 * time.Hour, Seed: 1})
	w.addAccounts(1, 2)
	s := w.replica(func(c *scheduler.Config) {
		c.PollExpect = scheduler.Expectations{"video": {Base: 2 * time.Hour}}
	})
	j := w.create(s, video("long"))
	w.waitFor(s, j.ID, "running upstream", func(j scheduler.Job) bool { return j.State == scheduler.StateRunning }, 10*time.Second)

	got, err := s.Cancel(context.Background(), w.scope, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantEnded(t, got, scheduler.StateCanceled, scheduler.CodeCanceled)
	if held := w.slotsHeld(); held != 0 {
		t.Errorf("%d slots held after the cancel", held)
	}
	// Submit, cancel, then the status read the cancel brought forward.
	w.waitUntil("read by its execution", func() bool { return w.sim.Stats().Requests[j.ID] == 3 }, 10*time.Second)

	other := w.create(s, video("long too"))
	w.waitFor(s, other.ID, "running upstream", func(j scheduler.Job) bool { return j.State == scheduler.StateRunning }, 10*time.Second)
	stopped := make(chan struct{})
	go func() { stopWithin(s, 0); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("Stop waited for an execution's poll wait")
	}
	if st := w.get(s, other.ID).State; st != scheduler.StateRunning {
		t.Errorf("the job in flight at shutdown is %s, want still running (handed over)", st)
	}
}

// TestBudgetHoldsUnderLoad: with every upstream call going through the
// per-account budget, the simulator never sees an account exceed it,
// while jobs still all complete.
func TestBudgetHoldsUnderLoad(t *testing.T) {
	t.Parallel()
	const rate, burst = 20.0, 3
	w := newWorld(t, simWith(func(c *sim.Config) { c.JobDuration, c.Jitter = 100*time.Millisecond, 50*time.Millisecond }))
	emails := w.addAccounts(2, 4)
	up := budget.New(ltxstudio.New(w.simURL, nil), budget.Config{Rate: rate, Burst: burst})
	s := w.replica(func(c *scheduler.Config) { c.Provider = up })
	var ids []string
	for i := range 30 {
		ids = append(ids, w.create(s, clip(6+2*(i%3))).ID)
	}
	for _, id := range ids {
		if j := w.await(s, id, time.Minute); j.State != scheduler.StateSucceeded {
			t.Fatalf("job %s ended %s", id, j.State)
		}
	}
	w.checkInvariants()
	for _, email := range emails {
		times := w.sim.RequestTimes(email)
		if len(times) == 0 {
			t.Errorf("%s made no requests", email)
		}
		// One request over is tolerated: calls that left on time may
		// arrive bunched up on a busy loopback.
		if over, n, span := sim.Overrun(times, rate, burst); over > 1 {
			t.Fatalf("%s: %d requests within %s, over %v/s with burst %d", email, n, span, rate, burst)
		}
	}
}

func TestParseExpectations(t *testing.T) {
	for in, want := range map[string]string{
		"image=10s,video=20s+5s/s": "image=10s,video=20s+5s/s",
		" video=1m30s , image=5s ": "image=5s,video=1m30s",
		"none":                     "none",
		"":                         "none",
	} {
		got, err := scheduler.ParseExpectations(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseExpectations(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"video", "video=", "=10s", "video=-1s", "video=10s+5s", "video=10s+x/s", "video=10s,image"} {
		if _, err := scheduler.ParseExpectations(in); err == nil {
			t.Errorf("ParseExpectations(%q) accepted it", in)
		}
	}
}
