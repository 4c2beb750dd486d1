package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/ids"
	"github.com/poolgate/poolgate/internal/tenant"
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
	KeyID        string        // the API key that creates the job ("" none), for usage
	// Provider restricts the job to accounts of one provider; "" lets it
	// run on any account.
	Provider string
	// ResubmitUnknown lets an attempt whose outcome is unknown (see
	// CodeOutcomeUnknown) be submitted again, at the risk of running twice;
	// nil follows the tenant's default (Defaults).
	ResubmitUnknown *bool
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
	error_code, error_message, cancel_requested, reply_url, reply_ref, warning, account_id, mode, key_id,
	provider, resubmit_unknown`

// jobColumnsJ is jobColumns qualified for statements that alias jobs as j.
const jobColumnsJ = `j.tenant_id, j.id, j.state, j.type, j.params, j.account_email, j.pinned_email, j.attempt,
	j.max_attempts, j.priority, j.created_at, j.started_at, j.finished_at, j.queue_deadline, j.result,
	j.error_code, j.error_message, j.cancel_requested, j.reply_url, j.reply_ref, j.warning, j.account_id, j.mode, j.key_id,
	j.provider, j.resubmit_unknown`

func scanJob(row pgx.Row) (Job, error) {
	var (
		j               Job
		errCode, errMsg *string
	)
	err := row.Scan(&j.tenantID, &j.ID, &j.State, &j.Type, &j.Params, &j.Email, &j.PinnedEmail, &j.Attempt,
		&j.MaxAttempts, &j.Priority, &j.CreatedAt, &j.StartedAt, &j.FinishedAt, &j.QueueDeadline, &j.Result,
		&errCode, &errMsg, &j.CancelRequested, &j.ReplyURL, &j.ReplyRef, &j.Warning, &j.accountID, &j.mode, &j.KeyID,
		&j.Provider, &j.ResubmitUnknown)
	if err != nil {
		return Job{}, err
	}
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
	idempotencyClaim = `
INSERT INTO job_idempotency (tenant_id, mode, key, request_hash, job_id, created_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (tenant_id, mode, key) DO UPDATE
	SET request_hash = EXCLUDED.request_hash, job_id = EXCLUDED.job_id, created_at = EXCLUDED.created_at
	WHERE job_idempotency.created_at < $7
RETURNING job_id`

	idempotencyRead = `SELECT request_hash, job_id FROM job_idempotency WHERE tenant_id = $1 AND mode = $2 AND key = $3`

	// jobsInsert inserts a batch of one pool's jobs in one statement.
	jobsInsert = `
INSERT INTO jobs (tenant_id, mode, id, type, params, state, priority, pinned_email, max_attempts,
                  run_after, queue_deadline, reply_url, reply_ref, warning, created_at, key_id, provider, resubmit_unknown)
SELECT $1, $2, x.id, x.type, x.params, 'queued', x.priority, x.pinned_email, x.max_attempts,
	$3, x.queue_deadline, x.reply_url, x.reply_ref, $4, $3, x.key_id, x.provider,
	coalesce(x.resubmit_unknown, (SELECT t.resubmit_unknown FROM tenants t WHERE t.id = $1))
FROM unnest($5::text[], $6::text[], $7::jsonb[], $8::integer[], $9::text[], $10::integer[],
	$11::timestamptz[], $12::text[], $13::text[], $14::text[], $15::text[], $16::boolean[])
	AS x (id, type, params, priority, pinned_email, max_attempts, queue_deadline, reply_url, reply_ref, key_id,
		provider, resubmit_unknown)
RETURNING ` + jobColumns
)

// Create queues a job. With an Idempotency key seen in the last 24 h it
// returns the original job instead (replayed=true), or a 409 if the key
// came with a different request. Creations without a key are
// group-committed: concurrent calls share one transaction.
func (s *Scheduler) Create(ctx context.Context, scope tenant.Scope, nj NewJob, idem *Idempotency) (job Job, replayed bool, err error) {
	s.completeNewJob(&nj)
	if err := s.checkPin(ctx, scope, nj); err != nil {
		return Job{}, false, err
	}
	if idem == nil {
		job, err = s.insert.create(ctx, scope, nj)
		return job, false, err
	}
	now := s.now()
	err = dbx.InTx(ctx, s.cfg.Pool, func(tx pgx.Tx) error {
		id := ids.New("job", now)
		existing, err := claimIdempotency(ctx, tx, scope, idem, id, now)
		if err != nil || existing != "" {
			if err == nil {
				job, err = getJob(ctx, tx, scope, existing)
				replayed = true
			}
			return err
		}
		jobs, refused, err := s.insertJobs(ctx, tx, scope, []NewJob{nj}, []string{id}, now)
		if err != nil {
			return err
		}
		job = jobs[0]
		return refused[0]
	})
	if err != nil {
		return Job{}, false, asDomain(err)
	}
	if !replayed {
		s.created(1)
	}
	return job, replayed, nil
}

// completeNewJob fills in the defaults of a job request.
func (s *Scheduler) completeNewJob(nj *NewJob) {
	if nj.MaxAttempts == 0 {
		nj.MaxAttempts = DefaultMaxAttempts
	}
	if nj.QueueTimeout == 0 {
		nj.QueueTimeout = s.cfg.QueueTimeout
	}
	if len(nj.Params) == 0 {
		nj.Params = json.RawMessage("{}")
	}
}

// checkPin refuses a job pinned to an account that does not exist.
func (s *Scheduler) checkPin(ctx context.Context, scope tenant.Scope, nj NewJob) error {
	if nj.Email == "" {
		return nil
	}
	known, err := accounts.ExistingEmails(ctx, s.cfg.Pool, scope, []string{nj.Email})
	if err != nil {
		return asDomain(err)
	}
	return pinError(nj, known)
}

// pinError says why nj cannot be pinned where it asks, given the
// registered accounts among its pin and their providers; nil if it can.
func pinError(nj NewJob, known map[string]string) error {
	if nj.Email == "" {
		return nil
	}
	prov, ok := known[nj.Email]
	switch {
	case !ok:
		return errs.Invalid("unknown_account", "no account %q to pin the job to", nj.Email)
	case !accounts.Fits(nullIfEmpty(nj.Provider), prov):
		return errs.Invalid("provider_mismatch", "account %q belongs to provider %q, not %q", nj.Email, prov, nj.Provider)
	}
	return nil
}

// created is what follows committed creations: metrics and wake-ups.
func (s *Scheduler) created(n int) {
	for range n {
		s.metrics.createdJob()
	}
	s.Wake()
	s.signals.workQueued()
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

// insertJobs queues one pool's jobs (with the given ids) in tx, as far as
// the pool's queue limit allows: jobs[i] is the job made of njs[i], or
// refused[i] says why it was not. err is a failure of the whole batch.
func (s *Scheduler) insertJobs(ctx context.Context, tx pgx.Tx, scope tenant.Scope, njs []NewJob, jobIDs []string, now time.Time) (jobs []Job, refused []error, err error) {
	depth, err := queueDepth(ctx, tx, scope)
	if err != nil {
		return nil, nil, err
	}
	room := max(s.cfg.MaxQueued-depth, 0)
	jobs, refused = make([]Job, len(njs)), make([]error, len(njs))
	admitted := make([]int, 0, min(room, len(njs)))
	for i := range njs {
		if len(admitted) == room {
			refused[i] = &errs.Error{Kind: errs.KindRateLimited, Code: "queue_full", RetryAfter: 30 * time.Second,
				Message: fmt.Sprintf("the queue holds %d jobs, its limit; retry later", s.cfg.MaxQueued)}
			continue
		}
		admitted = append(admitted, i)
	}
	if len(admitted) == 0 {
		return jobs, refused, nil
	}
	warning, err := capacityWarning(ctx, tx, scope)
	if err != nil {
		return nil, nil, err
	}
	n := len(admitted)
	var (
		idv, types         = make([]string, n), make([]string, n)
		params             = make([]json.RawMessage, n)
		prios, maxAttempts = make([]int32, n), make([]int32, n)
		pinned, urls, refs = make([]*string, n), make([]*string, n), make([]*string, n)
		keyIDs             = make([]*string, n)
		provs              = make([]*string, n)
		resubmit           = make([]*bool, n)
		deadlines          = make([]time.Time, n)
		byID               = make(map[string]int, n)
	)
	for k, i := range admitted {
		nj := njs[i]
		idv[k], types[k], params[k] = jobIDs[i], nj.Type, nj.Params
		prios[k], maxAttempts[k] = int32(nj.Priority), int32(nj.MaxAttempts)
		pinned[k], urls[k], refs[k] = nullIfEmpty(nj.Email), nullIfEmpty(nj.ReplyURL), nullIfEmpty(nj.ReplyRef)
		keyIDs[k] = nullIfEmpty(nj.KeyID)
		deadlines[k] = now.Add(nj.QueueTimeout)
		provs[k], resubmit[k] = nullIfEmpty(nj.Provider), nj.ResubmitUnknown
		byID[jobIDs[i]] = i
	}
	rows, err := tx.Query(ctx, jobsInsert, scope.TenantID, scope.Mode, now, warning,
		idv, types, params, prios, pinned, maxAttempts, deadlines, urls, refs, keyIDs, provs, resubmit)
	if err != nil {
		return nil, nil, fmt.Errorf("insert jobs: %w", err)
	}
	inserted, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Job, error) { return scanJob(r) })
	if err != nil {
		return nil, nil, fmt.Errorf("insert jobs: %w", err)
	}
	for _, j := range inserted {
		jobs[byID[j.ID]] = j
	}
	return jobs, refused, queueDepthAdd(ctx, tx, scope, sideIn, len(inserted))
}

// capacityWarning tells a producer its job will wait because nothing can
// run it yet: not an error, since an operator may add an account.
func capacityWarning(ctx context.Context, tx pgx.Tx, scope tenant.Scope) (*string, error) {
	any, err := accounts.AnyEnabled(ctx, tx, scope)
	if err != nil || any {
		return nil, err
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
	return j, asDomain(s.expired(id, err))
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
	// MaxBytes, if set, ends a page early once its params and results (as
	// stored) pass this many bytes, so that a page of big jobs is never
	// read whole from Postgres; the page holds at least one job.
	MaxBytes int
}

// jobList reads a page newest first. page_bytes is the running size of
// the rows' params and results, so the outer query stops at the byte
// budget without sending the rest; pg_column_size reads a stored value's
// size without fetching it from TOAST.
const jobList = `
SELECT ` + jobColumns + `, total FROM (
	SELECT *, sum(pg_column_size(params) + coalesce(pg_column_size(result), 0)) OVER w AS page_bytes,
		pg_column_size(params) + coalesce(pg_column_size(result), 0) AS row_bytes,
		count(*) OVER () AS total
	FROM (
		SELECT * FROM jobs
		WHERE tenant_id = $1 AND mode = $2 AND ($3 = '' OR state = $3) AND ($4 = '' OR id < $4)
		ORDER BY id DESC LIMIT $5
	) newest
	WINDOW w AS (ORDER BY id DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
) sized
WHERE $6 = 0 OR page_bytes <= $6 OR page_bytes = row_bytes
ORDER BY id DESC`

// List returns a page of jobs and the cursor of the next page ("" at the end).
func (s *Scheduler) List(ctx context.Context, scope tenant.Scope, f ListFilter) ([]Job, string, error) {
	rows, err := s.cfg.Pool.Query(ctx, jobList, scope.TenantID, scope.Mode, f.State, f.Cursor, f.Limit+1, f.MaxBytes)
	if err != nil {
		return nil, "", asDomain(err)
	}
	var total int // rows the query found before the byte budget cut
	jobs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Job, error) {
		return scanJob(withTail{r, &total})
	})
	if err != nil {
		return nil, "", asDomain(err)
	}
	if len(jobs) > f.Limit {
		jobs = jobs[:f.Limit]
	}
	next := ""
	if len(jobs) > 0 && total > len(jobs) {
		next = jobs[len(jobs)-1].ID
	}
	return jobs, next, nil
}

// withTail scans a row of jobColumns followed by one more column.
type withTail struct {
	row  pgx.Row
	tail any
}

func (w withTail) Scan(dest ...any) error {
	return w.row.Scan(append(dest, w.tail)...)
}

// asDomain passes domain errors through, makes a database that cannot
// answer now a 503 and anything else a 500 (dbx.Classify).
func asDomain(err error) error { return dbx.Classify(err) }

// jobsAdopt hands jobs still running under this email on a deleted account
// row to the new row.
const jobsAdopt = `
UPDATE jobs SET account_id = $3
WHERE tenant_id = $1 AND mode = $2 AND account_email = $4
	AND state IN ('dispatching', 'running') AND account_id <> $3`

// AdoptJobs is an accounts.RegisterHook: jobs still running under the
// email on a deleted account row move to the registered row, with their
// slots, since the upstream account is the same: its maxJobs must count
// them, and their ends must free these slots.
func AdoptJobs(ctx context.Context, tx pgx.Tx, scope tenant.Scope, id int64, email string, _ time.Time) error {
	tag, err := tx.Exec(ctx, jobsAdopt, scope.TenantID, scope.Mode, id, email)
	if err != nil {
		return err
	}
	return accounts.AddRunning(ctx, tx, scope, id, int(tag.RowsAffected()))
}
