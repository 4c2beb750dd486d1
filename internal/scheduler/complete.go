package scheduler

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/backoff"
	"github.com/poolgate/poolgate/internal/tenant"
)

// The completer writes what executions learn from the upstream in batches:
// one transaction records every job that started running or ended since the
// last flush, frees their slots and writes their outbox rows. Executions
// hand it their news and go on (or wait, when they need the answer); a
// flush starts as soon as the previous one committed, so under load each
// commit carries many jobs, and an idle replica adds no delay.
//
// A SIGKILL loses only what was not flushed yet: those jobs are still
// dispatching or running under this replica's lease in the database, and
// the rescuer of another replica finishes them when the lease lapses.

// completion is one job's news for the completer.
type completion struct {
	scope      tenant.Scope
	id         string
	upstreamID *string
	// ended is the job's outcome; nil means the job now runs upstream
	// (upstreamID says as what) and the caller waits on reply.
	ended *outcome
	reply chan runningReply
}

// runningReply answers a "now running" completion: owned is false if this
// replica lost the job meanwhile; cancelRequested if a producer asked to
// cancel it.
type runningReply struct {
	owned, cancelRequested bool
	err                    error
}

// completerBatch is the most completions one transaction carries.
const completerBatch = 256

type completer struct {
	s       *Scheduler
	in      chan completion
	done    chan struct{}
	mu      sync.Mutex
	stopped bool
}

func newCompleter(s *Scheduler) *completer {
	return &completer{s: s, in: make(chan completion, 4*completerBatch), done: make(chan struct{})}
}

// run flushes until in is closed and drained.
func (c *completer) run() {
	defer close(c.done)
	batch := make([]completion, 0, completerBatch)
	for first := range c.in {
		batch = append(batch[:0], first)
	drain:
		for len(batch) < completerBatch {
			select {
			case more, ok := <-c.in:
				if !ok {
					break drain
				}
				batch = append(batch, more)
			default:
				break drain
			}
		}
		c.flushWithRetry(batch)
	}
}

// flushWithRetry writes a batch, retrying transient database errors for a
// while. Should the database stay away, the batch is dropped: the jobs keep
// their leases in the database and are rescued when those lapse. A batch
// the database refuses for one item's data is written item by item.
func (c *completer) flushWithRetry(batch []completion) {
	var err error
	for attempt := range 8 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = c.flush(ctx, batch)
		cancel()
		if err == nil {
			return
		}
		if isDataError(err) {
			c.flushApart(batch)
			return
		}
		c.s.log.Warn("flush completions failed; retrying", "jobs", len(batch), "err", err)
		time.Sleep(backoff.Exp(attempt, 50*time.Millisecond, 2*time.Second))
	}
	c.s.log.Error("dropping completions; their leases will lapse and the rescuer finishes them", "jobs", len(batch), "err", err)
	for _, cm := range batch {
		if cm.reply != nil {
			cm.reply <- runningReply{err: err}
		}
	}
}

// flushApart writes each completion of a batch the database refused for
// its data on its own, so one bad item holds back no other. An ending the
// database still refuses (an upstream result or message Postgres cannot
// store, such as a NUL character) ends failed instead: retrying it, or
// leaving it to the rescuer, would only meet the same refusal again.
func (c *completer) flushApart(batch []completion) {
	for _, cm := range batch {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.flush(ctx, []completion{cm})
		cancel()
		switch {
		case err == nil:
		case !isDataError(err):
			c.flushWithRetry([]completion{cm})
		case cm.ended == nil: // "now running" with an unstorable upstream id
			cm.reply <- runningReply{err: err}
		default:
			c.s.log.Warn("the upstream's outcome cannot be stored; the job fails", "job", cm.id, "err", err)
			cm.ended = &outcome{state: StateFailed, code: CodeUpstreamFailed, message: "the upstream's result could not be stored"}
			cm.upstreamID = nil // nothing of the upstream's is left to refuse
			c.flushWithRetry([]completion{cm})
		}
	}
}

const (
	// jobsMarkRunning records upstream ids of jobs this replica still owns.
	// The lease says the job is in flight (jobs' CHECK ties the two). Both
	// statements say it with the lease and not with the state, so that the
	// planner probes the primary key once a row (see jobDispatch) instead
	// of reading every in-flight job through jobs_inflight_idx.
	jobsMarkRunning = `
UPDATE jobs j SET state = 'running', upstream_id = x.upstream_id
FROM unnest($1::bigint[], $2::text[], $3::text[]) AS x (tenant_id, id, upstream_id)
WHERE j.tenant_id = x.tenant_id AND j.id = x.id AND j.lease_owner = $4
RETURNING j.id, j.cancel_requested`

	// jobsFinish ends jobs owner ($9) still holds, or whoever holds them
	// when $9 is ''; only rows it moved are returned, so only their slots
	// are freed.
	jobsFinish = `
UPDATE jobs j SET state = x.state, result = x.result, error_code = x.error_code,
	error_message = x.error_message, upstream_id = coalesce(x.upstream_id, j.upstream_id),
	finished_at = $8, lease_owner = NULL, lease_expires_at = NULL
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::text[], $7::text[])
	AS x (tenant_id, id, state, result, error_code, error_message, upstream_id)
WHERE j.tenant_id = x.tenant_id AND j.id = x.id
	AND j.lease_owner IS NOT NULL AND ($9 = '' OR j.lease_owner = $9)
RETURNING ` + jobColumnsJ
)

// flush writes one batch in one transaction and answers its waiters.
func (c *completer) flush(ctx context.Context, batch []completion) error {
	s := c.s
	var running, ending []completion
	for _, cm := range batch {
		if cm.ended == nil {
			running = append(running, cm)
		} else {
			ending = append(ending, cm)
		}
	}
	now := s.now()
	var (
		replies map[string]runningReply
		ended   []Job
	)
	err := pgx.BeginFunc(ctx, s.cfg.Pool, func(tx pgx.Tx) error {
		var err error
		if replies, err = markRunning(ctx, tx, running, s.cfg.Owner); err != nil {
			return err
		}
		ended, err = s.finishAs(ctx, tx, ending, now, s.cfg.Owner)
		return err
	})
	if err != nil {
		return err
	}
	for _, cm := range running {
		cm.reply <- replies[cm.id]
	}
	s.afterEnded(ended, now)
	return nil
}

func markRunning(ctx context.Context, tx pgx.Tx, running []completion, owner string) (map[string]runningReply, error) {
	replies := make(map[string]runningReply, len(running))
	if len(running) == 0 {
		return replies, nil
	}
	tenants, ids, ups := make([]int64, len(running)), make([]string, len(running)), make([]string, len(running))
	for i, cm := range running {
		tenants[i], ids[i], ups[i] = cm.scope.TenantID, cm.id, *cm.upstreamID
	}
	rows, err := tx.Query(ctx, jobsMarkRunning, tenants, ids, ups, owner)
	if err != nil {
		return nil, err
	}
	var (
		id     string
		cancel bool
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &cancel}, func() error {
		replies[id] = runningReply{owned: true, cancelRequested: cancel}
		return nil
	})
	return replies, err
}

// finishAs ends the given jobs if owner still holds them, frees their
// slots and runs the finish hook, in tx; it returns the jobs it moved.
// owner "" ends them whoever holds them (a producer's cancellation).
func (s *Scheduler) finishAs(ctx context.Context, tx pgx.Tx, ending []completion, now time.Time, owner string) ([]Job, error) {
	if len(ending) == 0 {
		return nil, nil
	}
	n := len(ending)
	var (
		tenants         = make([]int64, n)
		ids             = make([]string, n)
		states          = make([]string, n)
		results         = make([]json.RawMessage, n)
		codes, messages = make([]*string, n), make([]*string, n)
		ups             = make([]*string, n)
	)
	for i, cm := range ending {
		o := cm.ended
		tenants[i], ids[i], states[i] = cm.scope.TenantID, cm.id, string(o.state)
		if len(o.result) > 0 {
			results[i] = o.result
		}
		codes[i], messages[i], ups[i] = nullIfEmpty(o.code), nullIfEmpty(o.message), cm.upstreamID
	}
	rows, err := tx.Query(ctx, jobsFinish, tenants, ids, states, results, codes, messages, ups, now, owner)
	if err != nil {
		return nil, err
	}
	jobs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Job, error) { return scanJob(r) })
	if err != nil {
		return nil, err
	}
	if err := s.releaseSlots(ctx, tx, jobs); err != nil {
		return nil, err
	}
	if err := resetBreakers(ctx, tx, jobs); err != nil {
		return nil, err
	}
	return jobs, s.runFinishHook(ctx, tx, jobs)
}

// releaseSlots frees the slots of jobs the caller's statement just moved
// out of dispatching/running.
func (s *Scheduler) releaseSlots(ctx context.Context, tx pgx.Tx, jobs []Job) error {
	rs := make([]accounts.Release, 0, len(jobs))
	for _, j := range jobs {
		if j.accountID != nil {
			rs = append(rs, accounts.Release{Pool: j.scope(), AccountID: *j.accountID, N: 1})
		}
	}
	return accounts.ReleaseSlots(ctx, tx, rs)
}

// resetBreakers resets the circuit breaker of the accounts that just
// finished a job successfully, in the batch's own transaction.
func resetBreakers(ctx context.Context, tx pgx.Tx, jobs []Job) error {
	var tenants, ids []int64
	for _, j := range jobs {
		if j.State == StateSucceeded && j.accountID != nil {
			tenants, ids = append(tenants, j.tenantID), append(ids, *j.accountID)
		}
	}
	return accounts.ResetFailures(ctx, tx, tenants, ids)
}

func (s *Scheduler) runFinishHook(ctx context.Context, tx pgx.Tx, jobs []Job) error {
	if s.cfg.OnFinish == nil || len(jobs) == 0 {
		return nil
	}
	return s.cfg.OnFinish(ctx, tx, jobs)
}

// afterEnded is what follows the commit of ended jobs: metrics, local
// long-polls and the dispatcher (slots have freed: placements read the
// pending releases as free slots, see accounts.FreeWindow) at once, other
// replicas' long-polls (and, after a burst, their dispatchers) through a
// coalesced notification.
func (s *Scheduler) afterEnded(jobs []Job, now time.Time) {
	if len(jobs) == 0 {
		return
	}
	for _, j := range jobs {
		s.metrics.finished(j, now)
		s.waiters.notify(j.ID)
	}
	s.Wake()
	if len(jobs) > s.cfg.Batch {
		// More slots freed than one placement fills: a burst (a wave of
		// jobs ending together) is placed by every replica's dispatcher,
		// not this one's alone, one batch after another.
		s.signals.workQueued()
	}
	s.signals.jobsDone(jobs)
}

// record hands a completion to the completer; once it has stopped, the
// completion is written at once.
func (c *completer) record(cm completion) {
	c.mu.Lock()
	if !c.stopped {
		c.in <- cm // under the lock, so it is ahead of stop's close
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.flushWithRetry([]completion{cm})
}

// stop flushes what is buffered and ends the completer.
func (c *completer) stop() {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.stopped = true
	close(c.in)
	c.mu.Unlock()
	<-c.done
}

// runningNow records that e runs upstream as upstreamID and waits for the
// answer: whether this replica still owns the job, and whether a producer
// asked to cancel it.
func (c *completer) runningNow(ctx context.Context, e *execution, upstreamID string) runningReply {
	reply := make(chan runningReply, 1)
	c.record(completion{scope: e.scope, id: e.id, upstreamID: &upstreamID, reply: reply})
	select {
	case r := <-reply:
		return r
	case <-ctx.Done():
		return runningReply{err: ctx.Err()}
	}
}
