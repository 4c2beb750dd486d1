package auth

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/pgtest"

	"github.com/poolgate/poolgate/internal/fakeclock"
)

type fixture struct {
	t     *testing.T
	pool  *pgxpool.Pool
	clock *fakeclock.Clock
	store *Store
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	pool := pgtest.New(t)
	clock := fakeclock.New(time.Now().UTC().Truncate(time.Microsecond))
	return &fixture{t: t, pool: pool, clock: clock, store: NewStore(pool, clock.Now)}
}

// issue makes a key in tenant and returns its principal and secret.
func (f *fixture) issue(tenantName string, p KeyParams) (Principal, string) {
	f.t.Helper()
	if p.Name == "" {
		p.Name = "test"
	}
	_, secret, err := f.store.Bootstrap(context.Background(), tenantName, p)
	if err != nil {
		f.t.Fatal(err)
	}
	pr, err := f.store.Verify(context.Background(), secret)
	if err != nil {
		f.t.Fatal(err)
	}
	return pr, secret
}

func (f *fixture) startCache() *Cache {
	f.t.Helper()
	c := NewCache(f.store, slog.New(slog.DiscardHandler), time.Minute)
	if err := c.Start(context.Background()); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Stop(context.Background()) })
	waitFor(f.t, "the cache to listen", 5*time.Second, func() bool { return c.Stats().Listening })
	return c
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("waited %s for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func TestCacheCachesOnlyWhileListening(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, secret := f.issue("acme", KeyParams{})
	ctx := context.Background()

	c := NewCache(f.store, slog.New(slog.DiscardHandler), time.Minute)
	for range 2 {
		if _, err := c.Verify(ctx, secret); err != nil {
			t.Fatal(err)
		}
	}
	if s := c.Stats(); s.Hits != 0 || s.Entries != 0 {
		t.Fatalf("a cache that is not listening cached: %+v", s)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the cache to listen", 5*time.Second, func() bool { return c.Stats().Listening })
	for range 3 {
		if _, err := c.Verify(ctx, secret); err != nil {
			t.Fatal(err)
		}
	}
	if s := c.Stats(); s.Hits != 2 || s.Entries != 1 {
		t.Fatalf("listening cache: %+v; want 2 hits and 1 entry", s)
	}
	c.Stop(context.Background())
	if s := c.Stats(); s.Listening || s.Entries != 0 {
		t.Fatalf("stopped cache still caches: %+v", s)
	}
	c.Verify(ctx, secret)
	if s := c.Stats(); s.Hits != 2 {
		t.Fatalf("stopped cache answered from memory: %+v", s)
	}
	if _, err := c.Verify(ctx, "pgk_live_nonsense"); !errs.Is(err, "invalid_api_key") {
		t.Fatalf("malformed key: %v", err)
	}
}

func TestCacheDropsRevokedKeyWithinASecond(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	admin, _ := f.issue("acme", KeyParams{})
	victim, secret := f.issue("acme", KeyParams{Scopes: []string{ScopeJobsRead}})
	c := f.startCache()
	ctx := context.Background()
	for range 2 {
		if _, err := c.Verify(ctx, secret); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.store.Revoke(ctx, admin, victim.KeyID); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, "the revoked key to fail", time.Second, func() bool {
		_, err := c.Verify(ctx, secret)
		return errs.Is(err, "invalid_api_key")
	})
	t.Logf("revocation seen after %s", took)
	if s := c.Stats(); s.Evictions != 1 {
		t.Errorf("stats %+v; want the notification to have evicted the key", s)
	}
}

func TestCacheJudgesTimeOnEveryRequest(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	admin, _ := f.issue("acme", KeyParams{})
	exp := f.clock.Now().Add(10 * time.Second)
	_, expiring := f.issue("acme", KeyParams{ExpiresAt: &exp})
	rolled, rolledSecret := f.issue("acme", KeyParams{Name: "rolled"})
	c := f.startCache()
	ctx := context.Background()

	if _, _, err := f.store.Roll(ctx, admin, rolled.KeyID, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// Wait for the roll's notification, lest it evict what is cached next.
	waitFor(t, "the roll's notification", time.Second, func() bool { return c.Stats().Notifications == 1 })
	for _, s := range []string{expiring, rolledSecret, expiring, rolledSecret} {
		if _, err := c.Verify(ctx, s); err != nil {
			t.Fatalf("before expiry and grace: %v", err)
		}
	}
	hits := c.Stats().Hits
	f.clock.Advance(6 * time.Second)
	if _, err := c.Verify(ctx, rolledSecret); !errs.Is(err, "invalid_api_key") {
		t.Errorf("rolled key after its grace: %v; want invalid_api_key", err)
	}
	if _, err := c.Verify(ctx, expiring); err != nil {
		t.Errorf("key before its expiry: %v", err)
	}
	f.clock.Advance(5 * time.Second)
	if _, err := c.Verify(ctx, expiring); !errs.Is(err, "expired_api_key") {
		t.Errorf("key after its expiry: %v; want expired_api_key", err)
	}
	if got := c.Stats().Hits - hits; got != 3 {
		t.Errorf("%d of 3 judgements came from the cache; the test proves nothing otherwise", got)
	}
}

func TestCacheReconnectsAfterLosingItsListener(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	admin, _ := f.issue("acme", KeyParams{})
	victim, secret := f.issue("acme", KeyParams{Name: "victim"})
	c := f.startCache()
	ctx := context.Background()

	if _, err := f.pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, ListenerApplicationName); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the listener to notice and come back", 10*time.Second, func() bool {
		s := c.Stats()
		return s.Disconnects >= 1 && s.Listening
	})
	for range 2 {
		if _, err := c.Verify(ctx, secret); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.store.Revoke(ctx, admin, victim.KeyID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the revoked key to fail after a reconnect", time.Second, func() bool {
		_, err := c.Verify(ctx, secret)
		return errs.Is(err, "invalid_api_key")
	})
}
