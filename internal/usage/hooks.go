package usage

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/scheduler"
	"github.com/poolgate/poolgate/internal/tenant"
)

// Hooks are the scheduler hooks that record usage inside the scheduler's
// own transactions: attempts started in a placement batch, attempts sent
// back to the queue, jobs ended in a completer batch.
type Hooks struct{}

// Started records placed attempts (scheduler.Config.OnStarted).
func (Hooks) Started(ctx context.Context, tx pgx.Tx, as []scheduler.Attempt) error {
	return Record(ctx, tx, attemptEvents(as, Started))
}

// Retried records attempts whose job went back to the queue
// (scheduler.Config.OnRetried).
func (Hooks) Retried(ctx context.Context, tx pgx.Tx, as []scheduler.Attempt) error {
	return Record(ctx, tx, attemptEvents(as, Retried))
}

// Finished records ended jobs (part of scheduler.Config.OnFinish).
func (Hooks) Finished(ctx context.Context, tx pgx.Tx, jobs []scheduler.Job) error {
	events := make([]Event, 0, len(jobs))
	for _, j := range jobs {
		if j.FinishedAt == nil {
			continue
		}
		e := Event{Scope: tenant.Scope{TenantID: j.TenantID(), Mode: j.Mode()}, At: *j.FinishedAt,
			Account: deref(j.Email), KeyID: deref(j.KeyID)}
		switch j.State {
		case scheduler.StateSucceeded:
			e.Kind = Succeeded
			if j.StartedAt != nil {
				e.Generation = j.FinishedAt.Sub(*j.StartedAt)
			}
		case scheduler.StateFailed:
			e.Kind = Failed
			if j.Error != nil {
				e.Code = j.Error.Code
			}
		case scheduler.StateCanceled:
			e.Kind = Canceled
		default:
			continue
		}
		events = append(events, e)
	}
	return Record(ctx, tx, events)
}

func attemptEvents(as []scheduler.Attempt, kind Kind) []Event {
	events := make([]Event, len(as))
	for i, a := range as {
		events[i] = Event{Scope: a.Scope, Kind: kind, Account: a.Account, KeyID: a.KeyID, At: a.At}
	}
	return events
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
