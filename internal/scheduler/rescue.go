package scheduler

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/tenant"
)

func itoa(n int) string { return strconv.Itoa(n) }

// jobRenewLeases skips rows another transaction holds (the completer
// ending them, say) instead of waiting in an order that could deadlock.
const jobRenewLeases = `
UPDATE jobs SET lease_expires_at = $3
WHERE (tenant_id, id) IN (
	SELECT tenant_id, id FROM jobs
	WHERE lease_owner = $1 AND state IN ('dispatching', 'running') AND id = ANY($2)
	FOR UPDATE SKIP LOCKED)`

// renewLoop keeps the leases of the jobs this replica follows alive.
func (s *Scheduler) renewLoop(ctx context.Context) {
	for sleep(ctx, s.cfg.LeaseTTL/3) {
		s.mu.Lock()
		ids := make([]string, 0, len(s.inflight))
		for id := range s.inflight {
			ids = append(ids, id)
		}
		s.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		if _, err := s.cfg.Pool.Exec(ctx, jobRenewLeases, s.cfg.Owner, ids, s.now().Add(s.cfg.LeaseTTL)); err != nil && ctx.Err() == nil {
			s.log.Error("renew leases", "err", err)
		}
	}
}

// rescueEvery is how often the rescuer looks for lapsed leases and
// overdue queued jobs.
func (s *Scheduler) rescueEvery() time.Duration { return min(s.cfg.LeaseTTL/3, 5*time.Second) }

func (s *Scheduler) rescueLoop(ctx context.Context) {
	for {
		if err := s.rescue(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("rescue jobs", "err", err)
		}
		if err := s.expireQueued(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("expire queued jobs", "err", err)
		}
		if !sleep(ctx, s.rescueEvery()) {
			return
		}
	}
}

const jobClaimLapsed = `
WITH lapsed AS (
	SELECT tenant_id, id FROM jobs
	WHERE state IN ('dispatching', 'running') AND lease_expires_at < $1
	ORDER BY lease_expires_at
	LIMIT 100 FOR UPDATE SKIP LOCKED
)
UPDATE jobs j SET lease_owner = $2, lease_expires_at = $3
FROM lapsed WHERE j.tenant_id = lapsed.tenant_id AND j.id = lapsed.id
RETURNING ` + executionColumnsJ

// rescue takes over jobs whose replica stopped renewing their lease.
func (s *Scheduler) rescue(ctx context.Context) error {
	now := s.now()
	rows, err := s.cfg.Pool.Query(ctx, jobClaimLapsed, now, s.cfg.Owner, now.Add(s.cfg.LeaseTTL))
	if err != nil {
		return err
	}
	lapsed, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*execution, error) { return scanExecution(r) })
	if err != nil {
		return err
	}
	for _, e := range lapsed {
		s.log.Warn("rescuing job whose lease lapsed", "job", e.id, "attempt", e.attempt)
		s.metrics.rescued()
		s.follow(e, s.resume)
	}
	return nil
}

// resume continues a rescued job from wherever its last owner left it.
func (s *Scheduler) resume(ctx context.Context, e *execution) {
	if !s.credentials(ctx, e) {
		return
	}
	if e.upstreamID != nil {
		if e.cancelRequested {
			s.cancelRunning(ctx, e)
			return
		}
		st, err := s.upstream(e.acct).Status(ctx, e.acct, *e.upstreamID)
		if err != nil {
			return // try again after the lease lapses
		}
		s.track(ctx, e, st)
		return
	}
	// Dispatched, but did the submission reach the upstream? Ask by the
	// attempt's idempotency key rather than guess: submitting again could
	// run the attempt twice. An upstream that cannot be asked leaves the
	// outcome unknown, and that is what the job says.
	found, err := s.lookup(ctx, e)
	if errors.Is(err, provider.ErrNoLookup) {
		s.unknownOutcome(ctx, e, "the replica running this attempt stopped during its upstream call, which cannot be looked up")
		return
	}
	if err != nil {
		return
	}
	if found == nil {
		s.retry(ctx, e, retry{reason: "never_submitted", message: "previous replica stopped before submitting", unconsumed: true})
		return
	}
	if s.markRunning(ctx, e, found.UpstreamID) {
		s.track(ctx, e, *found)
	}
}

const jobExpireQueued = `
WITH late AS (
	SELECT tenant_id, id FROM jobs
	WHERE state = 'queued' AND queue_deadline <= $1
	LIMIT 100 FOR UPDATE SKIP LOCKED
)
UPDATE jobs j SET state = 'failed', error_code = $2, error_message = $3, finished_at = $1
FROM late WHERE j.tenant_id = late.tenant_id AND j.id = late.id
RETURNING ` + jobColumnsJ

// expireQueued fails jobs still queued past their queue timeout.
func (s *Scheduler) expireQueued(ctx context.Context) error {
	now := s.now()
	var late []Job
	err := pgx.BeginFunc(ctx, s.cfg.Pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, jobExpireQueued, now, CodeNoCapacity,
			"no account had a free slot before the job's queueTimeout")
		if err != nil {
			return err
		}
		late, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Job, error) { return scanJob(r) })
		if err != nil {
			return err
		}
		left := map[tenant.Scope]int{}
		for _, j := range late {
			left[j.scope()]++
		}
		for scope, n := range left {
			if err := queueDepthAdd(ctx, tx, scope, sideOut, n); err != nil {
				return err
			}
		}
		return s.runFinishHook(ctx, tx, late)
	})
	if err != nil {
		return err
	}
	s.afterEnded(late, now)
	return nil
}

const jobHandOver = `
UPDATE jobs SET lease_expires_at = $2
WHERE lease_owner = $1 AND state IN ('dispatching', 'running')`

// handOver expires this replica's remaining leases so that another
// replica rescues its jobs at once instead of after LeaseTTL.
func (s *Scheduler) handOver() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tag, err := s.cfg.Pool.Exec(ctx, jobHandOver, s.cfg.Owner, s.now())
	if err != nil {
		s.log.Error("hand over jobs", "err", err)
		return
	}
	if n := tag.RowsAffected(); n > 0 {
		s.log.Info("handed over jobs still in flight", "jobs", n)
	}
}
