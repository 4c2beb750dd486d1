package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// outcome is how a job ends.
type outcome struct {
	state   State
	result  json.RawMessage
	code    string
	message string
}

// finish hands e's end to the completer, which records it (and frees the
// slot) if this replica still owns the job.
func (s *Scheduler) finish(e *execution, o outcome) {
	s.done.record(completion{scope: e.scope, id: e.id, upstreamID: e.upstreamID, ended: &o})
}

// finishNow ends jobs at once, whoever holds them (a producer's
// cancellation), in tx; it returns the jobs it moved.
func (s *Scheduler) finishNow(ctx context.Context, tx pgx.Tx, cms []completion) ([]Job, error) {
	return s.finishAs(ctx, tx, cms, s.now(), "")
}

// retry describes a retryable failure of one attempt.
type retry struct {
	reason       string        // for metrics and logs
	message      string        // the upstream's reason, kept on the job
	delay        time.Duration // backoff before the next attempt
	quarantine   time.Duration // rest the account this long
	quarantineAs string        // why (an accounts.Quarantine* code)
	accountError string        // take the account out of rotation with this reason
	probe        bool          // the refusal may be temporary: probe the account in error
	breaker      bool          // count the failure against the account's circuit breaker
	unconsumed   bool          // the attempt never reached the upstream: do not count it
	warning      string        // kept on the job for good, whatever its end ("": unchanged)
}

const (
	jobLockOwned = `
SELECT cancel_requested FROM jobs
WHERE tenant_id = $1 AND id = $2 AND state IN ('dispatching', 'running') AND lease_owner = $3
FOR UPDATE`

	jobRequeue = `
UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL, upstream_id = NULL,
	run_after = $3, error_code = $4, error_message = $5, attempt = attempt - $6, warning = coalesce($7, warning)
WHERE tenant_id = $1 AND id = $2
RETURNING account_id`
)

// retry puts e's job back in the queue (failing it if its attempts are
// spent, canceling it if that was asked meanwhile), frees its slot, and
// applies what the failure says about the account — all in one
// transaction. Retries are the exception, so they do not go through the
// completer's batches.
func (s *Scheduler) retry(ctx context.Context, e *execution, r retry) {
	now := s.now()
	var ended []Job
	// The accounts store's transaction announces the health events the
	// failure recorded once it commits.
	err := s.cfg.Accounts.InTx(ctx, s.cfg.Pool, func(tx pgx.Tx) error {
		ended = nil
		var cancelRequested bool
		if err := tx.QueryRow(ctx, jobLockOwned, e.scope.TenantID, e.id, s.cfg.Owner).Scan(&cancelRequested); err != nil {
			return err
		}
		if err := s.blameAccount(ctx, tx, e, r, now); err != nil {
			return err
		}
		end := func(o outcome) error {
			var err error
			ended, err = s.finishAs(ctx, tx, []completion{{scope: e.scope, id: e.id, upstreamID: e.upstreamID, ended: &o}},
				now, s.cfg.Owner)
			return err
		}
		switch {
		case cancelRequested:
			return end(outcome{state: StateCanceled, code: CodeCanceled, message: "canceled by request"})
		case !r.unconsumed && e.attempt >= e.maxAttempts:
			return end(outcome{state: StateFailed, code: CodeRetriesExceeded,
				message: "all " + itoa(e.maxAttempts) + " attempts failed; last: " + r.message})
		}
		unconsumed := 0
		if r.unconsumed {
			unconsumed = 1
		}
		var accountID int64
		if err := tx.QueryRow(ctx, jobRequeue, e.scope.TenantID, e.id, now.Add(r.delay), "retrying_"+r.reason,
			r.message, unconsumed, nullIfEmpty(r.warning)).Scan(&accountID); err != nil {
			return err
		}
		if err := s.releaseSlots(ctx, tx, []Job{{tenantID: e.scope.TenantID, mode: e.scope.Mode, accountID: &accountID}}); err != nil {
			return err
		}
		if err := runAttemptHook(ctx, tx, s.cfg.OnRetried, []*execution{e}, now); err != nil {
			return err
		}
		return queueDepthAdd(ctx, tx, e.scope, sideIn, 1)
	})
	switch {
	case err == nil && ended != nil:
		s.afterEnded(ended, now)
	case err == nil:
		s.metrics.retried(r.reason)
		s.log.Info("job will be retried", "job", e.id, "attempt", e.attempt, "reason", r.reason, "in", r.delay.String())
		s.Wake()
		s.signals.workQueued()
	case errors.Is(err, pgx.ErrNoRows), isShutdown(ctx, err):
	default:
		s.log.Error("requeue job", "job", e.id, "err", err)
	}
}

// blameAccount records what a failure says about the account.
func (s *Scheduler) blameAccount(ctx context.Context, tx pgx.Tx, e *execution, r retry, now time.Time) error {
	acc := s.cfg.Accounts
	if r.accountError != "" {
		if err := acc.MarkError(ctx, tx, e.scope, e.accountID, r.accountError, r.probe, now); err != nil {
			return err
		}
		s.log.Warn("account taken out of rotation", "account", e.email, "reason", r.accountError)
	}
	if r.quarantine > 0 {
		if err := acc.Quarantine(ctx, tx, e.scope, e.accountID, r.quarantineAs, now.Add(r.quarantine), now); err != nil {
			return err
		}
		s.log.Warn("account quarantined", "account", e.email, "reason", r.quarantineAs, "for", r.quarantine.String())
	}
	if r.breaker {
		return acc.CountFailure(ctx, tx, e.scope, e.accountID, now)
	}
	return nil
}
