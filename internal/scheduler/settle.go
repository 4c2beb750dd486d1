package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/tenant"
)

// outcome is how a job ends.
type outcome struct {
	state   State
	result  json.RawMessage
	code    string
	message string
}

const (
	jobFinish = `
UPDATE jobs SET state = $3, result = $4, error_code = $5, error_message = $6, finished_at = $7,
	lease_owner = NULL, lease_expires_at = NULL
WHERE tenant_id = $1 AND id = $2 AND state IN ('dispatching', 'running') AND ($8 = '' OR lease_owner = $8)
RETURNING ` + jobColumns

	// accountReleaseSlot frees a slot. It runs only after the job's
	// guarded transition out of dispatching/running succeeded in the same
	// transaction, so each slot is freed exactly once. A deleted account
	// matches no row: there is nothing left to free.
	accountReleaseSlot = `UPDATE accounts SET running = running - 1 WHERE tenant_id = $1 AND id = $2`

	notifyWorkAndDone = `SELECT pg_notify($1, ''), pg_notify($2, $3)`
)

// finish ends e's job as o says, freeing its slot, if this replica still
// owns it.
func (s *Scheduler) finish(ctx context.Context, e *execution, o outcome) {
	err := pgx.BeginFunc(ctx, s.cfg.Pool, func(tx pgx.Tx) error {
		_, err := s.finishTx(ctx, tx, e.scope, e.id, s.cfg.Owner, o)
		return err
	})
	if err != nil && !errors.Is(err, pgx.ErrNoRows) && !isShutdown(ctx, err) {
		s.log.Error("finish job", "job", e.id, "err", err)
	}
}

// finishTx is the one terminal transition of a dispatched job. owner ""
// skips the ownership check (cancellation by a producer). It returns
// pgx.ErrNoRows if the job was not dispatched or running (anymore).
func (s *Scheduler) finishTx(ctx context.Context, tx pgx.Tx, scope tenant.Scope, id, owner string, o outcome) (Job, error) {
	now := s.now()
	j, err := scanJob(tx.QueryRow(ctx, jobFinish, scope.TenantID, id, o.state, nullJSON(o.result),
		nullIfEmpty(o.code), nullIfEmpty(o.message), now, owner))
	if err != nil {
		return Job{}, err
	}
	if _, err := tx.Exec(ctx, accountReleaseSlot, scope.TenantID, *j.accountID); err != nil {
		return Job{}, err
	}
	if err := s.ended(ctx, tx, j); err != nil {
		return Job{}, err
	}
	s.metrics.finished(j, now)
	return j, nil
}

// ended runs what every terminal transition owes: the finish hook (the
// webhook outbox) and the notifications.
func (s *Scheduler) ended(ctx context.Context, tx pgx.Tx, j Job) error {
	if s.cfg.OnFinish != nil {
		if err := s.cfg.OnFinish(ctx, tx, j); err != nil {
			return err
		}
	}
	_, err := tx.Exec(ctx, notifyWorkAndDone, channelWork, channelDone, j.ID)
	return err
}

func nullJSON(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// retry describes a retryable failure of one attempt.
type retry struct {
	reason       string        // for metrics and logs
	message      string        // the upstream's reason, kept on the job
	delay        time.Duration // backoff before the next attempt
	quarantine   time.Duration // rest the account this long
	accountError string        // take the account out of rotation with this reason
	unconsumed   bool          // the attempt never reached the upstream: do not count it
}

const (
	jobLockOwned = `
SELECT cancel_requested FROM jobs
WHERE tenant_id = $1 AND id = $2 AND state IN ('dispatching', 'running') AND lease_owner = $3
FOR UPDATE`

	jobRequeue = `
UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL, upstream_id = NULL,
	run_after = $3, error_code = $4, error_message = $5, attempt = attempt - $6
WHERE tenant_id = $1 AND id = $2
RETURNING account_id`

	accountQuarantine = `UPDATE accounts SET quarantined_until = $3 WHERE tenant_id = $1 AND id = $2`
)

// retry puts e's job back in the queue (failing it if its attempts are
// spent, canceling it if that was asked meanwhile), frees its slot, and
// applies what the failure says about the account — all in one transaction.
func (s *Scheduler) retry(ctx context.Context, e *execution, r retry) {
	now := s.now()
	err := pgx.BeginFunc(ctx, s.cfg.Pool, func(tx pgx.Tx) error {
		var cancelRequested bool
		if err := tx.QueryRow(ctx, jobLockOwned, e.scope.TenantID, e.id, s.cfg.Owner).Scan(&cancelRequested); err != nil {
			return err
		}
		if err := s.blameAccount(ctx, tx, e, r, now); err != nil {
			return err
		}
		switch {
		case cancelRequested:
			_, err := s.finishTx(ctx, tx, e.scope, e.id, s.cfg.Owner,
				outcome{state: StateCanceled, code: CodeCanceled, message: "canceled by request"})
			return err
		case !r.unconsumed && e.attempt >= e.maxAttempts:
			_, err := s.finishTx(ctx, tx, e.scope, e.id, s.cfg.Owner, outcome{state: StateFailed,
				code: CodeRetriesExceeded, message: "all " + itoa(e.maxAttempts) + " attempts failed; last: " + r.message})
			return err
		}
		unconsumed := 0
		if r.unconsumed {
			unconsumed = 1
		}
		var accountID int64
		if err := tx.QueryRow(ctx, jobRequeue, e.scope.TenantID, e.id, now.Add(r.delay), "retrying_"+r.reason,
			r.message, unconsumed).Scan(&accountID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, accountReleaseSlot, e.scope.TenantID, accountID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, channelWork)
		return err
	})
	switch {
	case err == nil:
		s.metrics.retried(r.reason)
		s.log.Info("job will be retried", "job", e.id, "attempt", e.attempt, "reason", r.reason, "in", r.delay.String())
	case errors.Is(err, pgx.ErrNoRows), isShutdown(ctx, err):
	default:
		s.log.Error("requeue job", "job", e.id, "err", err)
	}
}

// blameAccount records what a failure says about the account.
func (s *Scheduler) blameAccount(ctx context.Context, tx pgx.Tx, e *execution, r retry, now time.Time) error {
	if r.accountError != "" {
		if err := accounts.MarkError(ctx, tx, e.scope, e.accountID, r.accountError, now); err != nil {
			return err
		}
		s.log.Warn("account taken out of rotation", "account", e.email, "reason", r.accountError)
	}
	if r.quarantine > 0 {
		if _, err := tx.Exec(ctx, accountQuarantine, e.scope.TenantID, e.accountID, now.Add(r.quarantine)); err != nil {
			return err
		}
		s.log.Warn("account quarantined", "account", e.email, "for", r.quarantine.String())
	}
	return nil
}
