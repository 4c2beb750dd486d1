package scheduler_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/scheduler"
)

// queueWithoutDispatch queues n jobs through a replica that does not place
// them, so that the next replica finds a full queue and places in batches.
func (w *world) queueWithoutDispatch(n int) []string {
	w.t.Helper()
	api := w.replica(func(c *scheduler.Config) { c.DispatchOff = true })
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { ids[i] = w.create(api, video(fmt.Sprint("job ", i))).ID })
	}
	wg.Wait()
	return ids
}

// TestBatchPlacementIsUniform: when a replica finds a long queue it places
// it in batches of 64, and within a batch each pick is uniform among the
// accounts that still have a free slot. With slots to spare on every
// account the counts per account must pass a chi-square test.
func TestBatchPlacementIsUniform(t *testing.T) {
	t.Parallel()
	w := newWorld(t, simWith(func(c *sim.Config) { c.JobDuration, c.Jitter = 0, 0 }))
	const (
		nAccounts = 5
		jobs      = 400
	)
	emails := w.addAccounts(nAccounts, 100) // 500 slots for 400 jobs: never full
	w.queueWithoutDispatch(jobs)
	w.replica(func(c *scheduler.Config) { c.Batch = 64 })
	w.waitTerminal(30 * time.Second)
	w.settled()
	w.checkUniform(emails, jobs)
}

// TestBatchPlacementFillsExactlyTheFreeSlots: one batch that meets more
// queued jobs than free slots takes every free slot and no more; the rest
// stay queued, in order.
func TestBatchPlacementFillsExactlyTheFreeSlots(t *testing.T) {
	t.Parallel()
	w := newWorld(t, simWith(func(c *sim.Config) { c.JobDuration, c.Jitter = 3*time.Second, 0 }))
	w.addAccount(w.scope, "one@x.io", 1)
	w.addAccount(w.scope, "three@x.io", 3)
	ids := w.queueWithoutDispatch(10)
	w.replica(func(c *scheduler.Config) { c.Batch = 32 })

	w.waitUntil("4 jobs running", func() bool {
		return w.count(`SELECT count(*)::int FROM jobs WHERE state = 'running'`) == 4
	}, 10*time.Second)
	if n := w.count(`SELECT held FROM account_slots WHERE email = 'one@x.io'`); n != 1 {
		t.Errorf("one@x.io holds %d slots, want 1 (its maxJobs)", n)
	}
	if n := w.count(`SELECT held FROM account_slots WHERE email = 'three@x.io'`); n != 3 {
		t.Errorf("three@x.io holds %d slots, want 3 (its maxJobs)", n)
	}
	if n := w.count(`SELECT count(*)::int FROM jobs WHERE state = 'queued'`); n != 6 {
		t.Errorf("%d jobs queued, want 6", n)
	}
	w.checkQueueDepth()
	// FIFO: the ones placed are the oldest.
	placed := w.count(`SELECT count(*)::int FROM jobs WHERE state <> 'queued' AND created_at <=
		(SELECT min(created_at) FROM jobs WHERE state = 'queued')`)
	if placed != 4 {
		t.Errorf("placement skipped older jobs: %d of the 4 placed are not older than the oldest queued job", 4-placed)
	}
	_ = ids
}

// TestConcurrentCreatesShareCommits: creations from many goroutines are
// group-committed, and each caller still gets its own job back.
func TestConcurrentCreatesShareCommits(t *testing.T) {
	t.Parallel()
	w := newWorld(t, simWith(nil))
	s := w.replica(func(c *scheduler.Config) { c.DispatchOff = true })
	const n = 300
	got := make([]scheduler.Job, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			nj := video(fmt.Sprint("prompt ", i))
			nj.ReplyRef = fmt.Sprint("ref-", i)
			got[i] = w.create(s, nj)
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, j := range got {
		if j.ReplyRef == nil || *j.ReplyRef != fmt.Sprint("ref-", i) {
			t.Fatalf("caller %d got job %s with replyRef %v: answers were mixed up", i, j.ID, j.ReplyRef)
		}
		if seen[j.ID] {
			t.Fatalf("job id %s handed to two callers", j.ID)
		}
		seen[j.ID] = true
	}
	if c := w.count(`SELECT count(*)::int FROM jobs`); c != n {
		t.Errorf("%d jobs stored, want %d", c, n)
	}
	commits := w.count(`SELECT count(DISTINCT created_at)::int FROM jobs`)
	t.Logf("%d creations in %d transactions", n, commits)
	w.checkQueueDepth()
}
