package scheduler

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/tenant"
)

const (
	jobLock = `SELECT state, upstream_id, account_id FROM jobs WHERE tenant_id = $1 AND mode = $2 AND id = $3 FOR UPDATE`

	jobCancelQueued = `
UPDATE jobs SET state = 'canceled', error_code = $3, error_message = $4, finished_at = $5
WHERE tenant_id = $1 AND id = $2 AND state = 'queued'
RETURNING ` + jobColumns

	jobRequestCancel = `UPDATE jobs SET cancel_requested = true WHERE tenant_id = $1 AND id = $2`
)

// Cancel ends a job at the producer's request. A queued job ends at once.
// A running one is stopped upstream, then ends and frees its slot. A job
// being submitted right now is marked, and its replica cancels it as soon
// as the submission returns (freeing the slot earlier could let the
// account run more than maxJobs). Finished jobs answer 409.
func (s *Scheduler) Cancel(ctx context.Context, scope tenant.Scope, id string) (Job, error) {
	var (
		state      State
		upstreamID *string
		accountID  *int64
		ended      []Job
	)
	now := s.now()
	err := pgx.BeginFunc(ctx, s.cfg.Pool, func(tx pgx.Tx) error {
		ended = nil
		err := tx.QueryRow(ctx, jobLock, scope.TenantID, scope.Mode, id).Scan(&state, &upstreamID, &accountID)
		if errors.Is(err, pgx.ErrNoRows) {
			return errs.NotFound("job_not_found", "no job %q", id)
		}
		if err != nil {
			return err
		}
		switch {
		case state.Terminal():
			return errs.Conflict("job_finished", "the job already ended (%s)", state)
		case state == StateQueued:
			j, err := scanJob(tx.QueryRow(ctx, jobCancelQueued, scope.TenantID, id, CodeCanceled, "canceled by request", now))
			if err != nil {
				return err
			}
			ended = []Job{j}
			if err := queueDepthAdd(ctx, tx, scope, sideOut, 1); err != nil {
				return err
			}
			return s.runFinishHook(ctx, tx, ended)
		default:
			_, err := tx.Exec(ctx, jobRequestCancel, scope.TenantID, id)
			return err
		}
	})
	if err != nil {
		return Job{}, asDomain(err)
	}
	s.afterEnded(ended, now)
	if state == StateRunning && upstreamID != nil {
		if err := s.cancelUpstream(ctx, scope, id, *accountID, *upstreamID); err != nil {
			return Job{}, err
		}
	}
	return s.Get(ctx, scope, id)
}

// cancelUpstream stops a running job upstream and ends it. If the job ends
// by itself meanwhile, that ending stands.
func (s *Scheduler) cancelUpstream(ctx context.Context, scope tenant.Scope, id string, accountID int64, upstreamID string) error {
	acct, err := s.cfg.Accounts.Credentials(ctx, scope, accountID)
	if err != nil && !errors.Is(err, accounts.ErrGone) {
		return asDomain(err)
	}
	if err == nil {
		if err := s.upstream(acct).Cancel(ctx, acct, upstreamID); err != nil {
			e := errs.Unavailable(fmt.Errorf("cancel job %s upstream: %w", id, err))
			e.Code, e.Message = "upstream_unavailable", "the upstream did not confirm the cancellation; the job is marked and will be canceled when it answers, or retry"
			return e
		}
	}
	var ended []Job
	err = pgx.BeginFunc(ctx, s.cfg.Pool, func(tx pgx.Tx) error {
		var err error
		ended, err = s.finishNow(ctx, tx, []completion{{scope: scope, id: id,
			ended: &outcome{state: StateCanceled, code: CodeCanceled, message: "canceled by request"}}})
		return err
	})
	if err != nil {
		return asDomain(err)
	}
	s.afterEnded(ended, s.now())
	s.pokeExecution(id) // its tracker sees the cancel now, not after a long poll wait
	return nil
}
