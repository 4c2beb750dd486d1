package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/secret"
)

func newSessionStore(t *testing.T, f *fixture) *SessionStore {
	t.Helper()
	key := make([]byte, secret.KeySize)
	rand.Read(key)
	box, err := secret.NewBox(key)
	if err != nil {
		t.Fatal(err)
	}
	return NewSessionStore(f.pool, box, f.clock.Now, SessionTimeouts{Idle: 30 * time.Minute, Max: 2 * time.Hour})
}

func TestSessionsEndAfterIdleAndAbsoluteTimeouts(t *testing.T) {
	f := newFixture(t)
	s := newSessionStore(t, f)
	ctx := context.Background()
	p, key := f.issue("acme", KeyParams{})

	token, sess, err := s.Create(ctx, p, key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, token)
	if err != nil {
		t.Fatalf("fresh session: %v", err)
	}
	if got.Key != key || got.CSRF != sess.CSRF || got.KeyID != p.KeyID || got.TenantID != p.TenantID {
		t.Fatalf("session read back as %+v, created as %+v", got, sess)
	}
	if got.CSRF == "" || got.CSRF == token {
		t.Fatalf("CSRF token %q must be its own random value", got.CSRF)
	}

	t.Run("use keeps it alive until the absolute end", func(t *testing.T) {
		for range 3 { // 3 × 29 min of activity: past the idle timeout in total
			f.clock.Advance(29 * time.Minute)
			if _, err := s.Get(ctx, token); err != nil {
				t.Fatalf("used every 29 minutes, the session ended: %v", err)
			}
		}
		f.clock.Advance(34 * time.Minute) // 2h01m after sign-in
		if _, err := s.Get(ctx, token); !errors.Is(err, ErrNoSession) {
			t.Fatalf("past the absolute timeout: %v, want ErrNoSession", err)
		}
	})

	t.Run("idle ends it", func(t *testing.T) {
		token, _, err := s.Create(ctx, p, key)
		if err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(31 * time.Minute)
		if _, err := s.Get(ctx, token); !errors.Is(err, ErrNoSession) {
			t.Fatalf("after 31 idle minutes: %v, want ErrNoSession", err)
		}
	})

	t.Run("sign-out ends it", func(t *testing.T) {
		token, _, err := s.Create(ctx, p, key)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, token); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, token); !errors.Is(err, ErrNoSession) {
			t.Fatalf("after Delete: %v, want ErrNoSession", err)
		}
	})

	t.Run("only hashes and sealed keys are stored", func(t *testing.T) {
		token, _, err := s.Create(ctx, p, key)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := f.pool.QueryRow(ctx, `SELECT count(*) FROM console_sessions
			WHERE token_hash = $1 OR position($2::bytea IN key_sealed) > 0 OR position($3::bytea IN token_hash) > 0`,
			[]byte(token), []byte(key), []byte(token)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatal("a session row holds the token or the key in clear")
		}
		if _, err := s.Get(ctx, "WRONG"+token[5:]); !errors.Is(err, ErrNoSession) {
			t.Fatalf("a made-up token: %v", err)
		}
	})
}
