// Package usage counts what each account and each API key did: jobs
// started, succeeded, failed (by error code), canceled and retried, and the
// generation times of succeeded jobs, in hourly buckets. It owns the
// usage_hourly and usage_pending tables.
//
// Nothing here adds a transaction to the hot path: the scheduler's
// placement, completion and retry paths hand their events to Record inside
// the transactions they already commit (hooks wired in cmd/server), and
// Record writes the batch's folded counts ahead as one usage_pending row
// per pool. A Roller on every replica folds pending rows into usage_hourly
// about once a second; readers add both, so figures are exact at once.
package usage

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/tenant"
)

// Kind is what happened to a job.
type Kind int

// Kinds of events.
const (
	Started   Kind = iota // an attempt was placed on an account
	Retried               // an attempt failed and the job went back to the queue
	Succeeded             // the job ended succeeded
	Failed                // the job ended failed (Code says why)
	Canceled              // the job ended canceled
)

// Event is one thing that happened to one job.
type Event struct {
	Scope   tenant.Scope
	Kind    Kind
	Account string    // the account's email; "" if the job never ran on one
	KeyID   string    // the key that created the job; "" if unknown
	At      time.Time // when it happened: picks the hour bucket
	Code    string    // Failed: the job's error code
	// Generation is how long a succeeded job's last attempt took, from
	// placement to its end.
	Generation time.Duration
}

// bucket is what a batch adds to one (hour, account, key) bucket, as it
// is written ahead in usage_pending.rows.
type bucket struct {
	Hour    time.Time `json:"hour"`
	Account string    `json:"account_email"`
	KeyID   string    `json:"key_id"`
	Counts
}

// row is a bucket of one pool.
type row struct {
	tenantID int64
	mode     tenant.Mode
	bucket
}

type rowKey struct {
	tenantID int64
	mode     tenant.Mode
	hour     time.Time
	account  string
	keyID    string
}

// folder adds up buckets by key.
type folder struct {
	byKey map[rowKey]*row
	rows  []*row
}

// at is the bucket of (pool, hour, account, key), made empty on first use.
func (f *folder) at(tenantID int64, mode tenant.Mode, hour time.Time, account, keyID string) *row {
	if f.byKey == nil {
		f.byKey = map[rowKey]*row{}
	}
	hour = hour.UTC().Truncate(time.Hour)
	k := rowKey{tenantID, mode, hour, account, keyID}
	r := f.byKey[k]
	if r == nil {
		r = &row{tenantID: tenantID, mode: mode, bucket: bucket{Hour: hour, Account: account, KeyID: keyID}}
		f.byKey[k] = r
		f.rows = append(f.rows, r)
	}
	return r
}

// sorted is the buckets in key order, so that concurrent writers lock
// rows in the same order.
func (f *folder) sorted() []*row {
	slices.SortFunc(f.rows, func(a, b *row) int {
		return cmp.Or(cmp.Compare(a.tenantID, b.tenantID), cmp.Compare(a.mode, b.mode), a.Hour.Compare(b.Hour),
			cmp.Compare(a.Account, b.Account), cmp.Compare(a.KeyID, b.KeyID))
	})
	return f.rows
}

// fold aggregates events into one row per bucket, in key order.
func fold(events []Event) []*row {
	var f folder
	for _, e := range events {
		r := f.at(e.Scope.TenantID, e.Scope.Mode, e.At, e.Account, e.KeyID)
		switch e.Kind {
		case Started:
			r.Started++
		case Retried:
			r.Retried++
		case Succeeded:
			r.Succeeded++
			r.Generation.Add(e.Generation)
		case Failed:
			r.Failed++
			if r.FailedBy == nil {
				r.FailedBy = map[string]int64{}
			}
			r.FailedBy[e.Code]++
		case Canceled:
			r.Canceled++
		}
	}
	return f.sorted()
}

// pendingAdd writes a batch ahead: one row per pool.
const pendingAdd = `
INSERT INTO usage_pending (tenant_id, mode, rows)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::jsonb[])`

// Record writes events ahead with one statement, in the caller's
// transaction: their counts, folded by bucket, as one usage_pending row
// per pool. Readers count them at once; a Roller later moves them into
// usage_hourly.
func Record(ctx context.Context, db dbx.DBTX, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	rows := fold(events) // in pool order
	var (
		tenants []int64
		modes   []string
		docs    []json.RawMessage
	)
	for lo := 0; lo < len(rows); {
		hi := lo
		buckets := []bucket{}
		for ; hi < len(rows) && rows[hi].tenantID == rows[lo].tenantID && rows[hi].mode == rows[lo].mode; hi++ {
			buckets = append(buckets, rows[hi].bucket)
		}
		doc, err := json.Marshal(buckets)
		if err != nil {
			return err
		}
		tenants, modes, docs = append(tenants, rows[lo].tenantID), append(modes, string(rows[lo].mode)), append(docs, doc)
		lo = hi
	}
	_, err := db.Exec(ctx, pendingAdd, tenants, modes, docs)
	return err
}

// pendingTake deletes and returns the oldest pending rows no other
// roll-up holds.
const pendingTake = `
DELETE FROM usage_pending WHERE id = ANY (ARRAY (
	SELECT id FROM usage_pending ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED))
RETURNING tenant_id, mode, rows`

// Rollup moves up to limit pending rows into usage_hourly as writer, in one
// transaction, and reports how many it moved. Concurrent roll-ups take
// disjoint rows; give each its own writer, so that they never wait on
// each other's row locks.
func Rollup(ctx context.Context, db dbx.Beginner, writer string, limit int) (int, error) {
	var n int
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		n = 0
		rows, err := tx.Query(ctx, pendingTake, limit)
		if err != nil {
			return err
		}
		var (
			f        folder
			tenantID int64
			mode     string
			doc      []byte
		)
		_, err = pgx.ForEachRow(rows, []any{&tenantID, &mode, &doc}, func() error {
			n++
			var buckets []bucket
			if err := json.Unmarshal(doc, &buckets); err != nil {
				return fmt.Errorf("usage: a pending row of tenant %d: %w", tenantID, err)
			}
			for _, b := range buckets {
				f.at(tenantID, tenant.Mode(mode), b.Hour, b.Account, b.KeyID).add(b.Counts)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return upsert(ctx, tx, writer, f.sorted())
	})
	return n, err
}

// usageAdd adds a batch of rows to their buckets. The histograms come as
// array literals (unnest cannot take an array of arrays of varying
// length); an empty one leaves the stored histogram as it is.
const usageAdd = `
INSERT INTO usage_hourly AS u (tenant_id, mode, hour, account_email, key_id, writer,
	started, succeeded, failed, canceled, retried, failed_by, gen_hist)
SELECT x.tenant_id, x.mode, x.hour, x.account_email, x.key_id, $1,
	x.started, x.succeeded, x.failed, x.canceled, x.retried, x.failed_by, x.gen_hist::integer[]
FROM unnest($2::bigint[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],
	$7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::jsonb[], $13::text[])
	AS x (tenant_id, mode, hour, account_email, key_id, started, succeeded, failed, canceled, retried, failed_by, gen_hist)
ON CONFLICT (tenant_id, mode, hour, account_email, key_id, writer) DO UPDATE SET
	started = u.started + EXCLUDED.started,
	succeeded = u.succeeded + EXCLUDED.succeeded,
	failed = u.failed + EXCLUDED.failed,
	canceled = u.canceled + EXCLUDED.canceled,
	retried = u.retried + EXCLUDED.retried,
	failed_by = CASE WHEN EXCLUDED.failed_by = '{}' THEN u.failed_by ELSE (
		SELECT jsonb_object_agg(k, n) FROM (
			SELECT k, sum(v::bigint) AS n
			FROM (SELECT * FROM jsonb_each_text(u.failed_by) UNION ALL SELECT * FROM jsonb_each_text(EXCLUDED.failed_by)) AS f (k, v)
			GROUP BY k) AS s) END,
	gen_hist = CASE WHEN cardinality(EXCLUDED.gen_hist) = 0 THEN u.gen_hist ELSE ARRAY(
		SELECT coalesce(a, 0) + coalesce(b, 0)
		FROM unnest(u.gen_hist, EXCLUDED.gen_hist) WITH ORDINALITY AS h (a, b, i)
		ORDER BY i) END`

// upsert adds rows to their usage_hourly buckets as writer, with one
// statement: each writer adds only to its own rows.
func upsert(ctx context.Context, db dbx.DBTX, writer string, rows []*row) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	var (
		tenants                                   = make([]int64, n)
		modes, accounts, keys, hists              = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		hours                                     = make([]time.Time, n)
		started, succeeded, failed, canceled, ret = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		failedBy                                  = make([]json.RawMessage, n)
	)
	for i, r := range rows {
		tenants[i], modes[i], hours[i], accounts[i], keys[i] = r.tenantID, string(r.mode), r.Hour, r.Account, r.KeyID
		started[i], succeeded[i], failed[i], canceled[i], ret[i] = r.Started, r.Succeeded, r.Failed, r.Canceled, r.Retried
		hists[i] = r.Generation.literal()
		failedBy[i] = json.RawMessage("{}")
		if r.FailedBy != nil {
			raw, err := json.Marshal(r.FailedBy)
			if err != nil {
				return err
			}
			failedBy[i] = raw
		}
	}
	_, err := db.Exec(ctx, usageAdd, writer, tenants, modes, hours, accounts, keys,
		started, succeeded, failed, canceled, ret, failedBy, hists)
	return err
}
