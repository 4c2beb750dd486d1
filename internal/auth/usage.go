package auth

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/loop"
)

// Usage counts requests and submitted jobs per key in memory and adds them
// to api_key_usage every few seconds with one statement, so recording use
// never puts a database write on a request's path. A replica that dies
// loses at most one interval of counts; Stop flushes what is pending.
//
// Its methods are safe on a nil *Usage, which records nothing.
type Usage struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	now    func() time.Time
	every  time.Duration

	mu      sync.Mutex
	pending map[usageKey]*usageCount
	tenants map[string]int64 // key id → tenant, of keys seen since start

	flushes, flushErrors atomic.Uint64

	loop loop.Every
}

type usageKey struct {
	tenantID int64
	keyID    string
	day      time.Time // midnight UTC
}

type usageCount struct {
	requests, jobs int64
	lastUsed       time.Time
}

// NewUsage returns a Usage that flushes every interval once started.
func NewUsage(pool *pgxpool.Pool, logger *slog.Logger, now func() time.Time, every time.Duration) *Usage {
	return &Usage{pool: pool, logger: logger, now: now, every: every,
		pending: map[usageKey]*usageCount{}, tenants: map[string]int64{}}
}

// Request records one authenticated request of p's key.
func (u *Usage) Request(p Principal) {
	if u == nil || p.KeyID == "" {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.tenants[p.KeyID] = p.TenantID
	u.addLocked(p.TenantID, p.KeyID, 1, 0)
}

// JobSubmitted records that key keyID submitted a job. The key's tenant is
// known from the request that submitted it (Request comes first, in the
// authentication middleware); a key this replica has not seen is ignored.
func (u *Usage) JobSubmitted(keyID string) {
	if u == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if tenantID, ok := u.tenants[keyID]; ok {
		u.addLocked(tenantID, keyID, 0, 1)
	}
}

func (u *Usage) addLocked(tenantID int64, keyID string, requests, jobs int64) {
	now := u.now()
	k := usageKey{tenantID: tenantID, keyID: keyID, day: dayOf(now)}
	c := u.pending[k]
	if c == nil {
		c = &usageCount{}
		u.pending[k] = c
	}
	c.requests += requests
	c.jobs += jobs
	if now.After(c.lastUsed) {
		c.lastUsed = now
	}
}

// usageUpsert adds a batch of counts. Keys that no longer exist (their
// tenant was deleted) are skipped rather than failing the batch. Rows are
// written in key order so that replicas flushing at once cannot deadlock.
const usageUpsert = `
INSERT INTO api_key_usage AS a (tenant_id, key_id, day, requests, jobs, last_used_at)
SELECT b.tenant_id, b.key_id, b.day, b.requests, b.jobs, b.last_used_at
FROM unnest($1::bigint[], $2::text[], $3::date[], $4::bigint[], $5::bigint[], $6::timestamptz[])
     AS b(tenant_id, key_id, day, requests, jobs, last_used_at)
JOIN api_keys k ON k.tenant_id = b.tenant_id AND k.id = b.key_id
ORDER BY b.tenant_id, b.key_id, b.day
ON CONFLICT (tenant_id, key_id, day) DO UPDATE
SET requests     = a.requests + EXCLUDED.requests,
    jobs         = a.jobs + EXCLUDED.jobs,
    last_used_at = GREATEST(a.last_used_at, EXCLUDED.last_used_at)`

// Flush writes what is pending. On failure the counts are kept for the
// next flush.
func (u *Usage) Flush(ctx context.Context) error {
	if u == nil {
		return nil
	}
	u.mu.Lock()
	batch := u.pending
	u.pending = map[usageKey]*usageCount{}
	u.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	n := len(batch)
	var (
		tenants        = make([]int64, 0, n)
		keys           = make([]string, 0, n)
		days           = make([]time.Time, 0, n)
		requests, jobs = make([]int64, 0, n), make([]int64, 0, n)
		last           = make([]time.Time, 0, n)
	)
	for k, c := range batch {
		tenants, keys, days = append(tenants, k.tenantID), append(keys, k.keyID), append(days, k.day)
		requests, jobs, last = append(requests, c.requests), append(jobs, c.jobs), append(last, c.lastUsed)
	}
	if _, err := u.pool.Exec(ctx, usageUpsert, tenants, keys, days, requests, jobs, last); err != nil {
		u.flushErrors.Add(1)
		u.putBack(batch)
		return fmt.Errorf("flush key usage: %w", err)
	}
	u.flushes.Add(1)
	return nil
}

func (u *Usage) putBack(batch map[usageKey]*usageCount) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for k, c := range batch {
		if p := u.pending[k]; p != nil {
			p.requests += c.requests
			p.jobs += c.jobs
			if c.lastUsed.After(p.lastUsed) {
				p.lastUsed = c.lastUsed
			}
			continue
		}
		u.pending[k] = c
	}
}

// Start flushes every interval in the background until Stop; a failed
// flush keeps its counts for the next one.
func (u *Usage) Start(ctx context.Context) error {
	if u.every <= 0 {
		return fmt.Errorf("usage flush interval must be positive, not %s", u.every)
	}
	return u.loop.Start(ctx, u.every, u.logger, "key usage: flush failed; retrying next interval", u.Flush)
}

// Stop stops the flushes and then flushes what is pending, the counts of
// requests drained at shutdown included. That last flush gets 5 s of its
// own even when ctx has ended, since its counts exist nowhere else.
func (u *Usage) Stop(ctx context.Context) {
	if u == nil {
		return
	}
	u.loop.Stop(ctx)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := u.Flush(fctx); err != nil {
		u.logger.Error("key usage: final flush failed; these counts are lost", "err", err)
	}
}

// UsageStats are counters for metrics.
type UsageStats struct {
	Flushes, FlushErrors uint64
	Pending              int
}

// Stats returns the flush counters and how many (key, day) counts wait.
func (u *Usage) Stats() UsageStats {
	u.mu.Lock()
	n := len(u.pending)
	u.mu.Unlock()
	return UsageStats{Flushes: u.flushes.Load(), FlushErrors: u.flushErrors.Load(), Pending: n}
}
