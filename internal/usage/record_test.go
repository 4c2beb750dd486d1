package usage_test

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/pgtest"
	"github.com/poolgate/poolgate/internal/tenant"
	"github.com/poolgate/poolgate/internal/usage"
)

func tenantScope(t *testing.T, pool *pgxpool.Pool, name string, mode tenant.Mode) tenant.Scope {
	t.Helper()
	var id int64
	err := pool.QueryRow(context.Background(),
		`INSERT INTO tenants (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id`, name).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	return tenant.Scope{TenantID: id, Mode: mode}
}

func record(t *testing.T, pool *pgxpool.Pool, events ...usage.Event) {
	t.Helper()
	if err := usage.Record(context.Background(), pool, events); err != nil {
		t.Fatalf("record: %v", err)
	}
}

// rollup moves up to limit pending rows into usage_hourly as writer.
func rollup(t *testing.T, pool *pgxpool.Pool, writer string, limit int) int {
	t.Helper()
	n, err := usage.Rollup(context.Background(), pool, writer, limit)
	if err != nil {
		t.Fatalf("rollup: %v", err)
	}
	return n
}

func pending(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM usage_pending`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func read(t *testing.T, pool *pgxpool.Pool, scope tenant.Scope, rg usage.Range, by usage.GroupBy, account string) []usage.Group {
	t.Helper()
	gs, err := usage.Usage(context.Background(), pool, scope, rg, by, account)
	if err != nil {
		t.Fatalf("usage by %s: %v", by, err)
	}
	return gs
}

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func TestBucketsSplitAtHourBoundaries(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	acme := tenantScope(t, pool, "acme", tenant.Live)
	ev := func(kind usage.Kind, at time.Time) usage.Event {
		return usage.Event{Scope: acme, Kind: kind, Account: "a@x.io", KeyID: "key_1", At: at}
	}
	record(t, pool,
		ev(usage.Started, t0.Add(59*time.Minute+59*time.Second+999*time.Millisecond)), // last instant of 10:00
		ev(usage.Started, t0.Add(time.Hour)),                                          // first instant of 11:00
		ev(usage.Started, t0.Add(time.Hour+30*time.Minute)),
	)
	hours := read(t, pool, acme, usage.Range{From: t0, To: t0.Add(3 * time.Hour)}, usage.ByHour, "")
	if len(hours) != 2 || !hours[0].Time.Equal(t0) || hours[0].Started != 1 ||
		!hours[1].Time.Equal(t0.Add(time.Hour)) || hours[1].Started != 2 {
		t.Fatalf("hours = %+v; want 1 started at 10:00 and 2 at 11:00", hours)
	}
	// A range takes the buckets whose hour starts in [from rounded down, to).
	for _, c := range []struct {
		name     string
		from, to time.Time
		want     int64
	}{
		{"from mid-hour takes that hour", t0.Add(30 * time.Minute), t0.Add(time.Hour), 1},
		{"to is exclusive", t0, t0.Add(time.Hour), 1},
		{"to inside an hour takes it", t0, t0.Add(time.Hour + time.Second), 3},
		{"a range before anything", t0.Add(-5 * time.Hour), t0, 0},
	} {
		got := usage.Total(read(t, pool, acme, usage.Range{From: c.from, To: c.to}, usage.ByHour, "")).Started
		if got != c.want {
			t.Errorf("%s: started %d, want %d", c.name, got, c.want)
		}
	}
	days := read(t, pool, acme, usage.Range{From: t0.Add(-24 * time.Hour), To: t0.Add(24 * time.Hour)}, usage.ByDay, "")
	if len(days) != 1 || !days[0].Time.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) || days[0].Started != 3 {
		t.Errorf("days = %+v; want one UTC day with 3 started", days)
	}
}

// Counts read the same while they wait in usage_pending, while roll-ups
// have moved part of them, and once they all sit in usage_hourly, rolled
// up by two writers (one of them twice: the ON CONFLICT path).
func TestCountsAddUpAcrossBatchesAndRollups(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	acme := tenantScope(t, pool, "acme", tenant.Live)
	at := t0.Add(10 * time.Minute)
	ev := func(kind usage.Kind, account, key, code string, gen time.Duration) usage.Event {
		return usage.Event{Scope: acme, Kind: kind, Account: account, KeyID: key, At: at, Code: code, Generation: gen}
	}
	var want usage.Histogram
	for range 3 {
		record(t, pool,
			ev(usage.Succeeded, "a@x.io", "key_1", "", 2*time.Second),
			ev(usage.Succeeded, "a@x.io", "key_2", "", 40*time.Second),
			ev(usage.Failed, "a@x.io", "key_1", "upstream_failed", 0),
			ev(usage.Failed, "b@x.io", "key_1", "retries_exhausted", 0),
			ev(usage.Failed, "b@x.io", "key_1", "upstream_failed", 0),
			ev(usage.Canceled, "", "key_2", "", 0),
		)
		want.Add(2 * time.Second)
		want.Add(40 * time.Second)
	}
	record(t, pool, ev(usage.Retried, "b@x.io", "key_1", "", 0))
	rg := usage.Range{From: t0, To: t0.Add(time.Hour)}

	for _, stage := range []struct {
		name string
		roll func()
	}{
		{"all pending", func() {}},
		{"one batch rolled up", func() { rollup(t, pool, "r1/rollup", 1) }},
		{"another by the same writer", func() { rollup(t, pool, "r1/rollup", 1) }},
		{"the rest by another writer", func() {
			if n := rollup(t, pool, "r2/rollup", 100); n != 2 {
				t.Errorf("the last roll-up moved %d pending rows, want the 2 left", n)
			}
		}},
	} {
		stage.roll()
		t.Run(stage.name, func(t *testing.T) {
			byAccount := read(t, pool, acme, rg, usage.ByAccount, "")
			if len(byAccount) != 3 || byAccount[0].Key != "" || byAccount[1].Key != "a@x.io" || byAccount[2].Key != "b@x.io" {
				t.Fatalf("groups by account = %+v; want '', a@x.io, b@x.io", byAccount)
			}
			none, a, b := byAccount[0], byAccount[1], byAccount[2]
			if none.Canceled != 3 || none.Started+none.Succeeded+none.Failed != 0 {
				t.Errorf("no-account group %+v; want 3 canceled only", none.Counts)
			}
			if a.Succeeded != 6 || a.Failed != 3 || !maps.Equal(a.FailedBy, map[string]int64{"upstream_failed": 3}) {
				t.Errorf("a@x.io %+v; want 6 succeeded, 3 upstream_failed", a.Counts)
			}
			if b.Failed != 6 || b.Retried != 1 || !maps.Equal(b.FailedBy, map[string]int64{"upstream_failed": 3, "retries_exhausted": 3}) {
				t.Errorf("b@x.io %+v; want 6 failed by two reasons, 1 retried", b.Counts)
			}
			for _, q := range []float64{0.5, 0.95} {
				got, _ := a.Generation.Quantile(q)
				exp, _ := want.Quantile(q)
				if got != exp {
					t.Errorf("a@x.io p%.0f = %v after the round trip, want %v", q*100, got, exp)
				}
			}

			byKey := read(t, pool, acme, rg, usage.ByKey, "")
			if len(byKey) != 2 || byKey[0].Key != "key_1" || byKey[0].Failed != 9 || byKey[0].Succeeded != 3 ||
				byKey[1].Key != "key_2" || byKey[1].Succeeded != 3 || byKey[1].Canceled != 3 {
				t.Errorf("groups by key = %+v", byKey)
			}
			if p50, _ := byKey[0].Generation.Quantile(0.5); !within(p50, 2*time.Second) {
				t.Errorf("key_1 p50 = %v, want about 2s", p50)
			}
			oneAccount := usage.Total(read(t, pool, acme, rg, usage.ByHour, "b@x.io"))
			if oneAccount.Failed != 6 || oneAccount.Retried != 1 || oneAccount.Succeeded != 0 {
				t.Errorf("b@x.io alone: %+v", oneAccount)
			}
		})
	}
	if n := pending(t, pool); n != 0 {
		t.Errorf("%d rows still pending after the roll-ups", n)
	}
}

// Roll-ups on several replicas race each other and the transactions that
// record usage; every count ends in usage_hourly exactly once. A roll-up
// whose transaction rolls back leaves its rows pending.
func TestConcurrentRollupsCountEverythingOnce(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	acme := tenantScope(t, pool, "acme", tenant.Live)
	ctx := context.Background()

	// A roll-up inside a transaction that rolls back moves nothing.
	record(t, pool, usage.Event{Scope: acme, Kind: usage.Started, Account: "a@x.io", At: t0})
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := usage.Rollup(ctx, tx, "r0/rollup", 10); err != nil || n != 1 {
		t.Fatalf("rollup in a transaction: %d, %v", n, err)
	}
	tx.Rollback(ctx)
	if n := pending(t, pool); n != 1 {
		t.Fatalf("%d rows pending after a rolled-back roll-up, want 1", n)
	}

	const writers, batches, perBatch = 4, 50, 7
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var rollers sync.WaitGroup
	for r := range 3 {
		rollers.Go(func() {
			for {
				if _, err := usage.Rollup(ctx, pool, fmt.Sprintf("r%d/rollup", r), 3); err != nil {
					t.Errorf("rollup: %v", err)
					return
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		})
	}
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				events := make([]usage.Event, perBatch)
				for i := range events {
					events[i] = usage.Event{Scope: acme, Kind: usage.Succeeded, Account: fmt.Sprintf("acc%d@x.io", (w+b+i)%5),
						At: t0.Add(time.Duration(b) * time.Minute * 3), Generation: time.Second}
				}
				if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return usage.Record(ctx, tx, events) }); err != nil {
					t.Errorf("record: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	rollers.Wait()
	halfway := usage.Total(read(t, pool, acme, usage.Range{From: t0, To: t0.Add(3 * time.Hour)}, usage.ByHour, ""))
	rollup(t, pool, "r9/rollup", 1000)
	if n := pending(t, pool); n != 0 {
		t.Fatalf("%d rows pending after the last roll-up", n)
	}
	total := usage.Total(read(t, pool, acme, usage.Range{From: t0, To: t0.Add(3 * time.Hour)}, usage.ByHour, ""))
	const want = writers * batches * perBatch
	for name, c := range map[string]usage.Counts{"while rows were pending": halfway, "all rolled up": total} {
		if c.Succeeded != want || c.Started != 1 || c.Generation.Count() != want {
			t.Errorf("%s: %d succeeded, %d started, %d generation times; want %d, 1, %d",
				name, c.Succeeded, c.Started, c.Generation.Count(), want, want)
		}
	}
}

func TestUsageStaysInItsPool(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	acme, acmeTest, other := tenantScope(t, pool, "acme", tenant.Live), tenantScope(t, pool, "acme", tenant.Test),
		tenantScope(t, pool, "globex", tenant.Live)
	at := t0.Add(time.Minute)
	record(t, pool,
		usage.Event{Scope: acme, Kind: usage.Started, Account: "same@x.io", KeyID: "key_a", At: at},
		usage.Event{Scope: acme, Kind: usage.Started, Account: "same@x.io", KeyID: "key_a", At: at},
		usage.Event{Scope: acmeTest, Kind: usage.Started, Account: "same@x.io", KeyID: "key_t", At: at},
		usage.Event{Scope: other, Kind: usage.Started, Account: "same@x.io", KeyID: "key_g", At: at},
	)
	rg := usage.Range{From: t0, To: t0.Add(time.Hour)}
	for _, c := range []struct {
		name  string
		scope tenant.Scope
		want  int64
		key   string
	}{{"acme live", acme, 2, "key_a"}, {"acme test", acmeTest, 1, "key_t"}, {"globex", other, 1, "key_g"}} {
		gs := read(t, pool, c.scope, rg, usage.ByKey, "")
		if len(gs) != 1 || gs[0].Key != c.key || gs[0].Started != c.want {
			t.Errorf("%s sees %+v; want only its own key %s with %d started", c.name, gs, c.key, c.want)
		}
		if got := usage.Total(read(t, pool, c.scope, rg, usage.ByHour, "same@x.io")).Started; got != c.want {
			t.Errorf("%s: account same@x.io started %d, want %d", c.name, got, c.want)
		}
	}
}

func TestDeleteOldKeepsRecentHours(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	acme := tenantScope(t, pool, "acme", tenant.Live)
	for h := range 5 {
		record(t, pool, usage.Event{Scope: acme, Kind: usage.Started, Account: "a@x.io", At: t0.Add(time.Duration(h) * time.Hour)})
	}
	rollup(t, pool, "r1/rollup", 100) // retention deletes rolled-up buckets
	ctx := context.Background()
	n, err := usage.DeleteOld(ctx, pool, t0.Add(3*time.Hour), 2)
	if err != nil || n != 2 {
		t.Fatalf("first batch deleted %d, %v; want 2 (the limit)", n, err)
	}
	n, err = usage.DeleteOld(ctx, pool, t0.Add(3*time.Hour), 2)
	if err != nil || n != 1 {
		t.Fatalf("second batch deleted %d, %v; want the 1 old hour left", n, err)
	}
	hours := read(t, pool, acme, usage.Range{From: t0, To: t0.Add(24 * time.Hour)}, usage.ByHour, "")
	if len(hours) != 2 || !hours[0].Time.Equal(t0.Add(3*time.Hour)) {
		t.Errorf("left %+v; want the hours from 13:00 on", hours)
	}
	// An hour that has not ended is kept whatever the cutoff: it is still
	// being written.
	n, err = usage.DeleteOld(ctx, pool, t0.Add(4*time.Hour+59*time.Minute), 10)
	if err != nil || n != 1 {
		t.Fatalf("cutoff inside the 14:00 hour deleted %d, %v; want only the 13:00 hour", n, err)
	}
	hours = read(t, pool, acme, usage.Range{From: t0, To: t0.Add(24 * time.Hour)}, usage.ByHour, "")
	if len(hours) != 1 || !hours[0].Time.Equal(t0.Add(4*time.Hour)) {
		t.Errorf("left %+v; want the 14:00 hour", hours)
	}
}
