package scheduler_test

import (
	"context"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/scheduler"
	"github.com/poolgate/poolgate/internal/tenant"
)

// TestWait: the long-poll returns when the job ends, or with the job as it
// stands when the caller stops waiting.
func TestWait(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("returns promptly when the job ends on another replica", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, simWith(func(c *sim.Config) { c.JobDuration, c.Jitter = 300*time.Millisecond, 0 }))
		w.addAccounts(1, 1)
		w.replica(nil) // runs the job
		api := w.replica(func(c *scheduler.Config) { c.DispatchOff = true })
		j := w.create(api, video("a cat"))

		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		got, err := api.Wait(wctx, w.scope, j.ID)
		returned := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		wantEnded(t, got, scheduler.StateSucceeded, "")
		var finished time.Time
		w.pool.QueryRow(ctx, `SELECT finished_at FROM jobs WHERE id = $1`, j.ID).Scan(&finished)
		// Without the notification the waiter would re-read only after 5s.
		if lag := returned.Sub(finished); lag > time.Second {
			t.Errorf("Wait returned %s after the job ended", lag)
		}
	})

	t.Run("returns the waiting job when the caller gives up", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, fastSim())
		s := w.replica(nil)
		j := w.create(s, video("a cat"))

		wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		got, err := s.Wait(wctx, w.scope, j.ID)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("Wait failed when its context ended: %v", err)
		}
		if got.ID != j.ID || got.State != scheduler.StateQueued {
			t.Errorf("got job %s in state %s, want %s queued", got.ID, got.State, j.ID)
		}
		if took < 200*time.Millisecond || took > 2*time.Second {
			t.Errorf("Wait with a 200ms deadline returned after %s", took)
		}
	})

	t.Run("unknown and foreign jobs are not found", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, fastSim())
		s := w.replica(func(c *scheduler.Config) { c.DispatchOff = true })
		j := w.create(s, video("a cat"))
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := s.Wait(wctx, w.scope, "job_doesnotexist")
		wantCode(t, err, errs.KindNotFound, "job_not_found")
		_, err = s.Wait(wctx, w.tenant("globex", tenant.Live), j.ID)
		wantCode(t, err, errs.KindNotFound, "job_not_found")
	})
}
