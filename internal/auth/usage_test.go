package auth

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

func TestUsageBatchesAndFlushes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	p, _ := f.issue("acme", KeyParams{})
	u := NewUsage(f.pool, slog.New(slog.DiscardHandler), f.clock.Now, time.Hour)

	for range 3 {
		u.Request(p)
	}
	u.JobSubmitted(p.KeyID)
	u.JobSubmitted(p.KeyID)
	u.JobSubmitted("key_never_seen_here") // ignored: its tenant is unknown
	firstUse := f.clock.Now()
	var rows int
	f.pool.QueryRow(ctx, `SELECT count(*) FROM api_key_usage`).Scan(&rows)
	if rows != 0 {
		t.Fatal("usage was written before a flush")
	}
	if err := u.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := f.store.UsageReport(ctx, p, p.KeyID, 30)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 3 || r.Jobs != 2 || len(r.Days) != 1 || r.LastUsedAt == nil || !r.LastUsedAt.Equal(firstUse) {
		t.Fatalf("after one flush: %+v; want 3 requests, 2 jobs, one day, last used %s", r, firstUse)
	}

	// The next day's use is a new row; the totals add up.
	f.clock.Advance(24 * time.Hour)
	u.Request(p)
	if err := u.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	r, _ = f.store.UsageReport(ctx, p, p.KeyID, 30)
	if r.Requests != 4 || r.Jobs != 2 || len(r.Days) != 2 || r.Days[0].Requests != 1 || !r.Days[0].Day.After(r.Days[1].Day) {
		t.Fatalf("after the second day: %+v", r)
	}
	if s := u.Stats(); s.Flushes != 2 || s.Pending != 0 || s.FlushErrors != 0 {
		t.Errorf("stats %+v", s)
	}

	// A key whose tenant is gone does not sink the batch.
	gone, _ := f.issue("gone", KeyParams{})
	u.Request(gone)
	u.Request(p)
	if _, err := f.pool.Exec(ctx, `DELETE FROM tenants WHERE name = 'gone'`); err != nil {
		t.Fatal(err)
	}
	if err := u.Flush(ctx); err != nil {
		t.Fatalf("flush with a deleted key: %v", err)
	}

	// Stop flushes what is pending.
	if err := u.Start(ctx); err != nil {
		t.Fatal(err)
	}
	u.Request(p)
	u.Stop(context.Background())
	r, _ = f.store.UsageReport(ctx, p, p.KeyID, 30)
	if r.Requests != 6 {
		t.Errorf("requests %d after Stop, want 6", r.Requests)
	}
}

func TestUsageFlushesOnItsOwn(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	p, _ := f.issue("acme", KeyParams{})
	u := NewUsage(f.pool, slog.New(slog.DiscardHandler), time.Now, 20*time.Millisecond)
	if err := u.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer u.Stop(context.Background())
	u.Request(p)
	waitFor(t, "a periodic flush", 5*time.Second, func() bool {
		r, err := f.store.UsageReport(ctx, p, p.KeyID, 1)
		return err == nil && r.Requests == 1
	})
}

func TestNilUsageRecordsNothing(t *testing.T) {
	var u *Usage
	u.Request(Principal{KeyID: "key_x"})
	u.JobSubmitted("key_x")
	if err := u.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	u.Stop(context.Background())
}
