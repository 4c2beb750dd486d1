package scheduler

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/tenant"
)

// RunningJob is one job holding a slot (useapi's scheduler view).
type RunningJob struct {
	JobID     string
	Email     string
	StartedAt time.Time
	ReplyURL  *string
	ReplyRef  *string
}

const jobsRunning = `
SELECT id, account_email, started_at, reply_url, reply_ref FROM jobs
WHERE tenant_id = $1 AND mode = $2 AND state IN ('dispatching', 'running')
ORDER BY started_at`

// Running lists the pool's jobs that hold a slot now.
func (s *Scheduler) Running(ctx context.Context, scope tenant.Scope) ([]RunningJob, error) {
	rows, err := s.cfg.Pool.Query(ctx, jobsRunning, scope.TenantID, scope.Mode)
	if err != nil {
		return nil, asDomain(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (RunningJob, error) {
		var j RunningJob
		err := r.Scan(&j.JobID, &j.Email, &j.StartedAt, &j.ReplyURL, &j.ReplyRef)
		return j, err
	})
	return out, asDomain(err)
}

// Capacity is one account's slots (useapi's scheduler/available view).
type Capacity struct {
	Email     string
	MaxJobs   int
	Executing int
	Available int
}

// Availability sums the pool's capacity.
type Availability struct {
	Executing int
	Available []Capacity
}

// Available lists the accounts that can take jobs and their free slots.
func (s *Scheduler) Available(ctx context.Context, scope tenant.Scope) (Availability, error) {
	rows, executing, err := accounts.Capacities(ctx, s.cfg.Pool, scope, s.now())
	if err != nil {
		return Availability{}, asDomain(err)
	}
	caps := make([]Capacity, len(rows))
	for i, r := range rows {
		caps[i] = Capacity{Email: r.Email, MaxJobs: r.MaxJobs, Executing: r.Running, Available: max(r.MaxJobs-r.Running, 0)}
	}
	return Availability{Executing: executing, Available: caps}, nil
}
