package scheduler

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/ids"
	"github.com/poolgate/poolgate/internal/tenant"
)

// The inserter group-commits job creations: while one transaction is in
// flight the requests that arrive queue up, and the next transaction
// inserts all of them with one statement per pool. An idle replica adds no
// delay; a busy one pays one commit per batch instead of one per job.

// insertBatchMax is the most creations one transaction carries.
const insertBatchMax = 512

type insertReq struct {
	scope tenant.Scope
	nj    NewJob
	reply chan insertResult
}

type insertResult struct {
	job Job
	err error
}

type inserter struct {
	s       *Scheduler
	in      chan insertReq
	mu      sync.Mutex
	running bool
	stopped bool
	done    chan struct{}
}

func newInserter(s *Scheduler) *inserter {
	return &inserter{s: s, in: make(chan insertReq, insertBatchMax)}
}

// create queues one job through the next group commit.
func (w *inserter) create(ctx context.Context, scope tenant.Scope, nj NewJob) (Job, error) {
	req := insertReq{scope: scope, nj: nj, reply: make(chan insertResult, 1)}
	if !w.enqueue(ctx, req) {
		// Stopped: nobody batches any more, so insert alone.
		return w.s.insertAlone(ctx, req)
	}
	select {
	case r := <-req.reply:
		return r.job, r.err
	case <-ctx.Done():
		// The job may still be inserted; the caller gets no id for it,
		// as with any request whose answer was lost.
		return Job{}, ctx.Err()
	}
}

// enqueue hands req to the batching goroutine, starting it on first use.
func (w *inserter) enqueue(ctx context.Context, req insertReq) bool {
	// Sending under the lock keeps every request ahead of stop's marker.
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return false
	}
	if !w.running {
		w.running = true
		w.done = make(chan struct{})
		go w.run()
	}
	select {
	case w.in <- req:
		return true
	case <-ctx.Done():
		return false
	}
}

// stop lets the batching goroutine finish what it holds; later creations
// insert alone.
func (w *inserter) stop() {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	w.stopped = true
	running := w.running
	w.mu.Unlock()
	if running {
		w.in <- insertReq{} // the stop marker, after everything queued
		<-w.done
	}
}

func (w *inserter) run() {
	defer close(w.done)
	batch := make([]insertReq, 0, insertBatchMax)
	for first := range w.in {
		if first.reply == nil {
			return
		}
		batch = append(batch[:0], first)
		last := false
	drain:
		for len(batch) < insertBatchMax {
			select {
			case r := <-w.in:
				if r.reply == nil {
					last = true
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		w.s.insertBatch(batch)
		if last {
			return
		}
	}
}

// insertBatch inserts a batch in one transaction and answers each request.
// If the database refuses the batch for one request's data, each request
// is retried alone so that only the bad one fails.
func (s *Scheduler) insertBatch(batch []insertReq) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results, err := s.insertTx(ctx, batch)
	if err != nil && isDataError(err) && len(batch) > 1 {
		for _, r := range batch {
			job, err := s.insertAlone(ctx, r)
			r.reply <- insertResult{job, err}
		}
		return
	}
	for i, r := range batch {
		if err != nil {
			r.reply <- insertResult{err: asDomain(err)}
			continue
		}
		r.reply <- results[i]
	}
}

func (s *Scheduler) insertAlone(ctx context.Context, r insertReq) (Job, error) {
	results, err := s.insertTx(ctx, []insertReq{r})
	if err != nil {
		return Job{}, asDomain(err)
	}
	return results[0].job, results[0].err
}

// insertTx inserts the batch, pool by pool, in one transaction.
func (s *Scheduler) insertTx(ctx context.Context, batch []insertReq) ([]insertResult, error) {
	now := s.now()
	byPool := map[tenant.Scope][]int{}
	var pools []tenant.Scope
	for i, r := range batch {
		if _, seen := byPool[r.scope]; !seen {
			pools = append(pools, r.scope)
		}
		byPool[r.scope] = append(byPool[r.scope], i)
	}
	results := make([]insertResult, len(batch))
	n := 0
	err := dbx.InTx(ctx, s.cfg.Pool, func(tx pgx.Tx) error {
		n = 0
		for _, p := range pools {
			idx := byPool[p]
			njs, jobIDs := make([]NewJob, len(idx)), make([]string, len(idx))
			for k, i := range idx {
				njs[k], jobIDs[k] = batch[i].nj, ids.New("job", now)
			}
			jobs, refused, err := s.insertJobs(ctx, tx, p, njs, jobIDs, now)
			if err != nil {
				return err
			}
			for k, i := range idx {
				results[i] = insertResult{jobs[k], refused[k]}
				if refused[k] == nil {
					n++
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.created(n)
	return results, nil
}

// isDataError reports whether Postgres refused a value (SQLSTATE class 22:
// out-of-range numbers, invalid text), as opposed to being unavailable.
func isDataError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && len(pe.Code) == 5 && pe.Code[:2] == "22"
}

// Queue depth counters (see migrations/0005_queue_depth.sql and 0015).
const (
	sideIn  = "in"
	sideOut = "out"

	queueDepthRead = `
SELECT coalesce(sum(CASE side WHEN 'in' THEN n ELSE -n END), 0) FROM queue_depth
WHERE tenant_id = $1 AND mode = $2`

	queueDepthBump = `
INSERT INTO queue_depth (tenant_id, mode, side, shard, n) VALUES ($1, $2, $3, $5, $4)
ON CONFLICT (tenant_id, mode, side, shard) DO UPDATE SET n = queue_depth.n + EXCLUDED.n`

	// queueDepthShards is how many rows each side is spread over (see
	// migrations/0015_queue_depth_shards.sql).
	queueDepthShards = 16
)

// queueDepth is how many jobs the pool has queued, read in O(1).
func queueDepth(ctx context.Context, db dbx.DBTX, scope tenant.Scope) (int, error) {
	var n int
	err := db.QueryRow(ctx, queueDepthRead, scope.TenantID, scope.Mode).Scan(&n)
	return n, err
}

// queueDepthAdd counts n jobs entering (sideIn) or leaving (sideOut) the
// pool's queue, in the transaction that moves them.
func queueDepthAdd(ctx context.Context, db dbx.DBTX, scope tenant.Scope, side string, n int) error {
	if n == 0 {
		return nil
	}
	// A random row of the side, so that concurrent transactions of other
	// replicas rarely wait for each other's commit on it.
	_, err := db.Exec(ctx, queueDepthBump, scope.TenantID, scope.Mode, side, n, rand.IntN(queueDepthShards))
	return err
}
