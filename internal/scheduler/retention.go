package scheduler

import (
	"context"
	"strconv"
	"time"

	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/ids"
)

// DefaultJobRetention is how long a finished job is kept when
// Config.JobRetention does not say: a week, as useapi.net keeps them.
const DefaultJobRetention = 7 * 24 * time.Hour

// IdempotencyWindow is how long an Idempotency-Key is honoured; keys are
// never deleted younger than this.
const IdempotencyWindow = idempotencyWindow

// Both deletes read their batch from the retention index, lock it with SKIP
// LOCKED (two cleaners that do meet share the rows instead of queueing on
// them, and each row is deleted once) and delete it by ctid, a Tid Scan: a
// join back on the primary key lets the planner hash the whole table. A
// locked row cannot move, so its ctid holds until the statement ends.
const (
	jobsDeleteFinished = `
DELETE FROM jobs WHERE ctid = ANY (ARRAY (
	SELECT ctid FROM jobs
	WHERE state IN ('succeeded', 'failed', 'canceled') AND finished_at < $1
	ORDER BY finished_at LIMIT $2
	FOR UPDATE SKIP LOCKED))`

	// jobsDeleteFinishedReturning is jobsDeleteFinished telling what it
	// deleted, for DeleteFinishedJobsWith's hook.
	jobsDeleteFinishedReturning = jobsDeleteFinished + `
RETURNING tenant_id, id, coalesce(result->>'url', '')`

	idempotencyDeleteExpired = `
DELETE FROM job_idempotency WHERE ctid = ANY (ARRAY (
	SELECT ctid FROM job_idempotency
	WHERE created_at < $1
	ORDER BY created_at LIMIT $2
	FOR UPDATE SKIP LOCKED))`
)

// DeleteFinishedJobs deletes up to limit jobs that ended (succeeded, failed
// or canceled) before before, oldest first, and reports how many it
// deleted. Queued and in-flight jobs are never touched, however old.
func DeleteFinishedJobs(ctx context.Context, db dbx.DBTX, before time.Time, limit int) (int64, error) {
	tag, err := db.Exec(ctx, jobsDeleteFinished, before, limit)
	return tag.RowsAffected(), err
}

// DeletedJob is a job retention deleted, as a DeletedJobsHook sees it.
type DeletedJob struct {
	TenantID  int64
	ID        string
	ResultURL string // the result's url, "" if it had none
}

// DeletedJobsHook runs inside the transaction that deleted jobs, so what it
// records about them commits (or rolls back) with the deletion.
type DeletedJobsHook func(ctx context.Context, db dbx.DBTX, jobs []DeletedJob) error

// DeleteFinishedJobsWith is DeleteFinishedJobs that also hands the deleted
// jobs to hook in the same transaction (the result store schedules their
// files for deletion this way).
func DeleteFinishedJobsWith(hook DeletedJobsHook) func(ctx context.Context, db dbx.DBTX, before time.Time, limit int) (int64, error) {
	return func(ctx context.Context, db dbx.DBTX, before time.Time, limit int) (int64, error) {
		rows, err := db.Query(ctx, jobsDeleteFinishedReturning, before, limit)
		if err != nil {
			return 0, err
		}
		var jobs []DeletedJob
		for rows.Next() {
			var j DeletedJob
			if err := rows.Scan(&j.TenantID, &j.ID, &j.ResultURL); err != nil {
				rows.Close()
				return 0, err
			}
			jobs = append(jobs, j)
		}
		if err := rows.Err(); err != nil {
			return 0, err
		}
		if len(jobs) == 0 {
			return 0, nil
		}
		return int64(len(jobs)), hook(ctx, db, jobs)
	}
}

// DeleteExpiredIdempotencyKeys deletes up to limit Idempotency-Keys made
// before before, oldest first. Callers keep before at or below
// now − IdempotencyWindow: a key deleted inside its window would let a
// replayed request create a second job.
func DeleteExpiredIdempotencyKeys(ctx context.Context, db dbx.DBTX, before time.Time, limit int) (int64, error) {
	tag, err := db.Exec(ctx, idempotencyDeleteExpired, before, limit)
	return tag.RowsAffected(), err
}

// expired turns the 404 of a job id older than the retention period into
// 410 job_expired: the job may well have existed and been deleted, and the
// id's own timestamp is the only record of it left. The answer depends on
// the id alone, never on rows of other tenants, so a foreign id still looks
// exactly like one that never existed.
func (s *Scheduler) expired(id string, err error) error {
	if !errs.Is(err, "job_not_found") {
		return err
	}
	made, ok := ids.Time("job", id)
	if !ok || !made.Before(s.now().Add(-s.cfg.JobRetention)) {
		return err
	}
	return errs.New(errs.KindGone, "job_expired",
		"job %q is older than %s; finished jobs are deleted after that", id, retentionText(s.cfg.JobRetention))
}

// retentionText writes whole days as days ("7d"), anything else as Go does.
func retentionText(d time.Duration) string {
	if day := 24 * time.Hour; d >= day && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	return d.String()
}
