// Package usage counts what each account and each API key did: jobs
// started, succeeded, failed (by error code), canceled and retried, and the
// generation times of succeeded jobs, in hourly buckets. It owns the
// usage_hourly table.
//
// Nothing here adds a transaction: the scheduler's placement, completion
// and retry paths hand their events to Record inside the transactions they
// already commit (hooks wired in cmd/server), and Record folds a batch
// into one statement that adds to one row per hour, account and key.
package usage

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"time"

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

// row is what one batch adds to one (hour, account, key) bucket.
type row struct {
	tenantID int64
	mode     tenant.Mode
	hour     time.Time
	account  string
	keyID    string

	started, succeeded, failed, canceled, retried int64
	failedBy                                      map[string]int64
	gen                                           Histogram
}

type rowKey struct {
	tenantID int64
	mode     tenant.Mode
	hour     time.Time
	account  string
	keyID    string
}

// fold aggregates events into one row per bucket, in key order so that
// concurrent writers lock rows in the same order.
func fold(events []Event) []*row {
	byKey := map[rowKey]*row{}
	var rows []*row
	for _, e := range events {
		k := rowKey{e.Scope.TenantID, e.Scope.Mode, e.At.UTC().Truncate(time.Hour), e.Account, e.KeyID}
		r := byKey[k]
		if r == nil {
			r = &row{tenantID: k.tenantID, mode: k.mode, hour: k.hour, account: k.account, keyID: k.keyID}
			byKey[k] = r
			rows = append(rows, r)
		}
		switch e.Kind {
		case Started:
			r.started++
		case Retried:
			r.retried++
		case Succeeded:
			r.succeeded++
			r.gen.Add(e.Generation)
		case Failed:
			r.failed++
			if r.failedBy == nil {
				r.failedBy = map[string]int64{}
			}
			r.failedBy[e.Code]++
		case Canceled:
			r.canceled++
		}
	}
	slices.SortFunc(rows, func(a, b *row) int {
		return cmp.Or(cmp.Compare(a.tenantID, b.tenantID), cmp.Compare(a.mode, b.mode), a.hour.Compare(b.hour),
			cmp.Compare(a.account, b.account), cmp.Compare(a.keyID, b.keyID))
	})
	return rows
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

// Record adds events to their hourly buckets with one statement, in the
// caller's transaction. writer names the path and replica that writes
// (e.g. "replica-1/finish"): each writer adds only to its own rows, so
// writers never wait on each other's row locks.
func Record(ctx context.Context, db dbx.DBTX, writer string, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	rows := fold(events)
	n := len(rows)
	var (
		tenants                                   = make([]int64, n)
		modes, accounts, keys, hists              = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		hours                                     = make([]time.Time, n)
		started, succeeded, failed, canceled, ret = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		failedBy                                  = make([]json.RawMessage, n)
	)
	for i, r := range rows {
		tenants[i], modes[i], hours[i], accounts[i], keys[i] = r.tenantID, string(r.mode), r.hour, r.account, r.keyID
		started[i], succeeded[i], failed[i], canceled[i], ret[i] = r.started, r.succeeded, r.failed, r.canceled, r.retried
		hists[i] = r.gen.literal()
		failedBy[i] = json.RawMessage("{}")
		if r.failedBy != nil {
			raw, err := json.Marshal(r.failedBy)
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
