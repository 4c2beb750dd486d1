package accounts_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/tenant"
)

// TestReleasesAndPlacementsNeverBlockEachOther: a slot release records a
// pending row and touches no account row, so it never waits for a
// placement, and a placement never has to skip an account because a
// release is in flight on it (placements skip locked rows, so that would
// bend "uniform among the accounts with a free slot"). The account's held
// slots count a release at once; the next holder of its lock (a
// placement, or FoldReleases) folds it exactly once.
func TestReleasesAndPlacementsNeverBlockEachOther(t *testing.T) {
	t.Parallel()
	w := newRefreshWorld(t)
	ctx := context.Background()
	a := w.slotAccount(t, "a@x.io", 2)
	pool := w.pool
	held := func() (held, running, pending int) {
		t.Helper()
		err := pool.QueryRow(ctx, `SELECT s.held, c.running, (SELECT count(*) FROM account_slot_releases)
			FROM account_slots s JOIN account_capacity c USING (tenant_id, id) WHERE c.id = $1`, a.ID).Scan(&held, &running, &pending)
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
	release := func(db dbx.DBTX, n int32) {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := accounts.ReleaseSlots(rctx, db, []accounts.Release{{Pool: w.scope, AccountID: a.ID, N: n}}); err != nil {
			t.Fatalf("release waited or failed: %v", err)
		}
	}
	lockFree := func(db dbx.DBTX) []accounts.Free {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		free, err := accounts.LockFree(rctx, db, w.scope, time.Now(), []int64{a.ID})
		if err != nil {
			t.Fatalf("placement's lock waited or failed: %v", err)
		}
		return free
	}
	// One of the two slots taken.
	inTx(func(tx pgx.Tx) error {
		return accounts.TakeSlots(ctx, tx, w.scope, lockFree(tx), []int32{1})
	})

	// While its job's release is in flight, a placement can still lock the
	// account and take its other slot.
	rtx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	release(rtx, 1)
	inTx(func(tx pgx.Tx) error {
		if free := lockFree(tx); len(free) != 1 || free[0].Slots != 1 {
			t.Errorf("a placement beside an uncommitted release sees %+v, want the account with 1 free slot", free)
		}
		return nil
	})
	if err := rtx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if h, r, p := held(); h != 0 || r != 1 || p != 1 {
		t.Fatalf("after the release: held %d, running %d, %d pending; want 0, 1, 1", h, r, p)
	}

	// The next placement sees both slots free and folds the release as it
	// takes them.
	inTx(func(tx pgx.Tx) error {
		free := lockFree(tx)
		if len(free) != 1 || free[0].Slots != 2 || free[0].Pending != 1 {
			t.Fatalf("placement sees %+v, want 2 free slots, 1 pending", free)
		}
		return accounts.TakeSlots(ctx, tx, w.scope, free, []int32{2})
	})
	if h, r, p := held(); h != 2 || r != 2 || p != 0 {
		t.Fatalf("after the placement: held %d, running %d, %d pending; want 2, 2, 0", h, r, p)
	}

	// A placement holds the account while a job ends: the release does not
	// wait for it.
	inTx(func(tx pgx.Tx) error {
		lockFree(tx)
		release(pool, 1)
		return nil
	})

	// A release no placement folds is left to FoldReleases.
	if h, r, p := held(); h != 1 || r != 2 || p != 1 {
		t.Fatalf("released while held: held %d, running %d, %d pending; want 1, 2, 1", h, r, p)
	}
	if err := accounts.FoldReleases(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if h, r, p := held(); h != 1 || r != 1 || p != 0 {
		t.Fatalf("after the fold: held %d, running %d, %d pending; want 1, 1, 0", h, r, p)
	}
	// Nothing pending: folding again changes nothing.
	if err := accounts.FoldReleases(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if h, r, _ := held(); h != 1 || r != 1 {
		t.Fatalf("a second fold moved the count: held %d, running %d", h, r)
	}
}

// TestFullAccountIsFreeOnceReleased: an account full by its stored running
// count whose job has ended is offered to placement, and its pool counts as
// having free capacity, from the release's commit on: no fold has to run
// first (folds only shorten account_slot_releases), and one that does
// changes nothing a placement sees.
func TestFullAccountIsFreeOnceReleased(t *testing.T) {
	t.Parallel()
	w := newRefreshWorld(t)
	ctx := context.Background()
	a := w.slotAccount(t, "full@x.io", 1)
	w.take(t, []int64{a.ID}, []int32{1})
	if ids, ps := w.window(t), w.pools(t); len(ids) != 0 || slices.Contains(ps, w.scope) {
		t.Fatalf("a full account is offered: window %v, pools %v", ids, ps)
	}
	if err := accounts.ReleaseSlots(ctx, w.pool, []accounts.Release{{Pool: w.scope, AccountID: a.ID, N: 1}}); err != nil {
		t.Fatal(err)
	}
	if ids, ps := w.window(t), w.pools(t); !slices.Equal(ids, []int64{a.ID}) || !slices.Contains(ps, w.scope) {
		t.Fatalf("an account whose job ended is not offered: window %v, pools %v", ids, ps)
	}
	if err := accounts.FoldReleases(ctx, w.pool); err != nil {
		t.Fatal(err)
	}
	if ids, ps := w.window(t), w.pools(t); !slices.Equal(ids, []int64{a.ID}) || !slices.Contains(ps, w.scope) {
		t.Fatalf("after the fold: window %v, pools %v", ids, ps)
	}
}

// take locks the accounts ids as a placement does and takes n[i] slots of
// ids[i].
func (w *refreshWorld) take(t *testing.T, ids []int64, n []int32) {
	t.Helper()
	ctx := context.Background()
	if err := pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		free, err := accounts.LockFree(ctx, tx, w.scope, time.Now(), ids)
		if err != nil {
			return err
		}
		if len(free) != len(ids) {
			t.Fatalf("locked %+v, want all of %v", free, ids)
		}
		return accounts.TakeSlots(ctx, tx, w.scope, free, n)
	}); err != nil {
		t.Fatal(err)
	}
}

// window is the placement window of the world's pool, as wide as it goes.
func (w *refreshWorld) window(t *testing.T) []int64 {
	t.Helper()
	ids, err := accounts.FreeWindow(context.Background(), w.pool, w.scope, time.Now(), accounts.Window{Min: 64, Max: 64}, "")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	return ids
}

// pools is what accounts.FreePools says.
func (w *refreshWorld) pools(t *testing.T) []tenant.Scope {
	t.Helper()
	ps, err := accounts.FreePools(context.Background(), w.pool)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// TestOrphanReleasesAreDropped: a release pending for an account that was
// deleted meanwhile can never be folded; DeleteOrphanReleases (a retention
// cleanup) drops it, and FoldReleases folds the other accounts' releases.
func TestOrphanReleasesAreDropped(t *testing.T) {
	t.Parallel()
	w := newRefreshWorld(t)
	ctx := context.Background()
	gone, kept := w.slotAccount(t, "gone@x.io", 20), w.slotAccount(t, "kept@x.io", 20)
	err := accounts.ReleaseSlots(ctx, w.pool, []accounts.Release{
		{Pool: w.scope, AccountID: gone.ID, N: 1}, {Pool: w.scope, AccountID: kept.ID, N: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.store.Delete(ctx, w.scope, "gone@x.io"); err != nil {
		t.Fatal(err)
	}
	// The kept account holds the two slots the release gives back.
	if _, err := w.pool.Exec(ctx, `UPDATE account_capacity SET running = 2 WHERE id = $1`, kept.ID); err != nil {
		t.Fatal(err)
	}
	if err := accounts.FoldReleases(ctx, w.pool); err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.DeleteOrphanReleases(ctx, w.pool, time.Now(), 1000); err != nil {
		t.Fatal(err)
	}
	var left, running int
	if err := w.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM account_slot_releases), (SELECT running FROM account_capacity WHERE id = $1)`,
		kept.ID).Scan(&left, &running); err != nil {
		t.Fatal(err)
	}
	if left != 0 || running != 0 {
		t.Errorf("after the fold: %d releases pending, kept account running %d; want 0 and 0", left, running)
	}
}

// TestReleaseBesideAPlacementIsOfferedNext: a job ends on a full account
// while a placement holds it, so the release commits after that placement
// read the account's pending releases and no fold can take it (folds skip
// held accounts). The next placement is still offered the account, with
// its free slot, and folds the release when it takes the slot, without
// waiting for the periodic fold. A full account beside it that has nothing
// pending stays out.
func TestReleaseBesideAPlacementIsOfferedNext(t *testing.T) {
	t.Parallel()
	w := newRefreshWorld(t)
	ctx := context.Background()
	freed, busy := w.slotAccount(t, "freed@x.io", 1), w.slotAccount(t, "busy@x.io", 1)
	ids := []int64{freed.ID, busy.ID}
	w.take(t, ids, []int32{1, 1})

	placement, err := w.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer placement.Rollback(ctx)
	if free, err := accounts.LockFree(ctx, placement, w.scope, time.Now(), ids); err != nil || len(free) != 0 {
		t.Fatalf("both accounts are full, yet the placement got %v (%v)", free, err)
	}
	if err := accounts.ReleaseSlots(ctx, w.pool, []accounts.Release{{Pool: w.scope, AccountID: freed.ID, N: 1}}); err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := accounts.FoldReleases(fctx, w.pool); err != nil {
		t.Fatalf("the fold waited for the placement or failed: %v", err)
	}
	if err := placement.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	if got := w.window(t); !slices.Equal(got, []int64{freed.ID}) {
		t.Fatalf("window %v, want the freed account %d alone", got, freed.ID)
	}
	if err := pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		free, err := accounts.LockFree(ctx, tx, w.scope, time.Now(), []int64{freed.ID})
		if err != nil {
			return err
		}
		if len(free) != 1 || free[0].Slots != 1 || free[0].Pending != 1 {
			t.Fatalf("the next placement locked %+v, want one slot, pending", free)
		}
		return accounts.TakeSlots(ctx, tx, w.scope, free, []int32{1})
	}); err != nil {
		t.Fatal(err)
	}
	if got := w.window(t); len(got) != 0 {
		t.Errorf("after the slot was taken again the window offers %v", got)
	}
	if _, running, err := accounts.Capacities(ctx, w.pool, w.scope, time.Now()); err != nil || running != 2 {
		t.Errorf("the pool runs %d jobs (%v), want 2", running, err)
	}
}

// slotAccount registers an account with fresh tokens and maxJobs slots.
func (w *refreshWorld) slotAccount(t *testing.T, email string, maxJobs int) accounts.Account {
	t.Helper()
	return w.registerAs(t, accounts.Registration{
		Cookie: sim.Cookie(email, time.Now().Add(time.Hour), time.Now().Add(90*24*time.Hour)), MaxJobs: &maxJobs})
}

// TestFreeWindowWidth: a window holds at least Min accounts (or all there
// are), and more, up to Max, only while their free slots fall short of
// Slots; it follows the rkey circle, so it is the same arc either way.
func TestFreeWindowWidth(t *testing.T) {
	t.Parallel()
	w := newRefreshWorld(t)
	ctx := context.Background()
	for _, email := range []string{"w1@x.io", "w2@x.io", "w3@x.io", "w4@x.io"} {
		w.slotAccount(t, email, 10)
	}
	width := func(win accounts.Window) int {
		t.Helper()
		ids, err := accounts.FreeWindow(ctx, w.pool, w.scope, time.Now(), win, "")
		if err != nil {
			t.Fatal(err)
		}
		return len(ids)
	}
	for _, c := range []struct {
		win  accounts.Window
		want int
	}{
		{accounts.Window{Min: 1, Max: 4, Slots: 10}, 1},  // one account's 10 slots suffice
		{accounts.Window{Min: 1, Max: 4, Slots: 25}, 3},  // 10 + 10 + 10 ≥ 25
		{accounts.Window{Min: 2, Max: 4, Slots: 5}, 2},   // Min wins
		{accounts.Window{Min: 1, Max: 2, Slots: 100}, 2}, // Max wins
		{accounts.Window{Min: 8, Max: 8}, 4},             // a small pool is read whole
	} {
		if got := width(c.win); got != c.want {
			t.Errorf("window %+v holds %d accounts, want %d", c.win, got, c.want)
		}
	}
}

// TestWindowPicksAreUniformOverTime: in a pool larger than the placement
// window, a pick uniform within a window that starts at a random point on
// the rkey circle is uniform among all accounts over time, because every
// account that takes a slot draws a fresh rkey (TakeSlots). Without the
// fresh key an account keeps the arc in front of it, and with it its
// chances: a simulation of this loop (48 accounts, windows of 8, 3,840
// picks) gives chi-square 156 or more, against a mean of 51 and at most 82
// in 400 runs with fresh keys (47 degrees of freedom; the fresh keys
// over-disperse the counts by ~9 %). 110 fails a fair loop about once in
// 100,000 runs.
func TestWindowPicksAreUniformOverTime(t *testing.T) {
	t.Parallel()
	w := newRefreshWorld(t)
	ctx := context.Background()
	const accountsN, picks = 48, 3840
	for i := range accountsN {
		w.slotAccount(t, fmt.Sprintf("u%02d@x.io", i), 100)
	}
	// One connection that does not wait for the WAL flush: 3,840 commits
	// would otherwise take most of a minute.
	conn, err := w.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET synchronous_commit = off`); err != nil {
		t.Fatal(err)
	}
	win := accounts.Window{Min: 8, Max: 8}
	count := map[int64]int{}
	for range picks {
		ids, err := accounts.FreeWindow(ctx, conn, w.scope, time.Now(), win, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != win.Min {
			t.Fatalf("window of %d accounts, want %d", len(ids), win.Min)
		}
		id := ids[rand.IntN(len(ids))]
		count[id]++
		// Take the slot and give it back: the pool stays all free, and
		// the next take of the account folds the release.
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			free, err := accounts.LockFree(ctx, tx, w.scope, time.Now(), []int64{id})
			if err != nil || len(free) != 1 {
				return fmt.Errorf("locking account %d: %v (%d locked)", id, err, len(free))
			}
			if err := accounts.TakeSlots(ctx, tx, w.scope, free, []int32{1}); err != nil {
				return err
			}
			return accounts.ReleaseSlots(ctx, tx, []accounts.Release{{Pool: w.scope, AccountID: id, N: 1}})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(count) != accountsN {
		t.Fatalf("%d of %d accounts were ever picked", len(count), accountsN)
	}
	expected, chi2 := float64(picks)/accountsN, 0.0
	for _, n := range count {
		d := float64(n) - expected
		chi2 += d * d / expected
	}
	t.Logf("picks per account %v, chi-square %.1f", slices.Sorted(maps.Values(count)), chi2)
	if chi2 > 110 {
		t.Errorf("picks are not uniform over time: chi-square %.1f > 110 (df=47)", chi2)
	}
}
