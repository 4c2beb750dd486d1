package scheduler

import (
	"bytes"
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/ids"
	"github.com/poolgate/poolgate/internal/tenant"
)

// MaxBatch is the most jobs one CreateMany call takes.
const MaxBatch = 1000

// BatchItem is one job of a CreateMany call, with its own optional
// idempotency key.
type BatchItem struct {
	Job         NewJob
	Idempotency *Idempotency
}

// BatchResult is what became of one BatchItem: a job (Replayed if its
// idempotency key named an earlier one) or Err.
type BatchResult struct {
	Job      Job
	Replayed bool
	Err      error
}

const (
	// idempotencyClaimMany claims the keys that are free (or older than
	// the window) and returns those it claimed.
	idempotencyClaimMany = `
INSERT INTO job_idempotency (tenant_id, mode, key, request_hash, job_id, created_at)
SELECT $1, $2, x.key, x.hash, x.job_id, $3
FROM unnest($4::text[], $5::bytea[], $6::text[]) AS x (key, hash, job_id)
ON CONFLICT (tenant_id, mode, key) DO UPDATE
	SET request_hash = EXCLUDED.request_hash, job_id = EXCLUDED.job_id, created_at = EXCLUDED.created_at
	WHERE job_idempotency.created_at < $7
RETURNING key`

	idempotencyReadMany = `
SELECT key, request_hash, job_id FROM job_idempotency
WHERE tenant_id = $1 AND mode = $2 AND key = ANY($3)`

	idempotencyRelease = `
DELETE FROM job_idempotency WHERE tenant_id = $1 AND mode = $2 AND key = ANY($3) AND job_id = ANY($4)`

	// jobsByIDs joins on the whole key, as jobDispatch does and for the
	// same reason.
	jobsByIDs = `
SELECT ` + jobColumnsJ + ` FROM unnest($1::bigint[], $3::text[]) AS x (tenant_id, id)
JOIN jobs j ON j.tenant_id = x.tenant_id AND j.id = x.id
WHERE j.mode = $2`
)

// CreateMany queues up to MaxBatch jobs in one transaction. Each item
// succeeds or fails on its own: an invalid pin, a reused idempotency key or
// a full queue fails that item only. err is a failure of the whole call.
func (s *Scheduler) CreateMany(ctx context.Context, scope tenant.Scope, items []BatchItem) ([]BatchResult, error) {
	if len(items) > MaxBatch {
		return nil, errs.Invalid("batch_too_large", "a batch holds at most %d jobs", MaxBatch)
	}
	results := make([]BatchResult, len(items))
	var pins []string
	for i := range items {
		s.completeNewJob(&items[i].Job)
		if e := items[i].Job.Email; e != "" {
			pins = append(pins, e)
		}
	}
	known, err := accounts.ExistingEmails(ctx, s.cfg.Pool, scope, pins)
	if err != nil {
		return nil, asDomain(err)
	}
	for i, it := range items {
		results[i].Err = pinError(it.Job, known)
	}
	markDuplicateKeys(items, results)
	now := s.now()
	created := 0
	err = dbx.InTx(ctx, s.cfg.Pool, func(tx pgx.Tx) error {
		var err error
		created, err = s.createManyTx(ctx, tx, scope, items, results, now)
		return err
	})
	if err != nil {
		return nil, asDomain(err)
	}
	s.created(created)
	return results, nil
}

// markDuplicateKeys fails items that repeat an idempotency key used earlier
// in the same batch.
func markDuplicateKeys(items []BatchItem, results []BatchResult) {
	seen := map[string]bool{}
	for i, it := range items {
		if it.Idempotency == nil || results[i].Err != nil {
			continue
		}
		if seen[it.Idempotency.Key] {
			results[i].Err = errs.Invalid("duplicate_idempotency_key", "idempotencyKey %q appears twice in this batch", it.Idempotency.Key)
			continue
		}
		seen[it.Idempotency.Key] = true
	}
}

// createManyTx claims the items' idempotency keys, answers replays, and
// inserts the rest; it fills results and returns how many jobs it created.
func (s *Scheduler) createManyTx(ctx context.Context, tx pgx.Tx, scope tenant.Scope, items []BatchItem, results []BatchResult, now time.Time) (int, error) {
	jobIDs := make([]string, len(items))
	for i := range items {
		jobIDs[i] = ids.New("job", now)
		if results[i].Err == nil {
			results[i] = BatchResult{}
		}
	}
	claimed, err := s.claimMany(ctx, tx, scope, items, results, jobIDs, now)
	if err != nil {
		return 0, err
	}
	var (
		idx []int
		njs []NewJob
		use []string
	)
	for i, it := range items {
		if results[i].Err != nil || results[i].Replayed {
			continue
		}
		if it.Idempotency != nil && !claimed[it.Idempotency.Key] {
			continue
		}
		idx, njs, use = append(idx, i), append(njs, it.Job), append(use, jobIDs[i])
	}
	if len(idx) == 0 {
		return 0, nil
	}
	jobs, refused, err := s.insertJobs(ctx, tx, scope, njs, use, now)
	if err != nil {
		return 0, err
	}
	var unclaimKeys, unclaimIDs []string
	created := 0
	for k, i := range idx {
		if refused[k] != nil {
			results[i].Err = refused[k]
			if key := items[i].Idempotency; key != nil {
				unclaimKeys, unclaimIDs = append(unclaimKeys, key.Key), append(unclaimIDs, use[k])
			}
			continue
		}
		results[i].Job = jobs[k]
		created++
	}
	if len(unclaimKeys) > 0 { // a refused job must not hold its key
		if _, err := tx.Exec(ctx, idempotencyRelease, scope.TenantID, scope.Mode, unclaimKeys, unclaimIDs); err != nil {
			return 0, err
		}
	}
	return created, nil
}

// claimMany claims the batch's idempotency keys. Keys already held answer
// with their job (same request) or a 409 (different request).
func (s *Scheduler) claimMany(ctx context.Context, tx pgx.Tx, scope tenant.Scope, items []BatchItem, results []BatchResult, jobIDs []string, now time.Time) (map[string]bool, error) {
	var keys, idv []string
	var hashes [][]byte
	byKey := map[string]int{}
	for i, it := range items {
		if it.Idempotency == nil || results[i].Err != nil {
			continue
		}
		keys, hashes, idv = append(keys, it.Idempotency.Key), append(hashes, it.Idempotency.Hash), append(idv, jobIDs[i])
		byKey[it.Idempotency.Key] = i
	}
	claimed := map[string]bool{}
	if len(keys) == 0 {
		return claimed, nil
	}
	rows, err := tx.Query(ctx, idempotencyClaimMany, scope.TenantID, scope.Mode, now, keys, hashes, idv, now.Add(-idempotencyWindow))
	if err != nil {
		return nil, err
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	for _, k := range got {
		claimed[k] = true
	}
	var held []string
	for _, k := range keys {
		if !claimed[k] {
			held = append(held, k)
		}
	}
	if len(held) == 0 {
		return claimed, nil
	}
	rows, err = tx.Query(ctx, idempotencyReadMany, scope.TenantID, scope.Mode, held)
	if err != nil {
		return nil, err
	}
	replay := map[string]int{} // job id → item
	var (
		key, jobID string
		hash       []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&key, &hash, &jobID}, func() error {
		i := byKey[key]
		if !bytes.Equal(hash, items[i].Idempotency.Hash) {
			results[i].Err = errs.Conflict("idempotency_key_reused",
				"this Idempotency-Key was used with a different request in the last 24 hours")
			return nil
		}
		replay[jobID] = i
		return nil
	})
	if err != nil || len(replay) == 0 {
		return claimed, err
	}
	var (
		tenants   = make([]int64, 0, len(replay))
		replayIDs = make([]string, 0, len(replay))
	)
	for id := range replay {
		tenants, replayIDs = append(tenants, scope.TenantID), append(replayIDs, id)
	}
	rows, err = tx.Query(ctx, jobsByIDs, tenants, scope.Mode, replayIDs)
	if err != nil {
		return nil, err
	}
	jobs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Job, error) { return scanJob(r) })
	if err != nil {
		return nil, err
	}
	for _, j := range jobs {
		i := replay[j.ID]
		results[i].Job, results[i].Replayed = j, true
		delete(replay, j.ID)
	}
	for _, i := range replay { // the key outlived its job (retention)
		results[i].Err = errs.Conflict("idempotency_key_reused",
			"this Idempotency-Key named a job that no longer exists; use a new key")
	}
	return claimed, nil
}
