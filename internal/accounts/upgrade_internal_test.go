package accounts

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/fakeclock"
	"github.com/poolgate/poolgate/internal/pgtest"
	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/secret"
	"github.com/poolgate/poolgate/internal/tenant"
	"github.com/poolgate/poolgate/migrations"
)

// TestHealthUpgradeKeepsRateLimitedAccounts: before account health, a 429
// set quarantined_until and nothing ever cleared it; the old rule let the
// account back once it had passed. After the upgrade, an account whose
// old quarantine passed is in rotation at once, and one whose quarantine
// still runs is probed at its end and comes back.
func TestHealthUpgradeKeepsRateLimitedAccounts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.New(t)
	if _, err := pool.Exec(ctx, `DROP SCHEMA public CASCADE; CREATE SCHEMA public`); err != nil {
		t.Fatal(err)
	}
	// The schema as the release before account health left it.
	all, err := migrations.All()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		if m.Version >= 7 {
			break
		}
		if _, err := pool.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("apply %s: %v", m.Name, err)
		}
		if _, err := pool.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
			t.Fatal(err)
		}
	}

	// Three accounts as the old code left them.
	key := make([]byte, secret.KeySize)
	rand.Read(key)
	box, _ := secret.NewBox(key)
	var tenantID int64
	if err := pool.QueryRow(ctx, `INSERT INTO tenants (name) VALUES ('acme') RETURNING id`).Scan(&tenantID); err != nil {
		t.Fatal(err)
	}
	scope := tenant.Scope{TenantID: tenantID, Mode: tenant.Live}
	now := time.Now()
	quarantined := map[string]*time.Time{
		"past@x.io":   new(now.Add(-time.Hour)), // a 429 of last week: never cleared
		"future@x.io": new(now.Add(time.Hour)),  // resting still
		"never@x.io":  nil,
	}
	for email, until := range quarantined {
		tokenExp, refreshExp := now.Add(24*time.Hour), now.Add(90*24*time.Hour)
		sealed := box.Seal([]byte(sim.Cookie(email, tokenExp, refreshExp)), cookieAAD(scope, email))
		if _, err := pool.Exec(ctx, `INSERT INTO accounts (tenant_id, mode, email, cookie, max_jobs, token_expires_at,
			refresh_token_expires_at, quarantined_until) VALUES ($1, $2, $3, $4, 2, $5, $6, $7)`,
			tenantID, scope.Mode, email, sealed, tokenExp, refreshExp, until); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := migrations.Apply(ctx, pool); err != nil {
		t.Fatalf("upgrade: %v", err)
	}

	store := NewStore(pool, box, time.Now)
	inRotation := func(at time.Time) []string {
		t.Helper()
		caps, _, err := Capacities(ctx, pool, scope, at)
		if err != nil {
			t.Fatal(err)
		}
		var emails []string
		for _, c := range caps {
			emails = append(emails, c.Email)
		}
		return emails
	}
	if got, want := inRotation(now), []string{"never@x.io", "past@x.io"}; !slices.Equal(got, want) {
		t.Fatalf("in rotation after the upgrade: %v, want %v (a quarantine that passed is over)", got, want)
	}
	a, err := store.Get(ctx, scope, "future@x.io")
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != StatusQuarantined || a.QuarantineReason != QuarantineRateLimited || a.NextProbeAt == nil ||
		!a.NextProbeAt.Equal(*a.QuarantinedUntil) {
		t.Fatalf("running quarantine after the upgrade: status %s, reason %q, next probe %v, until %v; "+
			"want quarantined, rate_limited, probed at its end", a.Status, a.QuarantineReason, a.NextProbeAt, a.QuarantinedUntil)
	}

	s := sim.New(sim.DefaultConfig(), nil)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	clock := fakeclock.New(now.Add(2 * time.Hour))
	p := NewProber(ProberConfig{Store: store, Provider: ltxstudio.New(srv.URL, nil),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: clock.Now})
	if n, err := p.RunOnce(ctx); err != nil || n != 1 {
		t.Fatalf("probe round past the old quarantine: recovered %d (err %v), want 1", n, err)
	}
	if got, want := inRotation(clock.Now()), []string{"future@x.io", "never@x.io", "past@x.io"}; !slices.Equal(got, want) {
		t.Fatalf("in rotation after the probe: %v, want %v", got, want)
	}
	if n := s.Stats().Accounts["future@x.io"].Probes; n != 1 {
		t.Errorf("future@x.io probed %d times, want once", n)
	}
}
