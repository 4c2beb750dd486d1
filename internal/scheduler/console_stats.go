package scheduler

import (
	"context"
	"fmt"
	"time"

	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/tenant"
)

// This file holds read-only views for the operator console. It depends on
// nothing but the jobs table, so the scheduler's own code can change freely
// around it.

// Minute is the job flow of one minute of a tenant's pool.
type Minute struct {
	Start    time.Time // the minute's first instant
	Started  int       // jobs that went from queued to dispatching
	Finished int       // jobs that ended (succeeded, failed or canceled)
	Queued   int       // queue depth at the minute's end
}

// Stats reads the console's job statistics.
type Stats struct{ db dbx.DBTX }

// NewStats returns Stats reading from db.
func NewStats(db dbx.DBTX) *Stats { return &Stats{db: db} }

const jobsQueued = `SELECT count(*) FROM jobs WHERE tenant_id = $1 AND mode = $2 AND state = 'queued'`

// QueueDepth is how many of the pool's jobs wait for a slot now.
func (s *Stats) QueueDepth(ctx context.Context, scope tenant.Scope) (int, error) {
	var n int
	if err := s.db.QueryRow(ctx, jobsQueued, scope.TenantID, scope.Mode).Scan(&n); err != nil {
		return 0, errs.Unavailable(fmt.Errorf("count queued jobs: %w", err))
	}
	return n, nil
}

// jobsEventsPerMinute counts, per minute since $3, the jobs created (c),
// started (s), finished (f) and finished without ever starting (x), in one
// pass over the jobs that could have any of those events in the window.
const jobsEventsPerMinute = `
SELECT date_trunc('minute', e.t), e.kind, count(*)
FROM jobs j, LATERAL (VALUES
	(j.created_at, 'c'), (j.started_at, 's'), (j.finished_at, 'f'),
	(CASE WHEN j.started_at IS NULL THEN j.finished_at END, 'x')) AS e (t, kind)
WHERE j.tenant_id = $1 AND j.mode = $2
	AND (j.created_at >= $3 OR j.finished_at IS NULL OR j.finished_at >= $3)
	AND e.t >= $3 AND e.t <= $4
GROUP BY 1, 2`

// Activity returns the last n minutes up to now, oldest first. Queue depth
// is reconstructed backwards from today's depth and the jobs' timestamps
// (a job leaves the queue when it starts, or ends without starting), so it
// needs no extra bookkeeping on the hot path; a retried job counts as
// queued again only from the minute its retry starts.
func (s *Stats) Activity(ctx context.Context, scope tenant.Scope, now time.Time, n int) ([]Minute, error) {
	depth, err := s.QueueDepth(ctx, scope)
	if err != nil {
		return nil, err
	}
	last := now.UTC().Truncate(time.Minute)
	first := last.Add(-time.Duration(n-1) * time.Minute)
	rows, err := s.db.Query(ctx, jobsEventsPerMinute, scope.TenantID, scope.Mode, first, now)
	if err != nil {
		return nil, errs.Unavailable(fmt.Errorf("job activity: %w", err))
	}
	defer rows.Close()
	out := make([]Minute, n)
	created := make([]int, n)
	leftQueue := make([]int, n) // started, or finished without starting
	for i := range out {
		out[i].Start = first.Add(time.Duration(i) * time.Minute)
	}
	for rows.Next() {
		var (
			m     time.Time
			kind  string
			count int
		)
		if err := rows.Scan(&m, &kind, &count); err != nil {
			return nil, errs.Unavailable(err)
		}
		i := int(m.Sub(first) / time.Minute)
		if i < 0 || i >= n {
			continue
		}
		switch kind {
		case "c":
			created[i] += count
		case "s":
			out[i].Started += count
			leftQueue[i] += count
		case "f":
			out[i].Finished += count
		case "x":
			leftQueue[i] += count
		}
	}
	if err := rows.Err(); err != nil {
		return nil, errs.Unavailable(err)
	}
	for i := n - 1; i >= 0; i-- {
		out[i].Queued = max(depth, 0)
		depth += leftQueue[i] - created[i]
	}
	return out, nil
}
