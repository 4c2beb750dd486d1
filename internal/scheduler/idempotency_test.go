package scheduler_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/scheduler"
	"github.com/poolgate/poolgate/internal/tenant"
)

// TestIdempotency: an Idempotency-Key names one job for 24 hours.
func TestIdempotency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	key := func(k, body string) *scheduler.Idempotency {
		return &scheduler.Idempotency{Key: k, Hash: []byte("sha256:" + body)}
	}

	t.Run("same key and request replays the job", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, fastSim())
		s := w.replica(func(c *scheduler.Config) { c.DispatchOff = true })
		first, replayed, err := s.Create(ctx, w.scope, video("a cat"), key("k1", "a cat"))
		if err != nil || replayed {
			t.Fatalf("first create: replayed=%v err=%v", replayed, err)
		}
		again, replayed, err := s.Create(ctx, w.scope, video("a cat"), key("k1", "a cat"))
		if err != nil || !replayed || again.ID != first.ID {
			t.Fatalf("replay: job %s replayed=%v err=%v; want job %s replayed", again.ID, replayed, err, first.ID)
		}
		if n := w.count(`SELECT count(*) FROM jobs`); n != 1 {
			t.Errorf("%d job rows, want 1", n)
		}

		other, replayed, err := s.Create(ctx, w.scope, video("a cat"), key("k2", "a cat"))
		if err != nil || replayed || other.ID == first.ID {
			t.Errorf("another key: job %s replayed=%v err=%v; want a new job", other.ID, replayed, err)
		}
		// Keys are per tenant and mode: the same key elsewhere is unrelated.
		for _, scope := range []tenant.Scope{w.tenant("globex", tenant.Live), {TenantID: w.scope.TenantID, Mode: tenant.Test}} {
			j, replayed, err := s.Create(ctx, scope, video("a cat"), key("k1", "a cat"))
			if err != nil || replayed || j.ID == first.ID {
				t.Errorf("same key in %+v: job %s replayed=%v err=%v; want a new job", scope, j.ID, replayed, err)
			}
		}
	})

	t.Run("same key with another request is a conflict", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, fastSim())
		s := w.replica(func(c *scheduler.Config) { c.DispatchOff = true })
		if _, _, err := s.Create(ctx, w.scope, video("a cat"), key("k1", "a cat")); err != nil {
			t.Fatal(err)
		}
		_, _, err := s.Create(ctx, w.scope, video("a dog"), key("k1", "a dog"))
		wantCode(t, err, errs.KindConflict, "idempotency_key_reused")
		if n := w.count(`SELECT count(*) FROM jobs`); n != 1 {
			t.Errorf("%d job rows, want 1", n)
		}
	})

	t.Run("a key is forgotten after 24 hours", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, fastSim())
		var skew atomic.Int64
		s := w.replica(func(c *scheduler.Config) {
			c.DispatchOff = true
			c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
		})
		first, _, err := s.Create(ctx, w.scope, video("a cat"), key("k1", "a cat"))
		if err != nil {
			t.Fatal(err)
		}
		skew.Store(int64(25 * time.Hour))
		j, replayed, err := s.Create(ctx, w.scope, video("a dog"), key("k1", "a dog"))
		if err != nil || replayed || j.ID == first.ID {
			t.Errorf("key reused after 25h: job %s replayed=%v err=%v; want a new job", j.ID, replayed, err)
		}
	})

	t.Run("concurrent requests with one key make one job", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, fastSim())
		s := w.replica(func(c *scheduler.Config) { c.DispatchOff = true })
		const n = 10
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			ids   [n]string
			fresh atomic.Int32
		)
		for i := range n {
			wg.Go(func() {
				<-start
				j, replayed, err := s.Create(ctx, w.scope, video("a cat"), key("k1", "a cat"))
				if err != nil {
					t.Errorf("create %d: %v", i, err)
					return
				}
				if !replayed {
					fresh.Add(1)
				}
				ids[i] = j.ID
			})
		}
		close(start)
		wg.Wait()
		for i := range n {
			if ids[i] != ids[0] {
				t.Fatalf("concurrent creates returned jobs %v; want one", ids)
			}
		}
		if fresh.Load() != 1 {
			t.Errorf("%d creates said they made the job, want exactly 1", fresh.Load())
		}
		if n := w.count(`SELECT count(*) FROM jobs`); n != 1 {
			t.Errorf("%d job rows, want 1", n)
		}
	})
}
