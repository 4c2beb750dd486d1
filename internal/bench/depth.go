package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/poolgate/poolgate/internal/provider/sim"
)

// insertDepth is scenario 5: does queueing a job cost more when the queue
// is deep? It queues DepthJobs jobs into an empty queue, then fills the
// queue with DepthQueued more in one statement, and queues DepthJobs again.
// No replica dispatches meanwhile, so the queue only grows. The two insert
// rates and their ratio (deep / empty; 1 means flat) are the figures.
func (b *runner) insertDepth(ctx context.Context, tag string) (*sample, Invariants, error) {
	c := b.cfg
	w, err := newWorld(ctx, c, b.dbs, tag, sim.Config{Seed: 1})
	if err != nil {
		return nil, Invariants{}, err
	}
	defer w.close(b.dbs)
	// Admission reads the pool (pinning, the capacity warning), so it gets
	// the same pool as the throughput scenario.
	if err := w.addAccounts(ctx, c.Accounts, c.Slots); err != nil {
		return nil, Invariants{}, err
	}
	s := newSample()
	insert := func(prefix string) (float64, error) {
		activity := w.startActivity(ctx)
		t := time.Now()
		if _, _, _, err := w.createJobs(ctx, c.DepthJobs, c.Producers); err != nil {
			return 0, fmt.Errorf("queue jobs: %w", err)
		}
		rate := perSec(c.DepthJobs, time.Since(t))
		s.set(prefix+"jobs_per_sec", "jobs/s", rate)
		activity.stop(ctx, s, prefix, c.DepthJobs) // createJobs closed its pool and waited for its backends
		return rate, nil
	}

	b.progress("insert_depth: queueing %d jobs into an empty queue", c.DepthJobs)
	empty, err := insert("empty_")
	if err != nil {
		return nil, Invariants{}, err
	}
	b.progress("insert_depth: filling the queue with %d jobs", c.DepthQueued)
	if err := w.fillQueue(ctx, c.DepthQueued); err != nil {
		return nil, Invariants{}, fmt.Errorf("fill the queue: %w", err)
	}
	b.progress("insert_depth: queueing %d jobs behind %d queued", c.DepthJobs, c.DepthJobs+c.DepthQueued)
	deep, err := insert("deep_")
	if err != nil {
		return nil, Invariants{}, err
	}
	if empty > 0 {
		s.set("deep_vs_empty", "ratio", deep/empty)
	}
	s.set("deep_queued", "jobs", float64(c.DepthJobs+c.DepthQueued))
	// Nothing ran, so there is nothing for the invariants to judge.
	return s, Invariants{}, nil
}

// qFillQueue queues n jobs of the bench tenant in one statement, older
// than anything the producers queue next, so they wait ahead of them.
// It writes the jobs table directly, so fillQueue also adds to the queue
// depth counters that admission reads.
const qFillQueue = `
INSERT INTO jobs (tenant_id, id, mode, type, params, state, max_attempts, run_after, queue_deadline, created_at)
SELECT $1, 'job_fill' || lpad(g::text, 8, '0'), $2, 'video', '{"prompt":"bench"}', 'queued', 3,
	$3::timestamptz, $3::timestamptz + interval '1 day', $3::timestamptz
FROM generate_series(1, $4) g`

const qFillDepth = `
INSERT INTO queue_depth (tenant_id, mode, side, n) VALUES ($1, $2, 'in', $3)
ON CONFLICT (tenant_id, mode, side, shard) DO UPDATE SET n = queue_depth.n + EXCLUDED.n`

// fillQueue queues n jobs at once and refreshes the planner's statistics,
// as autovacuum would have on a queue that grew over time.
func (w *world) fillQueue(ctx context.Context, n int) error {
	if _, err := w.admin.Exec(ctx, qFillQueue, w.scope.TenantID, string(w.scope.Mode), time.Now().Add(-time.Hour), n); err != nil {
		return err
	}
	// Admission reads the queue depth from its counters (see
	// migrations/0005_queue_depth.sql); count the filled jobs there too.
	if _, err := w.admin.Exec(ctx, qFillDepth, w.scope.TenantID, string(w.scope.Mode), n); err != nil {
		return err
	}
	_, err := w.admin.Exec(ctx, `ANALYZE jobs`)
	return err
}
