package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/ids"
	"github.com/poolgate/poolgate/internal/tenant"
	"github.com/poolgate/poolgate/internal/timefmt"
)

// NewJob is a producer's request for a job.
type NewJob struct {
	Type         string
	Params       json.RawMessage
	Email        string // pin to this account; "" lets the scheduler choose
	ReplyURL     string
	ReplyRef     string
	Priority     int
	MaxAttempts  int           // 0 means DefaultMaxAttempts
	QueueTimeout time.Duration // 0 means the scheduler's default
}

// DefaultMaxAttempts bounds retries when a job does not say.
const DefaultMaxAttempts = 3

// Idempotency identifies a creation request for replay: Key is the
// client's Idempotency-Key, Hash a digest of the request it came with.
type Idempotency struct {
	Key  string
	Hash []byte
}

// idempotencyWindow is how long an Idempotency-Key is remembered.
const idempotencyWindow = 24 * time.Hour

const jobColumns = `tenant_id, id, state, type, params, account_email, pinned_email, attempt,
	max_attempts, priority, created_at, started_at, finished_at, queue_deadline, result,
	error_code, error_message, cancel_requested, reply_url, reply_ref, warning, account_id`

// jobColumnsJ is jobColumns qualified for statements that alias jobs as j.
const jobColumnsJ = `j.tenant_id, j.id, j.state, j.type, j.params, j.account_email, j.pinned_email, j.attempt,
	j.max_attempts, j.priority, j.created_at, j.started_at, j.finished_at, j.queue_deadline, j.result,
	j.error_code, j.error_message, j.cancel_requested, j.reply_url, j.reply_ref, j.warning, j.account_id`

func scanJob(row pgx.Row) (Job, error) {
	var (
		j               Job
		deadline        time.Time
		finished        *time.Time
		errCode, errMsg *string
	)
	err := row.Scan(&j.tenantID, &j.ID, &j.State, &j.Type, &j.Params, &j.Email, &j.PinnedEmail, &j.Attempt,
		&j.MaxAttempts, &j.Priority, &j.createdAt, &j.startedAt, &finished, &deadline, &j.Result,
		&errCode, &errMsg, &j.CancelRequested, &j.ReplyURL, &j.ReplyRef, &j.Warning, &j.accountID)
	if err != nil {
		return Job{}, err
	}
	j.Created, j.CreatedUTC = j.createdAt.UnixMilli(), timefmt.UTC(j.createdAt)
	j.StartedUTC, j.FinishedUTC, j.QueueDeadline = timefmt.UTCPtr(j.startedAt), timefmt.UTCPtr(finished), timefmt.UTC(deadline)
	if errCode != nil {
		j.Error = &JobError{Code: *errCode, Message: deref(errMsg)}
	}
	return j, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

const (
	queuedCount = `SELECT count(*) FROM jobs WHERE tenant_id = $1 AND state = 'queued'`

	accountExists = `SELECT EXISTS (SELECT 1 FROM accounts WHERE tenant_id = $1 AND mode = $2 AND email = $3)`

	anyEnabledAccount = `SELECT EXISTS (SELECT 1 FROM accounts WHERE tenant_id = $1 AND mode = $2 AND enabled)`

	idempotencyClaim = `
INSERT INTO job_idempotency (tenant_id, mode, key, request_hash, job_id, created_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (tenant_id, mode, key) DO UPDATE
	SET request_hash = EXCLUDED.request_hash, job_id = EXCLUDED.job_id, created_at = EXCLUDED.created_at
	WHERE job_idempotency.created_at < $7
RETURNING job_id`

	idempotencyRead = `SELECT request_hash, job_id FROM job_idempotency WHERE tenant_id = $1 AND mode = $2 AND key = $3`

	jobInsert = `
INSERT INTO jobs (tenant_id, id, mode, type, params, state, priority, pinned_email, max_attempts,
                  run_after, queue_deadline, reply_url, reply_ref, warning, created_at)
VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8, $9, $10, $11, $12, $13, $9)
RETURNING ` + jobColumns
)

// Create queues a job. With an Idempotency key seen in the last 24 h it
// returns the original job instead (replayed=true), or a 409 if the key
// came with a different request.
func (s *Scheduler) Create(ctx context.Context, scope tenant.Scope, nj NewJob, idem *Idempotency) (job Job, replayed bool, err error) {
	if nj.MaxAttempts == 0 {
		nj.MaxAttempts = DefaultMaxAttempts
	}
	if nj.QueueTimeout == 0 {
		nj.QueueTimeout = s.cfg.QueueTimeout
	}
	if len(nj.Params) == 0 {
		nj.Params = json.RawMessage("{}")
	}
	now := s.now()
	err = dbx.InTx(ctx, s.cfg.Pool, func(tx pgx.Tx) error {
		id := ids.New("job", now)
		if idem != nil {
			existing, err := claimIdempotency(ctx, tx, scope, idem, id, now)
			if err != nil || existing != "" {
				if err == nil {
					job, err = getJob(ctx, tx, scope, existing)
					replayed = true
				}
				return err
			}
		}
		if err := s.admit(ctx, tx, scope, nj); err != nil {
			return err
		}
		warning, err := capacityWarning(ctx, tx, scope)
		if err != nil {
			return err
		}
		job, err = scanJob(tx.QueryRow(ctx, jobInsert, scope.TenantID, id, scope.Mode, nj.Type, nj.Params,
			nj.Priority, nullIfEmpty(nj.Email), nj.MaxAttempts, now, now.Add(nj.QueueTimeout),
			nullIfEmpty(nj.ReplyURL), nullIfEmpty(nj.ReplyRef), warning))
		if err != nil {
			return fmt.Errorf("insert job: %w", err)
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, '')`, channelWork)
		return err
	})
	if err != nil {
		return Job{}, false, asDomain(err)
	}
	if !replayed {
		s.metrics.createdJob()
	}
	return job, replayed, nil
}

// claimIdempotency records key → id, or returns the job id the key already
// names (same request) or a 409 (different request).
func claimIdempotency(ctx context.Context, tx pgx.Tx, scope tenant.Scope, idem *Idempotency, id string, now time.Time) (string, error) {
	var claimed string
	err := tx.QueryRow(ctx, idempotencyClaim, scope.TenantID, scope.Mode, idem.Key, idem.Hash, id, now,
		now.Add(-idempotencyWindow)).Scan(&claimed)
	if err == nil {
		return "", nil // ours: create the job
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return "", err
	}
	var hash []byte
	if err := tx.QueryRow(ctx, idempotencyRead, scope.TenantID, scope.Mode, idem.Key).Scan(&hash, &claimed); err != nil {
		return "", err
	}
	if !bytes.Equal(hash, idem.Hash) {
		return "", errs.Conflict("idempotency_key_reused",
			"this Idempotency-Key was used with a different request in the last 24 hours")
	}
	return claimed, nil
}

// admit refuses a job the tenant's queue cannot take.
func (s *Scheduler) admit(ctx context.Context, tx pgx.Tx, scope tenant.Scope, nj NewJob) error {
	var queued int
	if err := tx.QueryRow(ctx, queuedCount, scope.TenantID).Scan(&queued); err != nil {
		return err
	}
	if queued >= s.cfg.MaxQueued {
		return &errs.Error{Kind: errs.KindRateLimited, Code: "queue_full", RetryAfter: 30 * time.Second,
			Message: fmt.Sprintf("the queue holds %d jobs, its limit; retry later", queued)}
	}
	if nj.Email == "" {
		return nil
	}
	var exists bool
	if err := tx.QueryRow(ctx, accountExists, scope.TenantID, scope.Mode, nj.Email).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		return errs.Invalid("unknown_account", "no account %q to pin the job to", nj.Email)
	}
	return nil
}

// capacityWarning tells a producer its job will wait because nothing can
// run it yet: not an error, since an operator may add an account.
func capacityWarning(ctx context.Context, tx pgx.Tx, scope tenant.Scope) (*string, error) {
	var any bool
	if err := tx.QueryRow(ctx, anyEnabledAccount, scope.TenantID, scope.Mode).Scan(&any); err != nil {
		return nil, err
	}
	if any {
		return nil, nil
	}
	w := "no enabled account in this pool: the job waits until one is registered or its queueTimeout passes"
	return &w, nil
}

const jobByID = `SELECT ` + jobColumns + ` FROM jobs WHERE tenant_id = $1 AND mode = $2 AND id = $3`

func getJob(ctx context.Context, db dbx.DBTX, scope tenant.Scope, id string) (Job, error) {
	j, err := scanJob(db.QueryRow(ctx, jobByID, scope.TenantID, scope.Mode, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Job{}, errs.NotFound("job_not_found", "no job %q", id)
	}
	return j, err
}

// Get returns one job.
func (s *Scheduler) Get(ctx context.Context, scope tenant.Scope, id string) (Job, error) {
	j, err := getJob(ctx, s.cfg.Pool, scope, id)
	return j, asDomain(err)
}

// Wait returns the job once it is terminal or when ctx ends, whichever
// comes first; it never fails because ctx ended.
func (s *Scheduler) Wait(ctx context.Context, scope tenant.Scope, id string) (Job, error) {
	done, stop := s.waiters.subscribe(id)
	defer stop()
	for {
		j, err := s.Get(context.WithoutCancel(ctx), scope, id)
		if err != nil || j.State.Terminal() {
			return j, err
		}
		select {
		case <-ctx.Done():
			return j, nil
		case <-done:
		case <-time.After(5 * time.Second): // in case a notification was lost
		}
	}
}

// ListFilter selects jobs, newest first.
type ListFilter struct {
	State  string
	Limit  int
	Cursor string // id of the last job of the previous page
}

const jobList = `SELECT ` + jobColumns + ` FROM jobs
WHERE tenant_id = $1 AND mode = $2 AND ($3 = '' OR state = $3) AND ($4 = '' OR id < $4)
ORDER BY id DESC LIMIT $5`

// List returns a page of jobs and the cursor of the next page ("" at the end).
func (s *Scheduler) List(ctx context.Context, scope tenant.Scope, f ListFilter) ([]Job, string, error) {
	rows, err := s.cfg.Pool.Query(ctx, jobList, scope.TenantID, scope.Mode, f.State, f.Cursor, f.Limit+1)
	if err != nil {
		return nil, "", asDomain(err)
	}
	jobs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Job, error) { return scanJob(r) })
	if err != nil {
		return nil, "", asDomain(err)
	}
	next := ""
	if len(jobs) > f.Limit {
		jobs = jobs[:f.Limit]
		next = jobs[len(jobs)-1].ID
	}
	return jobs, next, nil
}

// asDomain passes domain errors through, makes a database that cannot
// answer now a 503 and anything else a 500 (dbx.Classify).
func asDomain(err error) error { return dbx.Classify(err) }
