package results

import (
	"context"
	"fmt"
	"time"

	"github.com/poolgate/poolgate/internal/dbx"
)

// Results expire with their jobs. When retention deletes a job, the same
// transaction records its key in result_deletions (ScheduleDeletion); a
// later cleanup deletes the objects from the store and only then the rows
// (DeleteScheduled). An object therefore goes only after its job is gone
// for good, and a crash anywhere between leaves a row the next pass
// finishes.

const (
	resultDeletionsInsert = `
INSERT INTO result_deletions (tenant_id, key)
SELECT * FROM unnest($1::bigint[], $2::text[])
ON CONFLICT DO NOTHING`

	// SKIP LOCKED lets two cleaners that meet share the rows.
	resultDeletionsTake = `
SELECT tenant_id, key FROM result_deletions
ORDER BY created_at LIMIT $1
FOR UPDATE SKIP LOCKED`

	resultDeletionsDelete = `
DELETE FROM result_deletions
WHERE (tenant_id, key) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))`
)

// ScheduleDeletion records that the objects at keys (of the jobs of
// tenants, pairwise) are to be deleted. Run it in the transaction that
// deletes the jobs.
func ScheduleDeletion(ctx context.Context, db dbx.DBTX, tenants []int64, keys []string) error {
	if len(tenants) != len(keys) {
		return fmt.Errorf("results: %d tenants for %d keys", len(tenants), len(keys))
	}
	if len(keys) == 0 {
		return nil
	}
	_, err := db.Exec(ctx, resultDeletionsInsert, tenants, keys)
	return err
}

// DeleteScheduled returns a retention delete function that deletes up to
// limit scheduled objects from store, then their rows, in the caller's
// transaction. The rows are due as soon as they exist (their jobs' retention
// has passed already), so before is not consulted. If the transaction rolls
// back after the store deleted the objects, the next pass deletes them
// again, which the store treats as done.
func DeleteScheduled(store Store) func(ctx context.Context, db dbx.DBTX, before time.Time, limit int) (int64, error) {
	return func(ctx context.Context, db dbx.DBTX, _ time.Time, limit int) (int64, error) {
		rows, err := db.Query(ctx, resultDeletionsTake, limit)
		if err != nil {
			return 0, err
		}
		var tenants []int64
		var keys []string
		for rows.Next() {
			var t int64
			var k string
			if err := rows.Scan(&t, &k); err != nil {
				rows.Close()
				return 0, err
			}
			tenants, keys = append(tenants, t), append(keys, k)
		}
		if err := rows.Err(); err != nil || len(keys) == 0 {
			return 0, err
		}
		// A key the store would refuse was never stored; delete the rest.
		valid := keys[:0:0]
		for _, k := range keys {
			if CheckKey(k) == nil {
				valid = append(valid, k)
			}
		}
		if err := store.Delete(ctx, valid...); err != nil {
			return 0, fmt.Errorf("delete expired results: %w", err)
		}
		tag, err := db.Exec(ctx, resultDeletionsDelete, tenants, keys)
		return tag.RowsAffected(), err
	}
}
