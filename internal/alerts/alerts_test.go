package alerts_test

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/alerts"
	"github.com/poolgate/poolgate/internal/pgtest"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/secret"
	"github.com/poolgate/poolgate/internal/tenant"
)

type world struct {
	pool     *pgxpool.Pool
	accounts *accounts.Store
	scope    tenant.Scope
	clock    atomic.Int64 // unix nanos of the fake clock
}

func newWorld(t *testing.T) *world {
	t.Helper()
	pool := pgtest.New(t)
	key := make([]byte, secret.KeySize)
	rand.Read(key)
	box, _ := secret.NewBox(key)
	var id int64
	if err := pool.QueryRow(context.Background(), `INSERT INTO tenants (name) VALUES ('acme') RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	w := &world{pool: pool, accounts: accounts.NewStore(pool, box, time.Now).WithHooks(accounts.Hooks{
		OnRegister: []accounts.RegisterHook{alerts.ResolveAccount},
	}), scope: tenant.Scope{TenantID: id, Mode: tenant.Live}}
	w.clock.Store(time.Now().UnixNano())
	return w
}

func (w *world) now() time.Time          { return time.Unix(0, w.clock.Load()) }
func (w *world) advance(d time.Duration) { w.clock.Add(int64(d)) }

// config is the world's alert configuration: thresholds 7d, 3d and 1d, one
// JSON destination.
func (w *world) config(schedule string) alerts.Config {
	th, _ := alerts.ParseThresholds("7d,3d,1d")
	return alerts.Config{Pool: w.pool, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: w.now, Schedule: schedule, Thresholds: th, URL: "https://ops.example.com/hook", Format: alerts.FormatJSON}
}

func (w *world) service(t *testing.T, schedule string) *alerts.Service {
	t.Helper()
	s, err := alerts.New(w.config(schedule))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (w *world) register(t *testing.T, email string, refreshExp time.Time) {
	t.Helper()
	_, err := w.accounts.Register(context.Background(), w.scope, accounts.Registration{
		Cookie: sim.Cookie(email, time.Now().Add(time.Hour), refreshExp)})
	if err != nil {
		t.Fatal(err)
	}
}

func (w *world) alertKeys(t *testing.T) []string {
	t.Helper()
	rows, err := w.pool.Query(context.Background(), `SELECT account_email || ' ' || kind || ' ' || coalesce(threshold, '-') FROM alerts ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		out = append(out, s)
	}
	return out
}

// scanAll runs a scan on three replicas at once, as a tick would race.
func scanAll(t *testing.T, services []*alerts.Service) int {
	var wg sync.WaitGroup
	var raised atomic.Int64
	for _, s := range services {
		wg.Go(func() {
			a, err := s.Scan(context.Background())
			if err != nil {
				t.Error(err)
			}
			raised.Add(int64(len(a)))
		})
	}
	wg.Wait()
	return int(raised.Load())
}

func TestThresholdsFireOnceEachInOrder(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	expiry := w.now().Add(8 * 24 * time.Hour).Truncate(time.Second)
	w.register(t, "a@x.io", expiry)
	services := []*alerts.Service{w.service(t, "@every 1h"), w.service(t, "@every 1h"), w.service(t, "@every 1h")}

	steps := []struct {
		at   time.Duration // before expiry
		want []string
	}{
		{8 * 24 * time.Hour, nil},
		{6*24*time.Hour + time.Hour, []string{"a@x.io expiring 7d"}},
		{6 * 24 * time.Hour, nil},
		{2 * 24 * time.Hour, []string{"a@x.io expiring 3d"}},
		{12 * time.Hour, []string{"a@x.io expiring 1d"}},
		{-time.Minute, []string{"a@x.io expired -"}},
		{-time.Hour, nil},
	}
	var all []string
	for _, s := range steps {
		w.clock.Store(expiry.Add(-s.at).UnixNano())
		n := scanAll(t, services)
		all = append(all, s.want...)
		if n != len(s.want) {
			t.Errorf("%s before expiry: %d alerts raised, want %d", s.at, n, len(s.want))
		}
	}
	if got := w.alertKeys(t); strings.Join(got, "|") != strings.Join(all, "|") {
		t.Errorf("alerts %v, want %v in that order", got, all)
	}
	var deliveries int
	w.pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook_deliveries WHERE url = 'https://ops.example.com/hook'`).Scan(&deliveries)
	if deliveries != len(all) {
		t.Errorf("%d deliveries queued for %d alerts", deliveries, len(all))
	}
}

func TestMissedTicksAreCaughtUp(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.register(t, "late@x.io", w.now().Add(20*time.Hour))
	// No scan ran while the expiry crossed 7d and 3d and 1d: the first
	// scan raises all three, earliest warning first.
	if n := scanAll(t, []*alerts.Service{w.service(t, "@every 1h")}); n != 3 {
		t.Errorf("%d alerts raised, want 3", n)
	}
	got := w.alertKeys(t)
	if strings.Join(got, "|") != "late@x.io expiring 7d|late@x.io expiring 3d|late@x.io expiring 1d" {
		t.Errorf("alerts %v", got)
	}
}

func TestErrorAlertAndResolution(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.register(t, "a@x.io", w.now().Add(2*24*time.Hour))
	s := w.service(t, "@every 1h")
	store := alerts.NewStore(w.pool, time.Now, true)
	if _, err := store.SetDestination(context.Background(), w.scope, alerts.Destination{URL: "https://hooks.slack.example/T1", Format: alerts.FormatSlack}); err != nil {
		t.Fatal(err)
	}
	w.pool.Exec(context.Background(), `UPDATE accounts SET status = 'error', status_reason = 'upstream refused the credentials'`)
	raised, err := s.Scan(context.Background())
	if err != nil || len(raised) != 1 || raised[0].Kind != alerts.KindError {
		t.Fatalf("raised %v, %v; want one error alert (error outranks expiring)", raised, err)
	}
	var payload string
	w.pool.QueryRow(context.Background(), `SELECT payload FROM webhook_deliveries WHERE url LIKE 'https://hooks.slack%'`).Scan(&payload)
	if !strings.HasPrefix(payload, `{"text":`) || !strings.Contains(payload, "a@x.io") {
		t.Errorf("slack payload %s", payload)
	}
	if again, _ := s.Scan(context.Background()); len(again) != 0 {
		t.Errorf("second scan raised %d", len(again))
	}

	list, _, err := store.List(context.Background(), w.scope, alerts.Filter{State: "open", Limit: 10})
	if err != nil || len(list) != 1 {
		t.Fatalf("open alerts %v, %v", list, err)
	}
	acked, err := store.Ack(context.Background(), w.scope, list[0].ID)
	if err != nil || acked.State() != "acked" {
		t.Fatalf("ack: %v %v", acked, err)
	}
	other := tenant.Scope{TenantID: w.scope.TenantID + 1000, Mode: tenant.Live}
	if _, err := store.Ack(context.Background(), other, list[0].ID); err == nil {
		t.Error("another tenant acknowledged the alert")
	}

	// Fresh cookies resolve the account's alerts.
	w.register(t, "a@x.io", w.now().Add(80*24*time.Hour))
	list, _, _ = store.List(context.Background(), w.scope, alerts.Filter{State: "resolved", Limit: 10})
	if len(list) != 1 {
		t.Errorf("%d resolved alerts after re-registration, want 1", len(list))
	}
}

// TestCronTicks proves the robfig/cron wiring: three replicas on a 1s
// schedule raise the alert once.
func TestCronTicks(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.register(t, "a@x.io", w.now().Add(12*time.Hour))
	for range 3 {
		s := w.service(t, "@every 1s")
		s.Start(context.Background())
		t.Cleanup(func() { s.Stop(context.Background()) })
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(w.alertKeys(t)) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no alerts from the cron within 10s: %v", w.alertKeys(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2500 * time.Millisecond) // more ticks must not duplicate
	if got := w.alertKeys(t); len(got) != 3 {
		t.Errorf("alerts after several ticks on three replicas: %v", got)
	}
	var runs int
	w.pool.QueryRow(context.Background(), `SELECT count(*) FROM cron_runs WHERE name = 'alerts'`).Scan(&runs)
	if runs != 1 {
		t.Error("cron_runs does not record the alerts tick")
	}
}

func TestConfigParsing(t *testing.T) {
	for _, bad := range []string{"every 15 minutes", "* * *", "@every", "61 * * * *"} {
		if _, err := alerts.ParseSchedule(bad); err == nil {
			t.Errorf("schedule %q accepted", bad)
		}
	}
	for _, good := range []string{"*/15 * * * *", "@every 1h", "@hourly", "0 9 * * 1-5"} {
		if _, err := alerts.ParseSchedule(good); err != nil {
			t.Errorf("schedule %q refused: %v", good, err)
		}
	}
	th, err := alerts.ParseThresholds("1d, 7d,12h,3d")
	if err != nil || len(th) != 4 || th[0].Name != "7d" || th[3].Name != "12h" {
		t.Errorf("thresholds %v, %v", th, err)
	}
	for _, bad := range []string{"", "7x", "0d", "7d,7d", "-1d"} {
		if _, err := alerts.ParseThresholds(bad); err == nil {
			t.Errorf("thresholds %q accepted", bad)
		}
	}
}

// TestDestinationsAreScopedByMode: a test-mode key used to read and replace
// the tenant's one destination, and then received live alerts naming live
// accounts.
func TestDestinationsAreScopedByMode(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.register(t, "live@x.io", w.now().Add(2*24*time.Hour))
	ctx := context.Background()
	store := alerts.NewStore(w.pool, time.Now, true)
	testScope := tenant.Scope{TenantID: w.scope.TenantID, Mode: tenant.Test}
	if _, err := store.SetDestination(ctx, w.scope, alerts.Destination{URL: "https://live.example/hook"}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.SetDestination(ctx, testScope, alerts.Destination{URL: "https://test.example/hook"}); err != nil {
		t.Fatal(err)
	}
	if d, err := store.Destination(ctx, w.scope); err != nil || d == nil || d.URL != "https://live.example/hook" {
		t.Fatalf("a test key's PUT changed the live destination: %v %v", d, err)
	}
	if d, _ := store.Destination(ctx, testScope); d == nil || d.URL != "https://test.example/hook" {
		t.Fatalf("test destination: %v", d)
	}
	if _, err := w.service(t, "@every 1h").Scan(ctx); err != nil {
		t.Fatal(err)
	}
	var toTest, toLive int
	w.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE url LIKE 'https://test.%'), count(*) FILTER (WHERE url LIKE 'https://live.%') FROM webhook_deliveries`).Scan(&toTest, &toLive)
	if toTest != 0 || toLive == 0 {
		t.Errorf("live alerts went %d times to the test destination and %d to the live one", toTest, toLive)
	}
	// Removing the test destination leaves the live one.
	if _, err := store.SetDestination(ctx, testScope, alerts.Destination{}); err != nil {
		t.Fatal(err)
	}
	if d, _ := store.Destination(ctx, w.scope); d == nil {
		t.Error("removing the test destination removed the live one")
	}
}
