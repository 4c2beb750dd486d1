package scheduler_test

import (
	"context"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/scheduler"
	"github.com/poolgate/poolgate/internal/tenant"
)

// TestQueueTimeout: a job nothing can run is kept, with a warning, until
// its queueTimeout, then fails no_capacity.
func TestQueueTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("fails no_capacity after the timeout", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, fastSim())
		// The rescuer, which also expires the queue, runs every LeaseTTL/3.
		s := w.replica(func(c *scheduler.Config) { c.QueueTimeout, c.LeaseTTL = 300*time.Millisecond, 600*time.Millisecond })
		start := time.Now()
		byDefault := w.create(s, video("a cat"))
		if byDefault.Warning == nil {
			t.Error("job queued in a pool without accounts carries no warning")
		}
		own := video("a dog")
		own.QueueTimeout = 150 * time.Millisecond
		ownTimeout := w.create(s, own)

		for _, id := range []string{ownTimeout.ID, byDefault.ID} {
			j := w.await(s, id, 5*time.Second)
			wantEnded(t, j, scheduler.StateFailed, scheduler.CodeNoCapacity)
		}
		var early time.Duration
		w.pool.QueryRow(ctx, `SELECT min(finished_at - queue_deadline) FROM jobs`).Scan(&early)
		if early < 0 {
			t.Errorf("a job failed %s before its queue deadline", -early)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("jobs with a 300ms queue timeout failed only after %s", took)
		}
		w.settled()
	})

	t.Run("warns only when the pool has no enabled account", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, fastSim())
		s := w.replica(func(c *scheduler.Config) { c.DispatchOff = true })
		w.addAccount(w.scope, "off@x.io", 1)
		off := false
		if _, err := w.accounts.Update(ctx, w.scope, "off@x.io", accounts.Patch{Enabled: &off}); err != nil {
			t.Fatal(err)
		}
		if j := w.create(s, video("a cat")); j.Warning == nil {
			t.Error("no warning with only a disabled account")
		}
		// An enabled account in another pool does not count.
		w.addAccount(tenant.Scope{TenantID: w.scope.TenantID, Mode: tenant.Test}, "test@x.io", 1)
		if j := w.create(s, video("a cat")); j.Warning == nil {
			t.Error("no warning with an enabled account only in test mode")
		}
		w.addAccount(w.scope, "on@x.io", 1)
		if j := w.create(s, video("a cat")); j.Warning != nil {
			t.Errorf("warning %q with an enabled account", *j.Warning)
		}
	})
}

// TestQueueFull: a tenant's queue holds MaxQueued jobs; past that, Create
// asks to retry later.
func TestQueueFull(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, fastSim())
	s := w.replica(func(c *scheduler.Config) { c.DispatchOff, c.MaxQueued = true, 3 })
	idem := &scheduler.Idempotency{Key: "k1", Hash: []byte("h1")}
	first, _, err := s.Create(ctx, w.scope, video("a cat"), idem)
	if err != nil {
		t.Fatal(err)
	}
	w.create(s, video("a cat"))
	w.create(s, video("a cat"))

	_, _, err = s.Create(ctx, w.scope, video("a cat"), nil)
	e := wantCode(t, err, errs.KindRateLimited, "queue_full")
	if e.RetryAfter <= 0 {
		t.Errorf("queue_full without a Retry-After")
	}
	// A replay is not a new job: it is answered even when the queue is full.
	if j, replayed, err := s.Create(ctx, w.scope, video("a cat"), idem); err != nil || !replayed || j.ID != first.ID {
		t.Errorf("replay with a full queue: job %s replayed=%v err=%v; want job %s", j.ID, replayed, err, first.ID)
	}
	// Other tenants have their own queue.
	if _, _, err := s.Create(ctx, w.tenant("globex", tenant.Live), video("a cat"), nil); err != nil {
		t.Errorf("another tenant's create failed while ours is full: %v", err)
	}
	// A canceled job makes room.
	if _, err := s.Cancel(ctx, w.scope, first.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Create(ctx, w.scope, video("a cat"), nil); err != nil {
		t.Errorf("create after making room: %v", err)
	}
}
