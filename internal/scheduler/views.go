package scheduler

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/tenant"
	"github.com/poolgate/poolgate/internal/timefmt"
)

// RunningJob is one job holding a slot, as useapi's scheduler view shows it.
type RunningJob struct {
	JobID    string  `json:"jobId"`
	Email    string  `json:"email"`
	Started  string  `json:"started"`
	Elapsed  string  `json:"elapsed"`
	ReplyURL *string `json:"replyUrl,omitempty"`
	ReplyRef *string `json:"replyRef,omitempty"`
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
	now := s.now()
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (RunningJob, error) {
		var (
			j       RunningJob
			started time.Time
		)
		err := r.Scan(&j.JobID, &j.Email, &started, &j.ReplyURL, &j.ReplyRef)
		j.Started, j.Elapsed = timefmt.UTC(started), now.Sub(started).Round(time.Second).String()
		return j, err
	})
	return out, asDomain(err)
}

// Capacity is useapi's scheduler/available view of one account.
type Capacity struct {
	Email     string `json:"email"`
	MaxJobs   int    `json:"maxJobs"`
	Executing int    `json:"executing"`
	Available int    `json:"available"`
}

// Availability sums the pool's capacity.
type Availability struct {
	Executing int        `json:"executing"`
	Available []Capacity `json:"available"`
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
