package accounts_test

import (
	"context"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/sim"
)

// API keys have no token to refresh and no expiry to warn about: the
// refresher and the alert scan pass them by, while their credentials
// open for the scheduler as the key registered.
func TestAPIKeyAccountsSkipRefreshAndExpiryAlerts(t *testing.T) {
	t.Parallel()
	w := newRefreshWorld(t)
	ctx := context.Background()
	a, err := w.store.RegisterAPIKey(ctx, w.scope, accounts.KeyRegistration{APIKey: "ltxv_sk_refresh_test"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Email != provider.KeyFingerprint("ltxv_sk_refresh_test") || a.MaxJobs != accounts.DefaultAPIKeyMaxJobs || a.Provider != provider.NameLTXAPI {
		t.Fatalf("registered %+v", a)
	}
	if n, err := w.refresher(nil).RunOnce(ctx); err != nil || n != 0 {
		t.Fatalf("refresher ran on %d accounts (err %v), want none", n, err)
	}
	if st := w.sim.Stats(); len(st.Accounts) != 0 {
		t.Fatalf("the refresher called the upstream: %+v", st.Accounts)
	}
	risky, err := accounts.AtRisk(ctx, w.pool, time.Now().Add(365*24*time.Hour))
	if err != nil || len(risky) != 0 {
		t.Fatalf("alert scan found %+v (err %v), want nothing for a healthy key", risky, err)
	}
	creds, err := w.store.Credentials(ctx, w.scope, a.ID)
	if err != nil || creds.APIKey != "ltxv_sk_refresh_test" || creds.Cookie != "" || creds.ProviderName() != provider.NameLTXAPI {
		t.Fatalf("credentials = %+v (err %v)", creds.ProviderName(), err)
	}
	// A new key under the same name replaces the old one.
	if _, err := w.store.RegisterAPIKey(ctx, w.scope, accounts.KeyRegistration{APIKey: "ltxv_sk_other", Name: a.Email}); err != nil {
		t.Fatal(err)
	}
	if creds, _ := w.store.Credentials(ctx, w.scope, a.ID); creds.APIKey != "ltxv_sk_other" {
		t.Fatal("re-registering under the same name did not replace the key")
	}
	// A sealed cookie copied into the key's row does not open as a key.
	c, err := w.store.Register(ctx, w.scope, accounts.Registration{
		Cookie: sim.Cookie("ann@example.com", time.Now().Add(time.Hour), time.Now().Add(90*24*time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.pool.Exec(ctx, `UPDATE accounts SET cookie = (SELECT cookie FROM accounts WHERE id = $2) WHERE id = $1`, a.ID, c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := w.store.Credentials(ctx, w.scope, a.ID); err != accounts.ErrUnreadable {
		t.Fatalf("swapped credential: err = %v, want ErrUnreadable", err)
	}
	got, err := w.store.Get(ctx, w.scope, a.Email)
	if err != nil || got.Status != accounts.StatusError {
		t.Fatalf("swapped credential shows %+v (err %v), want status error", got.Status, err)
	}
}
