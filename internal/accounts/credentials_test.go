package accounts_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/provider"
)

// TestPreloadOpensABatchOfCookies: a placement opens its batch's cookies
// in one query; afterwards each job's CredentialsAt is served from memory
// at the version placement read. An account that cannot be opened is not
// remembered, so its job still learns why.
func TestPreloadOpensABatchOfCookies(t *testing.T) {
	t.Parallel()
	w := newRefreshWorld(t)
	ctx := context.Background()
	in := time.Now().Add(time.Hour)
	ann := w.register(t, "ann@example.com", in, in.Add(90*24*time.Hour))
	bob := w.register(t, "bob@example.com", in, in.Add(90*24*time.Hour))
	cara := w.register(t, "cara@example.com", in, in.Add(90*24*time.Hour))
	key, err := w.store.RegisterAPIKey(ctx, w.scope, accounts.KeyRegistration{APIKey: "ltxv_sk_preload"})
	if err != nil {
		t.Fatal(err)
	}
	// cara's row holds ann's sealed cookie: it opens for nobody.
	if _, err := w.pool.Exec(ctx, `UPDATE accounts SET cookie = (SELECT cookie FROM accounts WHERE id = $2) WHERE id = $1`, cara.ID, ann.ID); err != nil {
		t.Fatal(err)
	}

	versions := map[int64]string{}
	err = pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		free, err := accounts.LockFree(ctx, tx, w.scope, time.Now(), []int64{ann.ID, bob.ID, cara.ID, key.ID})
		for _, f := range free {
			versions[f.ID] = f.Version
		}
		return err
	})
	if err != nil || len(versions) != 4 {
		t.Fatalf("locked %v (err %v), want 4 accounts", versions, err)
	}
	const gone = 1 << 40
	versions[gone] = "00"
	if err := w.store.Preload(ctx, w.scope, versions); err != nil {
		t.Fatal(err)
	}

	// From here on a read of any cookie from the table would fail to open.
	if _, err := w.pool.Exec(ctx, `UPDATE accounts SET cookie = '\x01deadbeef'::bytea`); err != nil {
		t.Fatal(err)
	}
	other := accounts.NewStore(w.pool, w.box, time.Now) // a replica that preloaded nothing
	if _, err := other.CredentialsAt(ctx, w.scope, ann.ID, versions[ann.ID]); !errors.Is(err, accounts.ErrUnreadable) {
		t.Fatalf("a replica without the preload opened ann's cookie (err %v): the test would prove nothing", err)
	}

	for _, c := range []struct {
		id    int64
		email string
		prov  string
	}{{ann.ID, ann.Email, provider.NameLTXStudio}, {bob.ID, bob.Email, provider.NameLTXStudio}, {key.ID, key.Email, provider.NameLTXAPI}} {
		acct, err := w.store.CredentialsAt(ctx, w.scope, c.id, versions[c.id])
		if err != nil || acct.Email != c.email || acct.ProviderName() != c.prov {
			t.Fatalf("account %s after the preload: %s %s (err %v)", c.email, acct.Email, acct.ProviderName(), err)
		}
	}
	if acct, _ := w.store.CredentialsAt(ctx, w.scope, key.ID, versions[key.ID]); acct.APIKey != "ltxv_sk_preload" {
		t.Fatal("the preloaded API key is not the one registered")
	}
	if acct, _ := w.store.CredentialsAt(ctx, w.scope, ann.ID, versions[ann.ID]); acct.Cookie == "" {
		t.Fatal("the preloaded account has no cookie")
	}
	if _, err := w.store.CredentialsAt(ctx, w.scope, cara.ID, versions[cara.ID]); !errors.Is(err, accounts.ErrUnreadable) {
		t.Fatalf("cara's unreadable cookie: err %v, want ErrUnreadable", err)
	}
	if _, err := w.store.CredentialsAt(ctx, w.scope, gone, versions[gone]); !errors.Is(err, accounts.ErrGone) {
		t.Fatalf("an account that does not exist: err %v, want ErrGone", err)
	}
	// Another version of ann's cookie (a refresh sealed it anew) is read
	// from the table, not served from memory.
	if _, err := w.store.CredentialsAt(ctx, w.scope, ann.ID, "another"); !errors.Is(err, accounts.ErrUnreadable) {
		t.Fatalf("ann at another version: err %v, want the table's unreadable cookie", err)
	}
}
