package scheduler

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/tenant"
)

// Attempt is one attempt of a job on an account, as attempt hooks see it.
type Attempt struct {
	Scope   tenant.Scope
	JobID   string
	Account string // the account's email
	KeyID   string // the API key that created the job; "" if unknown
	At      time.Time
}

// AttemptHook runs inside the transaction that starts attempts (a
// placement batch) or puts a failed attempt's job back in the queue; an
// error rolls that transaction back.
type AttemptHook func(ctx context.Context, tx pgx.Tx, attempts []Attempt) error

// runAttemptHook hands hook the attempts of es, at now, in tx.
func runAttemptHook(ctx context.Context, tx pgx.Tx, hook AttemptHook, es []*execution, now time.Time) error {
	if hook == nil || len(es) == 0 {
		return nil
	}
	as := make([]Attempt, len(es))
	for i, e := range es {
		as[i] = Attempt{Scope: e.scope, JobID: e.id, Account: e.email, KeyID: deref(e.keyID), At: now}
	}
	return hook(ctx, tx, as)
}

// FinishHooks runs hooks one after the other as one FinishHook.
func FinishHooks(hooks ...FinishHook) FinishHook {
	return func(ctx context.Context, tx pgx.Tx, jobs []Job) error {
		for _, h := range hooks {
			if err := h(ctx, tx, jobs); err != nil {
				return err
			}
		}
		return nil
	}
}
