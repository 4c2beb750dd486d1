package alerts_test

import (
	"context"
	"io"
	"log/slog"
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
