package auth

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/poolgate/poolgate/internal/pubsub"
)

// Cache verifies keys like Store.Verify, but remembers what it read for a
// while so that most requests touch no database. It stays correct through
// revocation by listening on KeysChannel: Revoke and Roll notify in their
// transaction, and every replica's Cache drops the key as the notification
// arrives, well within a second. While it cannot listen (not started yet,
// connection lost) it caches nothing and reads the database every time:
// staleness is never traded for availability.
//
// Expiry and scheduled revocation (a rolled key's grace) are judged against
// the clock on every request, cached or not.
type Cache struct {
	store  *Store
	logger *slog.Logger
	ttl    time.Duration

	mu      sync.Mutex
	entries map[string]cacheEntry // by string(hash)
	byID    map[string]string     // key id → string(hash)
	// gen changes on every eviction, so a lookup that started before one
	// does not put back what the eviction removed.
	gen uint64

	listening                                           atomic.Bool
	hits, misses, evictions, disconnects, notifications atomic.Uint64

	shared bool             // revocations arrive through the replica's listener
	own    *pubsub.Listener // else through this one
}

type cacheEntry struct {
	rec   keyRecord
	until time.Time
}

const (
	// maxCacheEntries bounds memory; past it, new keys are verified uncached.
	maxCacheEntries = 100_000
)

// ListenerApplicationName names the listener's connection in
// pg_stat_activity.
const ListenerApplicationName = "poolgate-keys-listener"

// NewCache returns a Cache over store that keeps a verification for ttl; a
// ttl of 0 disables caching. Start begins listening.
func NewCache(store *Store, logger *slog.Logger, ttl time.Duration) *Cache {
	return &Cache{
		store: store, logger: logger, ttl: ttl,
		entries: map[string]cacheEntry{}, byID: map[string]string{},
	}
}

// Verify returns the principal a presented key speaks for, or one of the
// 401 errors.
func (c *Cache) Verify(ctx context.Context, secret string) (Principal, error) {
	if _, ok := ParseSecret(secret); !ok {
		return Principal{}, ErrInvalidKey
	}
	h := Hash(secret)
	if !c.listening.Load() {
		c.misses.Add(1)
		return c.store.Verify(ctx, secret)
	}
	hk := string(h)
	now := c.store.now()
	c.mu.Lock()
	e, ok := c.entries[hk]
	gen := c.gen
	c.mu.Unlock()
	if ok && now.Before(e.until) {
		c.hits.Add(1)
		return e.rec.judge(now)
	}
	c.misses.Add(1)
	rec, err := c.store.lookup(ctx, h)
	if err != nil {
		return Principal{}, err
	}
	c.remember(hk, rec, gen, now)
	return rec.judge(c.store.now())
}

func (c *Cache) remember(hk string, rec keyRecord, gen uint64, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen || !c.listening.Load() {
		return
	}
	if len(c.entries) >= maxCacheEntries {
		for k, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, k)
				delete(c.byID, e.rec.p.KeyID)
			}
		}
		if len(c.entries) >= maxCacheEntries {
			return
		}
	}
	c.entries[hk] = cacheEntry{rec: rec, until: now.Add(c.ttl)}
	c.byID[rec.p.KeyID] = hk
}

// evict forgets key id (a notification's payload).
func (c *Cache) evict(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if hk, ok := c.byID[id]; ok {
		delete(c.entries, hk)
		delete(c.byID, id)
		c.evictions.Add(1)
	}
}

// setListening turns caching on or off; either way it starts empty, since
// notifications may have been missed while it was off.
func (c *Cache) setListening(on bool) {
	if !on {
		c.listening.Store(false)
	}
	c.mu.Lock()
	c.gen++
	clear(c.entries)
	clear(c.byID)
	c.mu.Unlock()
	if on {
		c.listening.Store(true)
	}
}

// Listen makes the cache follow revocations through l, the replica's
// shared listener (call before l starts). A cache that is not given one
// opens its own connection in Start.
func (c *Cache) Listen(l *pubsub.Listener) {
	c.shared = true
	l.Subscribe(KeysChannel, pubsub.Subscriber{Notify: c.notified, State: c.stateChanged})
}

func (c *Cache) notified(id string) {
	c.notifications.Add(1)
	c.evict(id)
}

func (c *Cache) stateChanged(up bool) {
	if !up && c.listening.Load() {
		c.disconnects.Add(1)
		c.logger.Warn("api key cache: not listening for revocations; verifying every request against the database")
	}
	c.setListening(up)
}

// Start begins caching once revocations are listened to: through the
// shared listener given to Listen, or else a connection of its own. It
// returns at once.
func (c *Cache) Start(ctx context.Context) error {
	if c.ttl <= 0 || c.shared {
		return nil
	}
	c.own = pubsub.New(pubsub.Dial(c.store.pool.Config().ConnString(), ListenerApplicationName), c.logger)
	c.own.Subscribe(KeysChannel, pubsub.Subscriber{Notify: c.notified, State: c.stateChanged})
	return c.own.Start(ctx)
}

// Stop ends its own listening, if it has one; the cache stops caching.
func (c *Cache) Stop(ctx context.Context) {
	if c.own != nil {
		c.own.Stop(ctx)
	}
	c.setListening(false)
}

// CacheStats are counters for metrics.
type CacheStats struct {
	Hits, Misses, Evictions, Disconnects, Notifications uint64
	Entries                                             int
	Listening                                           bool
}

// Stats returns the cache's counters.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	n := len(c.entries)
	c.mu.Unlock()
	return CacheStats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), Evictions: c.evictions.Load(),
		Disconnects: c.disconnects.Load(), Notifications: c.notifications.Load(),
		Entries: n, Listening: c.listening.Load(),
	}
}
