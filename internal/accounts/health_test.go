package accounts_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/fakeclock"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/ltxapi"
	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
	"github.com/poolgate/poolgate/internal/results/resultstest"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fail counts n transient failures against account id's breaker, each in
// its own transaction, as the scheduler's retries do.
func (w *refreshWorld) fail(t *testing.T, id int64, n int) {
	t.Helper()
	for range n {
		err := w.store.InTx(context.Background(), w.pool, func(tx pgx.Tx) error {
			return w.store.CountFailure(context.Background(), tx, w.scope, id, time.Now())
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestBreakerResetNeverWaitsForAccountLocks: a success resets the
// account's breaker in the completer's transaction without taking the
// account's row lock, which a placement may hold (and which the completer
// of another replica may want in another order). The reset still counts:
// the failures before it do not add up with those after it.
func TestBreakerResetNeverWaitsForAccountLocks(t *testing.T) {
	t.Parallel()
	w := newRefreshWorld(t)
	w.store.WithHealth(accounts.HealthConfig{BreakerFailures: 5})
	far := time.Now().Add(60 * 24 * time.Hour)
	a := w.register(t, "a@x.io", far, far)
	b := w.register(t, "b@x.io", far, far)
	w.fail(t, a.ID, 3)
	w.fail(t, b.ID, 3)
	ctx := context.Background()

	// A placement holds a@x.io's row.
	placement, err := w.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer placement.Rollback(ctx)
	if _, err := placement.Exec(ctx, `SELECT 1 FROM accounts WHERE email = 'a@x.io' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	// A completer finishes jobs on both accounts; a wait for the lock is an
	// error here instead of a stall.
	err = pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '1s'`); err != nil {
			return err
		}
		return accounts.ResetFailures(ctx, tx, []int64{w.scope.TenantID, w.scope.TenantID, w.scope.TenantID},
			[]int64{b.ID, a.ID, b.ID})
	})
	if err != nil {
		t.Fatalf("the breaker reset waited for a placement's account lock: %v", err)
	}
	if err := placement.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	// Four more failures do not trip a breaker at five; the fifth does.
	for _, acc := range []accounts.Account{a, b} {
		w.fail(t, acc.ID, 4)
		if got, _ := w.store.Get(ctx, w.scope, acc.Email); got.Status != accounts.StatusActive {
			t.Fatalf("%s: 3 failures, a success, 4 failures: status %s, want active (the success resets the count)",
				acc.Email, got.Status)
		}
		w.fail(t, acc.ID, 1)
		if got, _ := w.store.Get(ctx, w.scope, acc.Email); got.Status != accounts.StatusQuarantined {
			t.Fatalf("%s: 5 failures after a success: status %s, want quarantined", acc.Email, got.Status)
		}
	}
}

// slowProbes is an upstream whose probes each take probeTime on the
// prober's clock; during the probe numbered during, meanwhile runs.
type slowProbes struct {
	provider.Provider
	clock     *fakeclock.Clock
	probeTime time.Duration
	n, during int
	meanwhile func()
}

func (s *slowProbes) Probe(ctx context.Context, a provider.Account) error {
	s.clock.Advance(s.probeTime)
	if s.n++; s.n == s.during {
		s.meanwhile()
	}
	return s.Provider.Probe(ctx, a)
}

// TestProberLeasesEachAccountForItsOwnProbe: a round whose probes are
// slow (timeouts, the request budget) takes longer than a lease; another
// replica's prober meanwhile probes the accounts this one has not reached,
// and no account is probed twice.
func TestProberLeasesEachAccountForItsOwnProbe(t *testing.T) {
	t.Parallel()
	w := newRefreshWorld(t)
	ctx := context.Background()
	far := time.Now().Add(60 * 24 * time.Hour)
	emails := []string{"a@x.io", "b@x.io", "c@x.io", "d@x.io", "e@x.io"}
	now := time.Now()
	for _, e := range emails {
		acc := w.register(t, e, far, far)
		err := w.store.InTx(ctx, w.pool, func(tx pgx.Tx) error {
			return w.store.Quarantine(ctx, tx, w.scope, acc.ID, accounts.QuarantineRateLimited, now.Add(time.Minute), now)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	clock := fakeclock.New(now.Add(2 * time.Minute))
	upstream := ltxstudio.New(w.simURL, nil)
	other := accounts.NewProber(accounts.ProberConfig{Store: w.store, Provider: upstream, Logger: discard(), Now: clock.Now})
	otherRecovered := 0
	slow := &slowProbes{Provider: upstream, clock: clock, probeTime: 50 * time.Second, during: 3, meanwhile: func() {
		n, err := other.RunOnce(ctx)
		if err != nil {
			t.Error(err)
		}
		otherRecovered = n
	}}
	p := accounts.NewProber(accounts.ProberConfig{Store: w.store, Provider: slow, Logger: discard(), Now: clock.Now})
	n, err := p.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n+otherRecovered != len(emails) || otherRecovered == 0 {
		t.Errorf("recovered %d here and %d by the other prober, want %d in all, some by the other",
			n, otherRecovered, len(emails))
	}
	st := w.sim.Stats()
	for _, e := range emails {
		if got := st.Accounts[e].Probes; got != 1 {
			t.Errorf("%s probed %d times, want once", e, got)
		}
	}
}

// TestHealthEventCountedOnlyOnCommit: the health events of a transaction
// that rolls back are stored nowhere and announced to no one.
func TestHealthEventCountedOnlyOnCommit(t *testing.T) {
	t.Parallel()
	w := newRefreshWorld(t)
	var announced []accounts.EventKind
	w.store.WithHooks(accounts.Hooks{AfterHealth: []func(accounts.Event){func(ev accounts.Event) {
		announced = append(announced, ev.Kind)
	}}})
	far := time.Now().Add(60 * 24 * time.Hour)
	a := w.register(t, "a@x.io", far, far)
	ctx := context.Background()
	quarantine := func(tx pgx.Tx) error {
		return w.store.Quarantine(ctx, tx, w.scope, a.ID, accounts.QuarantineRateLimited, time.Now().Add(time.Hour), time.Now())
	}
	rollback := errors.New("the rest of the transaction failed")
	if err := w.store.InTx(ctx, w.pool, func(tx pgx.Tx) error {
		if err := quarantine(tx); err != nil {
			return err
		}
		return rollback
	}); !errors.Is(err, rollback) {
		t.Fatalf("InTx = %v, want the function's error", err)
	}
	if len(announced) != 0 {
		t.Fatalf("rolled-back transition announced: %v", announced)
	}
	if err := w.store.InTx(ctx, w.pool, quarantine); err != nil {
		t.Fatal(err)
	}
	if len(announced) != 1 || announced[0] != accounts.EventQuarantined {
		t.Fatalf("committed transition announced %v, want one quarantined", announced)
	}
	// Outside InTx a transition would never be announced: it is refused.
	if err := pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		return w.store.MarkError(ctx, tx, w.scope, a.ID, "refused", false, time.Now())
	}); err == nil {
		t.Fatal("a health transition outside InTx was accepted")
	}
}

// TestProberProbesAPIKeyAccounts: a quarantined LTX-2 API key is probed
// with its key (not read as a cookie, which would call it unreadable) and
// comes back.
func TestProberProbesAPIKeyAccounts(t *testing.T) {
	t.Parallel()
	w := newRefreshWorld(t)
	ctx := context.Background()
	a, err := w.store.RegisterAPIKey(ctx, w.scope, accounts.KeyRegistration{APIKey: "ltxv_sk_probe_test"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := w.store.InTx(ctx, w.pool, func(tx pgx.Tx) error {
		return w.store.Quarantine(ctx, tx, w.scope, a.ID, accounts.QuarantineRateLimited, now.Add(time.Minute), now)
	}); err != nil {
		t.Fatal(err)
	}
	upstream := provider.Set{
		provider.NameLTXStudio: ltxstudio.New(w.simURL, nil),
		provider.NameLTXAPI:    ltxapi.New(w.simURL, resultstest.Dir(t, t.TempDir()), nil),
	}
	clock := fakeclock.New(now.Add(2 * time.Minute))
	p := accounts.NewProber(accounts.ProberConfig{Store: w.store, Provider: upstream, Logger: discard(), Now: clock.Now})
	if n, err := p.RunOnce(ctx); err != nil || n != 1 {
		t.Fatalf("probe round recovered %d (err %v), want 1", n, err)
	}
	got, err := w.store.Get(ctx, w.scope, a.Email)
	if err != nil || got.Status != accounts.StatusActive {
		t.Fatalf("API key after its probe: status %s (%s), err %v; want active", got.Status, got.Reason, err)
	}
}
