package accounts_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/provider/sim"
)

// TestReleaseNeverWaitsForAPlacement: a slot release meets an account a
// placement holds; it leaves the release pending instead of waiting, the
// account's held slots count it at once, and the next holder of the lock
// (a placement, or FoldReleases) folds it exactly once.
func TestReleaseNeverWaitsForAPlacement(t *testing.T) {
	t.Parallel()
	w := newRefreshWorld(t)
	ctx := context.Background()
	two := 2
	a, err := w.store.Register(ctx, w.scope, accounts.Registration{
		Cookie: sim.Cookie("a@x.io", time.Now().Add(time.Hour), time.Now().Add(90*24*time.Hour)), MaxJobs: &two})
	if err != nil {
		t.Fatal(err)
	}
	pool := w.pool
	held := func() (held, running, pending int) {
		t.Helper()
		err := pool.QueryRow(ctx, `SELECT s.held, a.running, (SELECT count(*) FROM account_slot_releases)
			FROM account_slots s JOIN accounts a USING (tenant_id, id) WHERE a.id = $1`, a.ID).Scan(&held, &running, &pending)
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	inTx := func(f func(tx pgx.Tx) error) {
		t.Helper()
		if err := pgx.BeginFunc(ctx, pool, f); err != nil {
			t.Fatal(err)
		}
	}
	release := func(n int32, wantPending int) {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		pending, err := accounts.ReleaseSlots(rctx, pool, []accounts.Release{{TenantID: w.scope.TenantID, AccountID: a.ID, N: n}})
		if err != nil {
			t.Fatalf("release waited or failed: %v", err)
		}
		if pending != wantPending {
			t.Fatalf("release left %d pending, want %d", pending, wantPending)
		}
	}
	// Both slots taken.
	inTx(func(tx pgx.Tx) error {
		if _, err := accounts.LockFree(ctx, tx, w.scope, time.Now(), []int64{a.ID}); err != nil {
			return err
		}
		return accounts.TakeSlots(ctx, tx, w.scope, []int64{a.ID}, []int32{2})
	})

	// A placement holds the account while one job ends.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if free, err := accounts.LockFree(ctx, tx, w.scope, time.Now(), []int64{a.ID}); err != nil || len(free) != 0 {
		t.Fatalf("a full account offered %v (%v)", free, err)
	}
	release(1, 1)
	if h, r, p := held(); h != 1 || r != 2 || p != 1 {
		t.Fatalf("while held: held %d, running %d, %d pending; want 1, 2, 1", h, r, p)
	}
	// The holder sees the freed slot and folds the release as it takes it.
	free, err := accounts.LockFree(ctx, tx, w.scope, time.Now(), []int64{a.ID})
	if err != nil || len(free) != 1 || free[0].Slots != 1 || free[0].Pending != 1 {
		t.Fatalf("holder sees %+v (%v), want 1 free slot, 1 pending", free, err)
	}
	if err := accounts.TakeSlots(ctx, tx, w.scope, []int64{a.ID}, []int32{1}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if h, r, p := held(); h != 2 || r != 2 || p != 0 {
		t.Fatalf("after the placement: held %d, running %d, %d pending; want 2, 2, 0", h, r, p)
	}

	// A holder that takes nothing leaves the release to FoldReleases.
	inTx(func(tx pgx.Tx) error {
		if _, err := accounts.LockFree(ctx, tx, w.scope, time.Now(), []int64{a.ID}); err != nil {
			return err
		}
		release(2, 1)
		return nil
	})
	if h, r, p := held(); h != 0 || r != 2 || p != 1 {
		t.Fatalf("released while held: held %d, running %d, %d pending; want 0, 2, 1", h, r, p)
	}
	if err := accounts.FoldReleases(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if h, r, p := held(); h != 0 || r != 0 || p != 0 {
		t.Fatalf("after the fold: held %d, running %d, %d pending; want 0, 0, 0", h, r, p)
	}
	// Nothing pending: folding again changes nothing.
	if err := accounts.FoldReleases(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if h, r, _ := held(); h != 0 || r != 0 {
		t.Fatalf("a second fold moved the count: held %d, running %d", h, r)
	}
}
