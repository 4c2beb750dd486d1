package retention_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/alerts"
	"github.com/poolgate/poolgate/internal/fakeclock"
	"github.com/poolgate/poolgate/internal/pgtest"
	"github.com/poolgate/poolgate/internal/retention"
	"github.com/poolgate/poolgate/internal/scheduler"
	"github.com/poolgate/poolgate/internal/webhooks"
)

const day = 24 * time.Hour

// t0 is "now" for every test: the injected clock never moves by itself.
var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// cleanups wires the domain delete functions the way cmd/server does,
// with the default periods.
func cleanups() []retention.Cleanup {
	return []retention.Cleanup{
		{Name: "jobs", Retention: 7 * day, Delete: scheduler.DeleteFinishedJobs},
		{Name: "job_idempotency", Retention: scheduler.IdempotencyWindow, Delete: scheduler.DeleteExpiredIdempotencyKeys},
		{Name: "webhook_deliveries", Retention: 7 * day, Delete: webhooks.DeleteDoneDeliveries},
		{Name: "alerts", Retention: 30 * day, Delete: alerts.DeleteResolvedAlerts},
		{Name: "cron_runs", Retention: 7 * day, Delete: alerts.DeleteStaleCronRuns},
	}
}

func service(t *testing.T, pool *pgxpool.Pool, batch int) *retention.Service {
	t.Helper()
	s, err := retention.New(retention.Config{DB: pool, Now: fakeclock.New(t0).Now, Batch: batch, Pause: -1, Cleanups: cleanups()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type db struct {
	t      *testing.T
	pool   *pgxpool.Pool
	tenant int64
}

func setup(t *testing.T) *db {
	t.Helper()
	d := &db{t: t, pool: pgtest.New(t)}
	d.exec(`INSERT INTO tenants (name) VALUES ('acme') RETURNING id`)
	if err := d.pool.QueryRow(context.Background(), `SELECT id FROM tenants WHERE name = 'acme'`).Scan(&d.tenant); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *db) exec(sql string, args ...any) {
	d.t.Helper()
	if _, err := d.pool.Exec(context.Background(), sql, args...); err != nil {
		d.t.Fatalf("%s: %v", sql, err)
	}
}

// job inserts a job in state, created at created and (if terminal) finished
// at finished; in-flight jobs get the lease and account their state needs.
func (d *db) job(id, state string, created, finished time.Time) {
	d.t.Helper()
	var fin *time.Time
	var owner *string
	var account *int64
	switch state {
	case "succeeded", "failed", "canceled":
		fin = &finished
	case "running", "dispatching":
		o, a := "replica-x", int64(1)
		owner, account = &o, &a
	}
	d.exec(`INSERT INTO jobs (tenant_id, id, mode, type, params, state, max_attempts, run_after, queue_deadline,
		created_at, finished_at, lease_owner, lease_expires_at, account_id)
		VALUES ($1, $2, 'live', 'video', '{}', $3, 3, $4, $4::timestamptz + interval '1 hour', $4, $5, $6, $4::timestamptz + interval '30 seconds', $7)`,
		d.tenant, id, state, created, fin, owner, account)
}

func (d *db) ids(sql string) []string {
	d.t.Helper()
	rows, err := d.pool.Query(context.Background(), sql)
	if err != nil {
		d.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			d.t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		d.t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func (d *db) expectRows(t *testing.T, what, sql string, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := d.ids(sql); !slices.Equal(got, want) {
		t.Errorf("%s left after the pass: %v, want exactly %v", what, got, want)
	}
}

func TestOnePassDeletesExactlyTheExpiredRows(t *testing.T) {
	t.Parallel()
	d := setup(t)

	// Jobs: the retention counts from the end, not from creation.
	for i := range 5 { // more than a batch, so the pass loops
		d.job(fmt.Sprintf("old-done-%d", i), []string{"succeeded", "failed", "canceled"}[i%3], t0.Add(-9*day), t0.Add(-8*day))
	}
	d.job("fresh-done", "succeeded", t0.Add(-9*day), t0.Add(-6*day))
	d.job("old-queued", "queued", t0.Add(-30*day), time.Time{})
	d.job("old-running", "running", t0.Add(-30*day), time.Time{})
	d.job("old-dispatching", "dispatching", t0.Add(-30*day), time.Time{})

	// Idempotency keys: gone once out of their 24 h window.
	for _, k := range []struct {
		key string
		age time.Duration
	}{{"spent", 25 * time.Hour}, {"live", 23 * time.Hour}} {
		d.exec(`INSERT INTO job_idempotency (tenant_id, mode, key, request_hash, job_id, created_at)
			VALUES ($1, 'live', $2, '\x00', 'job_x', $3)`, d.tenant, k.key, t0.Add(-k.age))
	}

	// Webhook deliveries: delivered or dead ones go; pending ones stay.
	for _, w := range []struct {
		id, state string
		created   time.Duration
		delivered *time.Time
	}{
		{"dlv-delivered-old", "delivered", 9 * day, ptr(t0.Add(-8 * day))},
		{"dlv-delivered-fresh", "delivered", 9 * day, ptr(t0.Add(-6 * day))},
		{"dlv-dead-old", "failed", 9 * day, nil},   // gave up 8 days ago
		{"dlv-dead-fresh", "failed", 7 * day, nil}, // gave up 6 days ago
		{"dlv-pending-old", "pending", 30 * day, nil},
	} {
		created := t0.Add(-w.created)
		d.exec(`INSERT INTO webhook_deliveries (id, tenant_id, url, event, payload, state, next_attempt_at, give_up_at, created_at, delivered_at)
			VALUES ($1, $2, 'https://example.com/h', 'job.succeeded', '{}', $3, $4, $4::timestamptz + interval '24 hours', $4, $5)`,
			w.id, d.tenant, w.state, created, w.delivered)
	}

	// Alerts: resolved ones go after 30 days; open and acked ones stay.
	for _, a := range []struct {
		id                string
		acked, resolved   *time.Time
		createdDaysBefore int
	}{
		{"alr-resolved-old", nil, ptr(t0.Add(-31 * day)), 40},
		{"alr-resolved-fresh", nil, ptr(t0.Add(-29 * day)), 40},
		{"alr-open-old", nil, nil, 90},
		{"alr-acked-old", ptr(t0.Add(-80 * day)), nil, 90},
	} {
		d.exec(`INSERT INTO alerts (tenant_id, id, mode, account_id, account_email, kind, dedupe_key, message, created_at, acked_at, resolved_at)
			VALUES ($1, $2, 'live', 1, 'a@x.io', 'error', $2, 'm', $3, $4, $5)`,
			d.tenant, a.id, t0.Add(-time.Duration(a.createdDaysBefore)*day), a.acked, a.resolved)
	}

	// Cron runs: a schedule that stopped running goes.
	d.exec(`INSERT INTO cron_runs (name, last_run) VALUES ('renamed', $1), ('alerts', $2)`, t0.Add(-8*day), t0.Add(-time.Minute))

	p, err := service(t, d.pool, 2).RunOnce(context.Background())
	if err != nil {
		t.Fatalf("pass failed: %v", err)
	}
	want := map[string]int64{"jobs": 5, "job_idempotency": 1, "webhook_deliveries": 2, "alerts": 1, "cron_runs": 1}
	if p.Yielded || !mapsEqual(p.Deleted, want) {
		t.Errorf("pass = %+v, want deleted %v and not yielded", p, want)
	}
	d.expectRows(t, "jobs", `SELECT id FROM jobs`, "fresh-done", "old-queued", "old-running", "old-dispatching")
	d.expectRows(t, "idempotency keys", `SELECT key FROM job_idempotency`, "live")
	d.expectRows(t, "deliveries", `SELECT id FROM webhook_deliveries`, "dlv-delivered-fresh", "dlv-dead-fresh", "dlv-pending-old")
	d.expectRows(t, "alerts", `SELECT id FROM alerts`, "alr-resolved-fresh", "alr-open-old", "alr-acked-old")
	d.expectRows(t, "cron runs", `SELECT name FROM cron_runs`, "alerts")

	// A second pass at the same instant finds nothing more.
	p, err = service(t, d.pool, 2).RunOnce(context.Background())
	if err != nil || !mapsEqual(p.Deleted, map[string]int64{"jobs": 0, "job_idempotency": 0, "webhook_deliveries": 0, "alerts": 0, "cron_runs": 0}) {
		t.Errorf("second pass = %+v, %v; want nothing deleted", p, err)
	}
}

func TestRacingServicesDeleteEachRowOnce(t *testing.T) {
	t.Parallel()
	d := setup(t)
	const old = 3000
	d.exec(`INSERT INTO jobs (tenant_id, id, mode, type, params, state, max_attempts, run_after, queue_deadline, created_at, finished_at)
		SELECT $1, 'job-' || g, 'live', 'video', '{}', 'succeeded', 3, $2, $2, $2, $2 FROM generate_series(1, $3) g`,
		d.tenant, t0.Add(-8*day), old)
	d.job("fresh", "succeeded", t0.Add(-day), t0.Add(-day))

	services := []*retention.Service{service(t, d.pool, 100), service(t, d.pool, 100), service(t, d.pool, 100)}
	passes := make([]retention.Pass, len(services))
	errs := make([]error, len(services))
	var wg sync.WaitGroup
	for i, s := range services {
		wg.Add(1)
		go func() { defer wg.Done(); passes[i], errs[i] = s.RunOnce(context.Background()) }()
	}
	wg.Wait()
	var total int64
	for i := range services {
		if errs[i] != nil {
			t.Errorf("service %d failed: %v", i, errs[i])
		}
		total += passes[i].Deleted["jobs"]
	}
	if total != old {
		t.Errorf("services reported %d jobs deleted between them, want %d (each row once)", total, old)
	}
	d.expectRows(t, "jobs", `SELECT id FROM jobs`, "fresh")
}

func TestYieldsWhileAnotherReplicaHoldsTheLock(t *testing.T) {
	t.Parallel()
	d := setup(t)
	d.job("old", "succeeded", t0.Add(-9*day), t0.Add(-8*day))

	// Another replica in the middle of a batch.
	ctx := context.Background()
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var locked bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(x'706f6f6c72657465'::bigint)`).Scan(&locked); err != nil || !locked {
		t.Fatalf("take the lock: %v, %v", locked, err)
	}
	p, err := service(t, d.pool, 100).RunOnce(ctx)
	if err != nil || !p.Yielded || p.Deleted["jobs"] != 0 {
		t.Errorf("pass while the lock is held = %+v, %v; want it to yield and delete nothing", p, err)
	}
	tx.Rollback(ctx)

	p, err = service(t, d.pool, 100).RunOnce(ctx)
	if err != nil || p.Yielded || p.Deleted["jobs"] != 1 {
		t.Errorf("pass once the lock is free = %+v, %v; want the old job deleted", p, err)
	}
}

func TestStartRunsAPassAndStopEndsIt(t *testing.T) {
	t.Parallel()
	d := setup(t)
	d.job("old", "succeeded", t0.Add(-9*day), t0.Add(-8*day))
	s := service(t, d.pool, 100)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(d.ids(`SELECT id FROM jobs`)) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the service did not delete the expired job after Start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.Stop(ctx)
	if ctx.Err() != nil {
		t.Error("Stop did not return before its deadline")
	}
}

func TestNewRefusesAnIncompleteCleanup(t *testing.T) {
	_, err := retention.New(retention.Config{DB: &pgxpool.Pool{}, Cleanups: []retention.Cleanup{{Name: "jobs", Delete: scheduler.DeleteFinishedJobs}}})
	if err == nil {
		t.Error("New accepted a cleanup without a retention period")
	}
}

func ptr[T any](v T) *T { return &v }

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
