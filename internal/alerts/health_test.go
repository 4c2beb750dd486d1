package alerts_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/alerts"
)

// healthAlerts wires a service's OnHealth into the world's accounts, as
// serve does.
func healthAlerts(t *testing.T, w *world) *alerts.Service {
	s := w.service(t, "@every 1h")
	w.accounts.WithHooks(accounts.Hooks{OnRegister: []accounts.RegisterHook{alerts.ResolveAccount},
		OnHealth: []accounts.HealthHook{s.OnHealth}})
	return s
}

func (w *world) deliveries(t *testing.T, event string) int {
	t.Helper()
	var n int
	if err := w.pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook_deliveries WHERE event = $1`, event).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestHealthEventAlerts: an expiry seen by three probers at once, and an
// error reported twice, are one event and one alert each, and the cron
// scan does not raise them again.
func TestHealthEventAlerts(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	s := healthAlerts(t, w)
	ctx := context.Background()
	w.register(t, "old@x.io", w.now().Add(time.Hour).Truncate(time.Second))
	w.register(t, "off@x.io", w.now().Add(time.Hour).Truncate(time.Second))
	w.register(t, "bad@x.io", w.now().Add(30*24*time.Hour))
	off := false
	if _, err := w.accounts.Update(ctx, w.scope, "off@x.io", accounts.Patch{Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	w.advance(2 * time.Hour)

	var wg sync.WaitGroup
	for range 3 {
		p := accounts.NewProber(accounts.ProberConfig{Store: w.accounts, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: w.now})
		wg.Go(func() {
			if _, err := p.RunOnce(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	bad, err := w.accounts.Get(ctx, w.scope, "bad@x.io")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		err := w.accounts.InTx(ctx, w.pool, func(tx pgx.Tx) error {
			return w.accounts.MarkError(ctx, tx, w.scope, bad.ID, "upstream refused the credentials", true, w.now())
		})
		if err != nil {
			t.Fatal(err)
		}
		w.advance(time.Minute)
	}
	if n, err := s.Scan(ctx); err != nil || len(n) != 0 {
		t.Fatalf("the scan raised %d alerts (err %v) after the health events had raised them", len(n), err)
	}

	got := w.alertKeys(t)
	slices.Sort(got)
	want := []string{"bad@x.io error -", "old@x.io expired -"}
	if !slices.Equal(got, want) {
		t.Fatalf("alerts %v, want %v (none for the disabled account)", got, want)
	}
	for _, ev := range []string{"alert.expired", "alert.error"} {
		if n := w.deliveries(t, ev); n != 1 {
			t.Errorf("%d %s deliveries queued, want 1", n, ev)
		}
	}
	for email, want := range map[string]int{"old@x.io": 1, "off@x.io": 0, "bad@x.io": 1} {
		a, err := w.accounts.Get(ctx, w.scope, email)
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Health) != want {
			t.Errorf("%s has %d health events, want %d", email, len(a.Health), want)
		}
	}
}

// TestAlertsCountedOnlyOnCommit: an alert raised in a transaction that
// rolls back is neither stored nor counted (poolgate_alerts_raised_total);
// one that commits is counted once, whether a health transition or the
// cron scan raised it.
func TestAlertsCountedOnlyOnCommit(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var (
		mu     sync.Mutex
		counts = map[string]int{}
	)
	cfg := w.config("@every 1h")
	cfg.OnRaised = func(kind string) { mu.Lock(); counts[kind]++; mu.Unlock() }
	s, err := alerts.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.accounts.WithHooks(accounts.Hooks{OnHealth: []accounts.HealthHook{s.OnHealth}})
	ctx := context.Background()
	w.register(t, "rests@x.io", w.now().Add(30*24*time.Hour))
	w.register(t, "expiring@x.io", w.now().Add(2*24*time.Hour))
	a, err := w.accounts.Get(ctx, w.scope, "rests@x.io")
	if err != nil {
		t.Fatal(err)
	}
	quarantine := func(tx pgx.Tx) error {
		return w.accounts.Quarantine(ctx, tx, w.scope, a.ID, accounts.QuarantineRateLimited, w.now().Add(time.Hour), w.now())
	}
	counted := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(counts)
	}

	rollback := errors.New("the rest of the transaction failed")
	if err := w.accounts.InTx(ctx, w.pool, func(tx pgx.Tx) error {
		if err := quarantine(tx); err != nil {
			return err
		}
		return rollback
	}); !errors.Is(err, rollback) {
		t.Fatalf("InTx = %v, want the function's error", err)
	}
	if got := counted(); len(got) != 0 || len(w.alertKeys(t)) != 0 {
		t.Fatalf("a rolled-back quarantine left alerts %v and counted %v", w.alertKeys(t), got)
	}
	if err := w.accounts.InTx(ctx, w.pool, quarantine); err != nil {
		t.Fatal(err)
	}
	if got := counted(); got[alerts.KindQuarantined] != 1 || len(got) != 1 {
		t.Fatalf("after the committed quarantine counted %v, want one quarantined", got)
	}
	raised, err := s.Scan(ctx)
	if err != nil || len(raised) != 2 { // expiring within 7d and within 3d
		t.Fatalf("the scan raised %d alerts (err %v), want 2", len(raised), err)
	}
	if got := counted(); got[alerts.KindExpiring] != 2 || got[alerts.KindQuarantined] != 1 || len(got) != 2 {
		t.Fatalf("after the scan counted %v, want 2 expiring and 1 quarantined", got)
	}
}
