package webhooks

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
)

func TestSecrets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("created on first use, sealed, stable", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		s1, err := e.secrets.Get(ctx, e.tenant)
		if err != nil {
			t.Fatal(err)
		}
		raw, ok := strings.CutPrefix(s1, SecretPrefix)
		if b, err := base64.StdEncoding.DecodeString(raw); !ok || err != nil || len(b) != 32 {
			t.Fatalf("secret %q is not whsec_ + base64(32 bytes)", s1)
		}
		// A fresh Secrets (another replica) reads the same value back.
		s2, err := NewSecrets(e.pool, e.box).Get(ctx, e.tenant)
		if err != nil || s2 != s1 {
			t.Fatalf("second replica got %q, %v; want %q", s2, err, s1)
		}
		var sealed []byte
		if err := e.pool.QueryRow(ctx, `SELECT webhook_secret FROM tenants WHERE id = $1`, e.tenant).Scan(&sealed); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(sealed, []byte(s1)) || bytes.Contains(sealed, []byte(raw)) {
			t.Fatal("webhook_secret column holds the secret in clear")
		}
	})

	t.Run("racing replicas agree", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		const n = 16
		got := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				v, err := NewSecrets(e.pool, e.box).Get(ctx, e.tenant)
				if err != nil {
					t.Errorf("replica %d: %v", i, err)
				}
				got[i] = v
			})
		}
		wg.Wait()
		for i, v := range got {
			if v != got[0] {
				t.Fatalf("replica %d got a different secret than replica 0", i)
			}
		}
	})

	t.Run("per tenant and bound to its row", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		other := newTenant(t, e.pool)
		a, errA := e.secrets.Get(ctx, e.tenant)
		b, errB := e.secrets.Get(ctx, other)
		if errA != nil || errB != nil || a == b {
			t.Fatalf("tenants got %q (%v) and %q (%v), want two different secrets", a, errA, b, errB)
		}
		// A sealed secret copied onto another tenant's row must not open.
		third := newTenant(t, e.pool)
		if _, err := e.pool.Exec(ctx, `UPDATE tenants SET webhook_secret = (SELECT webhook_secret FROM tenants WHERE id = $1) WHERE id = $2`, e.tenant, third); err != nil {
			t.Fatal(err)
		}
		if v, err := NewSecrets(e.pool, e.box).Get(ctx, third); err == nil {
			t.Fatalf("copied ciphertext opened for another tenant as %q", v)
		}
	})

	t.Run("unknown tenant", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		if _, err := e.secrets.Get(ctx, e.tenant+1000); !errors.Is(err, ErrUnknownTenant) {
			t.Fatalf("Get(unknown) = %v, want ErrUnknownTenant", err)
		}
	})
}
