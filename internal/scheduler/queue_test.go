package scheduler_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
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
	// Other tenants have their own queue, and so has the tenant's other
	// mode: test jobs never fill the live queue, nor live jobs the test one.
	if _, _, err := s.Create(ctx, w.tenant("globex", tenant.Live), video("a cat"), nil); err != nil {
		t.Errorf("another tenant's create failed while ours is full: %v", err)
	}
	testMode := tenant.Scope{TenantID: w.scope.TenantID, Mode: tenant.Test}
	if _, _, err := s.Create(ctx, testMode, video("a cat"), nil); err != nil {
		t.Errorf("a test-mode create failed while the live queue is full: %v", err)
	}
	// A canceled job makes room.
	if _, err := s.Cancel(ctx, w.scope, first.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Create(ctx, w.scope, video("a cat"), nil); err != nil {
		t.Errorf("create after making room: %v", err)
	}
	w.checkQueueDepth()
}

// TestTestJobsDoNotFillTheLiveQueue: POOLGATE_MAX_QUEUED counts each mode
// apart (issue 12: test keys filled the live queue).
func TestTestJobsDoNotFillTheLiveQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, fastSim())
	s := w.replica(func(c *scheduler.Config) { c.DispatchOff, c.MaxQueued = true, 2 })
	testMode := tenant.Scope{TenantID: w.scope.TenantID, Mode: tenant.Test}
	for range 2 {
		if _, _, err := s.Create(ctx, testMode, video("a test"), nil); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := s.Create(ctx, testMode, video("a test"), nil)
	wantCode(t, err, errs.KindRateLimited, "queue_full")
	for range 2 {
		if _, _, err := s.Create(ctx, w.scope, video("live"), nil); err != nil {
			t.Errorf("live job refused while only the test queue is full: %v", err)
		}
	}
	w.checkQueueDepth()
}

// TestListStopsAtTheByteBudget: a page of big jobs ends early (with a
// cursor) instead of reading every row's params out of Postgres, and
// following the cursors still lists every job exactly once.
func TestListStopsAtTheByteBudget(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, fastSim())
	s := w.replica(func(c *scheduler.Config) { c.DispatchOff = true })
	const n = 12
	for i := range n {
		blob := make([]byte, 30<<10)
		rand.Read(blob)
		nj := video(fmt.Sprint("job ", i))
		nj.Params = []byte(fmt.Sprintf(`{"prompt":"job %d","blob":%q}`, i, base64.StdEncoding.EncodeToString(blob)))
		w.create(s, nj)
	}
	seen := map[string]bool{}
	pages, cursor := 0, ""
	for {
		jobs, next, err := s.List(ctx, w.scope, scheduler.ListFilter{Limit: 50, Cursor: cursor, MaxBytes: 100 << 10})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(jobs) == 0 || len(jobs) > 3 {
			t.Fatalf("page %d holds %d jobs of ~40 KB each under a 100 KB budget", pages, len(jobs))
		}
		for _, j := range jobs {
			if seen[j.ID] {
				t.Fatalf("job %s listed twice", j.ID)
			}
			seen[j.ID] = true
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(seen) != n {
		t.Errorf("listed %d of %d jobs over %d pages", len(seen), n, pages)
	}
	// Without a budget one page holds them all.
	if jobs, next, _ := s.List(ctx, w.scope, scheduler.ListFilter{Limit: 50}); len(jobs) != n || next != "" {
		t.Errorf("unbudgeted page: %d jobs, next %q", len(jobs), next)
	}
}
