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

// TestPinning: a job pinned to an account by email runs there and nowhere
// else, waiting for it if need be.
func TestPinning(t *testing.T) {
	t.Parallel()

	t.Run("runs only on its account while others are free", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, fastSim())
		emails := w.addAccounts(3, 2)
		s := w.replica(nil)
		var ids []string
		for range 6 {
			nj := video("a cat")
			nj.Email = emails[1]
			ids = append(ids, w.create(s, nj).ID)
		}
		for _, id := range ids {
			j := w.await(s, id, 10*time.Second)
			wantEnded(t, j, scheduler.StateSucceeded, "")
			if j.Email == nil || *j.Email != emails[1] {
				t.Errorf("job pinned to %s ran on %v", emails[1], j.Email)
			}
		}
		st := w.settled()
		for _, e := range []string{emails[0], emails[2]} {
			if n := st.Accounts[e].Submitted; n != 0 {
				t.Errorf("upstream ran %d jobs on %s, which no job was pinned to", n, e)
			}
		}
	})

	t.Run("waits while its account is full, then runs there", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, simWith(func(c *sim.Config) { c.JobDuration, c.Jitter = time.Second, 0 }))
		w.addAccount(w.scope, "small@x.io", 1)
		w.addAccount(w.scope, "big@x.io", 5)
		s := w.replica(nil)
		pin := video("a cat")
		pin.Email = "small@x.io"
		first := w.create(s, pin)
		w.waitFor(s, first.ID, "running", inState(scheduler.StateRunning), 5*time.Second)
		second := w.create(s, pin)
		// An unpinned job behind the waiting one is not held up by it.
		free := w.create(s, video("a dog"))
		w.waitFor(s, free.ID, "placed", func(j scheduler.Job) bool { return j.Email != nil }, 5*time.Second)
		if j := w.get(s, free.ID); *j.Email != "big@x.io" {
			t.Errorf("unpinned job placed on %s, the full account", *j.Email)
		}
		// While the first runs, the second stays queued although big@ is free.
		looks := 0
		for ; !w.get(s, first.ID).State.Terminal(); looks++ {
			if j := w.get(s, second.ID); j.State != scheduler.StateQueued {
				t.Fatalf("pinned job is %s on %v while its account is full", j.State, j.Email)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if looks == 0 {
			t.Fatal("the first job ended before the second was looked at; the test needs longer jobs")
		}
		done := w.await(s, second.ID, 5*time.Second)
		wantEnded(t, done, scheduler.StateSucceeded, "")
		if *done.Email != "small@x.io" {
			t.Errorf("pinned job ran on %s", *done.Email)
		}
		w.await(s, free.ID, 5*time.Second)
		w.settled()
	})

	t.Run("an unknown email is refused", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, fastSim())
		w.addAccounts(1, 1)
		w.addAccount(w.tenant("globex", tenant.Live), "theirs@x.io", 1)
		s := w.replica(func(c *scheduler.Config) { c.DispatchOff = true })
		for _, email := range []string{"nobody@x.io", "theirs@x.io"} {
			nj := video("a cat")
			nj.Email = email
			_, _, err := s.Create(context.Background(), w.scope, nj, nil)
			wantCode(t, err, errs.KindInvalid, "unknown_account")
		}
		if n := w.count(`SELECT count(*) FROM jobs`); n != 0 {
			t.Errorf("%d jobs were queued for unknown accounts", n)
		}
	})
}
