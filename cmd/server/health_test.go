package main

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/alerts"
	"github.com/poolgate/poolgate/internal/pgtest"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/secret"
	"github.com/poolgate/poolgate/internal/tenant"
)

// TestHealthMetricCountsCommittedEventsOnly: poolgate_account_health_events_total
// counts a transition once its transaction has committed; one that rolled
// back (a retry whose requeue failed) is not counted.
func TestHealthMetricCountsCommittedEventsOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.New(t)
	key := make([]byte, secret.KeySize)
	rand.Read(key)
	box, _ := secret.NewBox(key)
	logger := slog.New(slog.DiscardHandler)
	alerter, err := alerts.New(alerts.Config{Pool: pool, Logger: logger, Schedule: "@every 1h",
		Thresholds: []alerts.Threshold{{Name: "1d", Before: 24 * time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	m := newHealthMetrics(prometheus.NewRegistry())
	onHealth, afterHealth := healthHooks(m, alerter)
	store := accounts.NewStore(pool, box, time.Now).WithHooks(accounts.Hooks{OnHealth: onHealth, AfterHealth: afterHealth})
	var tenantID int64
	if err := pool.QueryRow(ctx, `INSERT INTO tenants (name) VALUES ('acme') RETURNING id`).Scan(&tenantID); err != nil {
		t.Fatal(err)
	}
	scope := tenant.Scope{TenantID: tenantID, Mode: tenant.Live}
	far := time.Now().Add(30 * 24 * time.Hour)
	a, err := store.Register(ctx, scope, accounts.Registration{Cookie: sim.Cookie("a@x.io", far, far)})
	if err != nil {
		t.Fatal(err)
	}
	counted := func() float64 {
		var out dto.Metric
		if err := m.events.WithLabelValues("quarantined", accounts.QuarantineRateLimited).Write(&out); err != nil {
			t.Fatal(err)
		}
		return out.GetCounter().GetValue()
	}
	quarantine := func(tx pgx.Tx) error {
		return store.Quarantine(ctx, tx, scope, a.ID, accounts.QuarantineRateLimited, time.Now().Add(time.Hour), time.Now())
	}

	failed := errors.New("requeue failed")
	if err := store.InTx(ctx, pool, func(tx pgx.Tx) error {
		if err := quarantine(tx); err != nil {
			return err
		}
		return failed
	}); !errors.Is(err, failed) {
		t.Fatalf("transaction: %v, want %v", err, failed)
	}
	if n := counted(); n != 0 {
		t.Fatalf("a rolled-back quarantine was counted %v times", n)
	}
	if err := store.InTx(ctx, pool, quarantine); err != nil {
		t.Fatal(err)
	}
	if n := counted(); n != 1 {
		t.Fatalf("a committed quarantine was counted %v times, want 1", n)
	}
}
