package scheduler_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/scheduler"
)

// TestPlacementIsUniform: with every account free, placements spread
// evenly. Producers keep at most a few jobs in flight so that no account
// ever fills up, which would bias the counts for a reason other than the
// random choice.
func TestPlacementIsUniform(t *testing.T) {
	t.Parallel()
	w := newWorld(t, simWith(func(c *sim.Config) { c.JobDuration, c.Jitter = 0, 0 }))
	const (
		nAccounts = 5
		producers = 6
		perProd   = 50
	)
	emails := w.addAccounts(nAccounts, producers+1) // never full: at most `producers` jobs in flight
	s := w.replica(nil)

	var wg sync.WaitGroup
	for range producers {
		wg.Go(func() {
			for range perProd {
				j, _, err := s.Create(context.Background(), w.scope, video("a cat"), nil)
				if err != nil {
					t.Errorf("create: %v", err)
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				j, err = s.Wait(ctx, w.scope, j.ID)
				cancel()
				if err != nil || j.State != scheduler.StateSucceeded {
					t.Errorf("job %s: %s, %v", j.ID, j.State, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	st := w.settled()

	for _, e := range emails {
		if peak := st.Accounts[e].Peak; peak > producers {
			t.Errorf("%s ran %d jobs at once; at most %d were in flight", e, peak, producers)
		}
	}
	// With five free accounts placement reads the whole pool, so each pick
	// is exactly uniform.
	w.checkUniform(emails, producers*perProd)
}

// checkUniform fails unless the jobs placed on the five emails pass a
// chi-square test of uniformity. 23.51 is the p = 0.0001 critical value
// with 4 degrees of freedom: a fair placement fails it once in 10,000
// runs, while a real bias, such as one account twice as likely, scores
// about 33.
func (w *world) checkUniform(emails []string, total int) {
	w.t.Helper()
	if len(emails) != 5 {
		w.t.Fatalf("checkUniform's critical value is for 5 accounts, got %d", len(emails))
	}
	rows, err := w.pool.Query(context.Background(), `SELECT account_email, count(*) FROM jobs GROUP BY 1`)
	if err != nil {
		w.t.Fatal(err)
	}
	counts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct {
		Email string
		N     int
	}])
	if err != nil {
		w.t.Fatal(err)
	}
	per := map[string]int{}
	for _, c := range counts {
		per[c.Email] = c.N
	}
	expected := float64(total) / float64(len(emails))
	chi2 := 0.0
	for _, e := range emails {
		d := float64(per[e]) - expected
		chi2 += d * d / expected
	}
	w.t.Logf("placements per account %v, chi-square %.2f", per, chi2)
	if chi2 > 23.51 {
		w.t.Errorf("placements %v are not uniform: chi-square %.2f > 23.51 (df=4)", per, chi2)
	}
}

// TestLowerMaxJobs: lowering maxJobs below the running count preempts
// nothing; new placements wait until the account is under the new limit.
func TestLowerMaxJobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, simWith(func(c *sim.Config) { c.JobDuration, c.Jitter = 1500*time.Millisecond, 0 }))
	w.addAccount(w.scope, "a@x.io", 3)
	s := w.replica(nil)

	var running []string
	for range 3 {
		running = append(running, w.create(s, video("a cat")).ID)
	}
	for _, id := range running {
		w.waitFor(s, id, "running", inState(scheduler.StateRunning), 5*time.Second)
	}
	one := 1
	if _, err := w.accounts.Update(ctx, w.scope, "a@x.io", accounts.Patch{MaxJobs: &one}); err != nil {
		t.Fatal(err)
	}
	w.maxJobs["a@x.io"] = 3 // the upstream legitimately saw 3 before the change
	if n := w.count(`SELECT count(*) FROM jobs WHERE state = 'running'`); n != 3 {
		t.Fatalf("%d jobs running when maxJobs was lowered, want 3; the test needs longer jobs", n)
	}
	w.sim.SetConfig(simWith(func(c *sim.Config) { c.JobDuration, c.Jitter = 300*time.Millisecond, 0 }))

	var later []string
	for range 3 {
		later = append(later, w.create(s, video("a dog")).ID)
	}
	// Sample the upstream while the new jobs run: never more than one.
	var firstDone time.Time
	for _, id := range running {
		j := w.await(s, id, 5*time.Second)
		wantEnded(t, j, scheduler.StateSucceeded, "")
		if fin := *j.FinishedAt; fin.After(firstDone) {
			firstDone = fin
		}
	}
	peak := 0
	for _, id := range later {
		for !w.get(s, id).State.Terminal() {
			peak = max(peak, w.sim.Stats().Accounts["a@x.io"].Running)
			time.Sleep(5 * time.Millisecond)
		}
	}
	if peak > 1 {
		t.Errorf("upstream ran %d jobs at once after maxJobs was lowered to 1", peak)
	}
	// None of the new jobs started before the last of the old ones ended
	// (give or take the clock's millisecond rounding), and they ran one at
	// a time.
	rows, err := w.pool.Query(ctx, `SELECT started_at, finished_at FROM jobs WHERE id = ANY($1) ORDER BY started_at`, later)
	if err != nil {
		t.Fatal(err)
	}
	prevEnd := firstDone.Add(-5 * time.Millisecond)
	for rows.Next() {
		var start, end time.Time
		if err := rows.Scan(&start, &end); err != nil {
			t.Fatal(err)
		}
		if start.Before(prevEnd) {
			t.Errorf("a job started at %s, before the account's previous job ended at %s", start, prevEnd)
		}
		prevEnd = end.Add(-5 * time.Millisecond)
	}
	for _, id := range later {
		wantEnded(t, w.get(s, id), scheduler.StateSucceeded, "")
	}
	w.settled()
}

// TestDeleteAccountWithRunningJobs: the jobs finish tracking and end;
// nothing is freed twice.
func TestDeleteAccountWithRunningJobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, simWith(func(c *sim.Config) { c.JobDuration, c.Jitter = 1500*time.Millisecond, 0 }))
	w.addAccount(w.scope, "doomed@x.io", 3)
	w.addAccount(w.scope, "other@x.io", 2)
	s := w.replica(nil)
	var ids []string
	for range 3 {
		nj := video("a cat")
		nj.Email = "doomed@x.io"
		ids = append(ids, w.create(s, nj).ID)
	}
	for _, id := range ids {
		w.waitFor(s, id, "running", inState(scheduler.StateRunning), 5*time.Second)
	}
	if err := w.accounts.Delete(ctx, w.scope, "doomed@x.io"); err != nil {
		t.Fatal(err)
	}
	if n := w.count(`SELECT count(*) FROM jobs WHERE state = 'running'`); n == 0 {
		t.Fatal("the jobs ended before the account was deleted; the test needs longer jobs")
	}
	w.sim.SetConfig(fastSim())
	for range 4 {
		ids = append(ids, w.create(s, video("a dog")).ID)
	}
	for i, id := range ids {
		j := w.await(s, id, 10*time.Second)
		wantEnded(t, j, scheduler.StateSucceeded, "")
		if i >= 3 && *j.Email != "other@x.io" {
			t.Errorf("job queued after the delete ran on %s", *j.Email)
		}
	}
	w.settled()
	if n := w.count(`SELECT count(*) FROM account_slots WHERE held <> 0`); n != 0 {
		t.Errorf("%d accounts hold slots with nothing in flight", n)
	}
}
