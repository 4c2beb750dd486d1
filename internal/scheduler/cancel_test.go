package scheduler_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/scheduler"
	"github.com/poolgate/poolgate/internal/tenant"
)

// slowSim runs jobs long enough that only a cancellation ends them within
// a test.
func slowSim() sim.Config {
	return simWith(func(c *sim.Config) { c.JobDuration, c.Jitter = time.Minute, 0 })
}

// TestCancel cancels jobs in every state.
func TestCancel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("queued with no account ends at once", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, fastSim())
		s := w.replica(nil)
		j := w.create(s, video("a cat"))

		got, err := s.Cancel(ctx, w.scope, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		wantEnded(t, got, scheduler.StateCanceled, scheduler.CodeCanceled)
		w.settled()
	})

	t.Run("queued behind a full pinned account ends at once", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, slowSim())
		emails := w.addAccounts(1, 1)
		s := w.replica(nil)
		pin := video("a cat")
		pin.Email = emails[0]
		blocker := w.create(s, pin)
		w.waitFor(s, blocker.ID, "running", inState(scheduler.StateRunning), 5*time.Second)
		waiting := w.create(s, pin)

		got, err := s.Cancel(ctx, w.scope, waiting.ID)
		if err != nil {
			t.Fatal(err)
		}
		wantEnded(t, got, scheduler.StateCanceled, scheduler.CodeCanceled)
		if got.Email != nil {
			t.Errorf("a job canceled in the queue ran on %s", *got.Email)
		}
		if _, err := s.Cancel(ctx, w.scope, blocker.ID); err != nil {
			t.Fatal(err)
		}
		w.settled()
	})

	t.Run("running is stopped upstream and frees its slot", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, slowSim())
		emails := w.addAccounts(1, 1)
		s := w.replica(nil)
		j := w.create(s, video("a cat"))
		w.waitFor(s, j.ID, "running", inState(scheduler.StateRunning), 5*time.Second)
		if st := w.sim.Stats().Accounts[emails[0]]; st.Running != 1 {
			t.Fatalf("upstream runs %d jobs, want the one to cancel", st.Running)
		}

		got, err := s.Cancel(ctx, w.scope, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		wantEnded(t, got, scheduler.StateCanceled, scheduler.CodeCanceled)
		w.settled() // upstream stopped, slot freed: right when Cancel returns

		// The freed slot takes the next job.
		next := w.create(s, video("a dog"))
		w.waitFor(s, next.ID, "running", inState(scheduler.StateRunning), 5*time.Second)
		if _, err := s.Cancel(ctx, w.scope, next.ID); err != nil {
			t.Fatal(err)
		}
		w.settled()
	})

	t.Run("dispatching is canceled once the submission returns", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, slowSim())
		emails := w.addAccounts(1, 1)
		submitting, release := make(chan struct{}), make(chan struct{})
		p := newProxy(w.upstream())
		p.submit = func(ctx context.Context, _ provider.Account, _ int64, forward func() (provider.Status, error)) (provider.Status, error) {
			close(submitting)
			<-release
			return forward()
		}
		s := w.replica(func(c *scheduler.Config) { c.Provider = p })
		j := w.create(s, video("a cat"))
		<-submitting

		got, err := s.Cancel(ctx, w.scope, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != scheduler.StateDispatching || !got.CancelRequested {
			t.Fatalf("cancel during submission: state %s, cancelRequested %v; want dispatching with the request recorded",
				got.State, got.CancelRequested)
		}
		if n := w.slotsHeld(); n != 1 {
			t.Errorf("%d slots held while the submission is in flight, want 1 (freeing it could overrun maxJobs)", n)
		}
		close(release)
		wantEnded(t, w.await(s, j.ID, 5*time.Second), scheduler.StateCanceled, scheduler.CodeCanceled)
		st := w.settled()
		if a := st.Accounts[emails[0]]; a.Submitted != 1 {
			t.Errorf("upstream created %d generations, want the 1 that was then canceled", a.Submitted)
		}
	})

	t.Run("finished, unknown and foreign jobs are refused", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, simWith(func(c *sim.Config) { c.JobDuration, c.Jitter = 0, 0 }))
		w.addAccounts(1, 1)
		s := w.replica(nil)
		done := w.await(s, w.create(s, video("a cat")).ID, 5*time.Second)
		wantEnded(t, done, scheduler.StateSucceeded, "")

		_, err := s.Cancel(ctx, w.scope, done.ID)
		wantCode(t, err, errs.KindConflict, "job_finished")
		if j := w.get(s, done.ID); j.State != scheduler.StateSucceeded {
			t.Errorf("refused cancel changed the job to %s", j.State)
		}

		_, err = s.Cancel(ctx, w.scope, "job_doesnotexist")
		wantCode(t, err, errs.KindNotFound, "job_not_found")

		w.sim.SetConfig(slowSim())
		live := w.create(s, video("a dog"))
		w.waitFor(s, live.ID, "running", inState(scheduler.StateRunning), 5*time.Second)
		for name, scope := range map[string]tenant.Scope{
			"another tenant": w.tenant("globex", tenant.Live),
			"test mode":      {TenantID: w.scope.TenantID, Mode: tenant.Test},
		} {
			_, err := s.Cancel(ctx, scope, live.ID)
			if e, ok := err.(*errs.Error); !ok || e.Code != "job_not_found" || e.Kind != errs.KindNotFound {
				t.Errorf("%s canceling our job: got %v, want job_not_found", name, err)
			}
		}
		if j := w.get(s, live.ID); j.State.Terminal() {
			t.Errorf("a foreign cancel ended the job (%s)", j.State)
		}
		canceled, err := s.Cancel(ctx, w.scope, live.ID)
		if err != nil {
			t.Fatal(err)
		}
		wantEnded(t, canceled, scheduler.StateCanceled, scheduler.CodeCanceled)
		_, err = s.Cancel(ctx, w.scope, live.ID)
		wantCode(t, err, errs.KindConflict, "job_finished")
		w.settled()
	})
}

// Producers cancel jobs while three replicas place them. A cancel locks
// the job's row, so it either finds the job queued and ends it (placements
// skip the locked row), or waits for the placement that holds the row and
// then cancels the dispatched job: no cancel fails, every job ends
// canceled or succeeded, and the queue counters and the slots add up.
func TestCancelsRacePlacements(t *testing.T) {
	t.Parallel()
	w := newWorld(t, fastSim())
	w.addAccounts(3, 2)
	replicas := []*scheduler.Scheduler{w.replica(nil), w.replica(nil), w.replica(nil)}
	ctx := context.Background()

	const n = 120
	ids := make(chan string, n)
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			for i := range n / 4 {
				ids <- w.create(replicas[(p+i)%3], video("race")).ID
			}
		})
	}
	canceled := 0
	var mu sync.Mutex
	var cancels sync.WaitGroup
	for c := range 4 {
		cancels.Go(func() {
			for id := range ids {
				if (c+len(id))%2 == 0 {
					continue // left to run
				}
				_, err := replicas[c%3].Cancel(ctx, w.scope, id)
				var e *errs.Error
				switch {
				case err == nil:
					mu.Lock()
					canceled++
					mu.Unlock()
				case errors.As(err, &e) && e.Code == "job_finished":
				default:
					t.Errorf("cancel %s: %v", id, err)
				}
			}
		})
	}
	wg.Wait()
	close(ids)
	cancels.Wait()
	w.waitTerminal(60 * time.Second)
	w.checkInvariants()
	var ended, wrong int
	w.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE state NOT IN ('succeeded', 'canceled')) FROM jobs`).
		Scan(&ended, &wrong)
	if ended != n || wrong != 0 {
		t.Errorf("%d jobs, %d neither succeeded nor canceled; want %d, 0", ended, wrong, n)
	}
	if canceled == 0 {
		t.Error("no cancel went through: the test raced nothing")
	}
}
