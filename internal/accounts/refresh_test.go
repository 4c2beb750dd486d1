package accounts_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/pgtest"
	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/secret"
	"github.com/poolgate/poolgate/internal/tenant"
)

type refreshWorld struct {
	pool     *pgxpool.Pool
	store    *accounts.Store
	box      *secret.Box
	sim      *sim.Server
	simURL   string
	scope    tenant.Scope
	outcomes sync.Map
}

func newRefreshWorld(t *testing.T) *refreshWorld {
	t.Helper()
	pool := pgtest.New(t)
	key := make([]byte, secret.KeySize)
	rand.Read(key)
	box, _ := secret.NewBox(key)
	cfg := sim.DefaultConfig()
	cfg.TokenLifetime = time.Hour
	s := sim.New(cfg, nil)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	var tenantID int64
	if err := pool.QueryRow(context.Background(), `INSERT INTO tenants (name) VALUES ('acme') RETURNING id`).Scan(&tenantID); err != nil {
		t.Fatal(err)
	}
	return &refreshWorld{pool: pool, store: accounts.NewStore(pool, box, time.Now), box: box, sim: s, simURL: srv.URL,
		scope: tenant.Scope{TenantID: tenantID, Mode: tenant.Live}}
}

func (w *refreshWorld) refresher(counter *atomic.Int64) *accounts.Refresher {
	return accounts.NewRefresher(accounts.RefresherConfig{
		Store: w.store, Provider: ltxstudio.New(w.simURL, nil), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Lead: 10 * time.Minute, RetryBase: time.Millisecond,
		OnOutcome: func(o string) {
			if o == "refreshed" && counter != nil {
				counter.Add(1)
			}
		},
	})
}

func (w *refreshWorld) register(t *testing.T, email string, tokenExp, refreshExp time.Time) accounts.Account {
	t.Helper()
	return w.registerAs(t, accounts.Registration{Cookie: sim.Cookie(email, tokenExp, refreshExp)})
}

// registerAs registers r in the world's pool.
func (w *refreshWorld) registerAs(t *testing.T, r accounts.Registration) accounts.Account {
	t.Helper()
	a, err := w.store.Register(context.Background(), w.scope, r)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestRefreshOncePerAccountAcrossReplicas: three replicas race to refresh
// the accounts whose lt_token is about to expire; each is refreshed once.
func TestRefreshOncePerAccountAcrossReplicas(t *testing.T) {
	t.Parallel()
	w := newRefreshWorld(t)
	soon, later := time.Now().Add(5*time.Minute), time.Now().Add(2*time.Hour)
	far := time.Now().Add(60 * 24 * time.Hour)
	for _, e := range []string{"a@x.io", "b@x.io", "c@x.io"} {
		w.register(t, e, soon, far)
	}
	w.register(t, "fresh@x.io", later, far)

	var refreshed atomic.Int64
	var wg sync.WaitGroup
	for range 3 {
		r := w.refresher(&refreshed)
		wg.Go(func() {
			if _, err := r.RunOnce(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if refreshed.Load() != 3 {
		t.Errorf("%d refreshes recorded, want 3 (one per due account)", refreshed.Load())
	}
	st := w.sim.Stats()
	for _, e := range []string{"a@x.io", "b@x.io", "c@x.io"} {
		if n := st.Accounts[e].Refreshes; n != 1 {
			t.Errorf("%s refreshed %d times upstream, want 1", e, n)
		}
		a, _ := w.store.Get(context.Background(), w.scope, e)
		if a.TokenExpiresAt == nil || a.TokenExpiresAt.Sub(time.Now()) < 50*time.Minute {
			t.Errorf("%s: token expiry %v not moved to the new token's", e, a.TokenExpiresAt)
		}
		if a.LastRefreshAt == nil || a.Status != accounts.StatusActive || a.NextRefreshAt == nil {
			t.Errorf("%s after refresh: status %s, last %v, next %v", e, a.Status, a.LastRefreshAt, a.NextRefreshAt)
		}
	}
	if st.Accounts["fresh@x.io"].Refreshes != 0 {
		t.Error("an account far from expiry was refreshed")
	}
	// A second round finds nothing due.
	if n, _ := w.refresher(nil).RunOnce(context.Background()); n != 0 {
		t.Errorf("second round refreshed %d accounts", n)
	}
}

// TestRefreshRefusedTakesAccountOut: an upstream that refuses the refresh
// token puts the account in status error with the reason.
func TestRefreshRefusedTakesAccountOut(t *testing.T) {
	t.Parallel()
	w := newRefreshWorld(t)
	// The refresh token lapses a second after registration (the simulator
	// refuses it), and lt_token is due for refresh at once.
	w.register(t, "a@x.io", time.Now().Add(time.Minute), time.Now().Add(1500*time.Millisecond))
	time.Sleep(1600 * time.Millisecond)
	// Expired refresh tokens are not even tried.
	if _, err := w.refresher(nil).RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, _ := w.store.Get(context.Background(), w.scope, "a@x.io")
	if a.Status != accounts.StatusExpired {
		t.Fatalf("status %s, want expired (not refreshed, out of rotation)", a.Status)
	}
	if w.sim.Stats().Accounts["a@x.io"].Refreshes != 0 {
		t.Error("an expired refresh token was sent upstream")
	}

	// A refresh the upstream refuses although poolgate thought the token
	// valid: the simulator answers 401 when neither token names an account.
	enc := base64.RawURLEncoding
	anonymous := enc.EncodeToString([]byte(`{"alg":"HS256"}`)) + "." +
		enc.EncodeToString(fmt.Appendf(nil, `{"exp":%d}`, time.Now().Add(time.Minute).Unix())) + ".sig"
	cookie := "lt_token=" + anonymous + "; lt_refresh_token=revoked-by-upstream"
	if _, err := w.store.Register(context.Background(), w.scope, accounts.Registration{Cookie: cookie, Email: "b@x.io"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.refresher(nil).RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, _ := w.store.Get(context.Background(), w.scope, "b@x.io")
	if b.Status != accounts.StatusError || b.Reason == "" {
		t.Errorf("refused refresh: status %s reason %q, want error with a reason", b.Status, b.Reason)
	}
}
