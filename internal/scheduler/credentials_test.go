package scheduler_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/scheduler"
)

// TestShortLivedTokensNeverReachA401: lt_tokens live 3s; the refresher
// renews them ahead of time while jobs keep flowing, so no submission is
// ever refused for a stale token, and an account whose refresh token has
// expired takes no job while the others carry the load.
func TestShortLivedTokensNeverReachA401(t *testing.T) {
	t.Parallel()
	cfg := fastSim()
	cfg.JobDuration, cfg.TokenLifetime = 150*time.Millisecond, 3*time.Second
	w := newWorld(t, cfg)
	for _, e := range []string{"a@x.io", "b@x.io"} {
		mj := 2
		_, err := w.accounts.Register(context.Background(), w.scope, accounts.Registration{
			Cookie: sim.Cookie(e, time.Now().Add(3*time.Second), time.Now().Add(24*time.Hour)), MaxJobs: &mj})
		if err != nil {
			t.Fatal(err)
		}
		w.maxJobs[e] = mj
	}
	mj := 2
	if _, err := w.accounts.Register(context.Background(), w.scope, accounts.Registration{
		Cookie: sim.Cookie("dead@x.io", time.Now().Add(time.Hour), time.Now().Add(-time.Minute)), MaxJobs: &mj}); err != nil {
		t.Fatal(err)
	}
	refresher := accounts.NewRefresher(accounts.RefresherConfig{
		Store: w.accounts, Provider: ltxstudio.New(w.simURL, nil), Logger: testLogger(t),
		Lead: 2 * time.Second, Interval: 200 * time.Millisecond,
	})
	refresher.Start(context.Background())
	defer refresher.Stop(context.Background())
	s := w.replica(nil)

	deadline := time.Now().Add(7 * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		if _, _, err := s.Create(context.Background(), w.scope, scheduler.NewJob{Type: "video", Params: json.RawMessage(`{}`)}, nil); err != nil {
			t.Fatal(err)
		}
		n++
		time.Sleep(100 * time.Millisecond)
	}
	w.waitTerminal(30 * time.Second)
	w.checkInvariants()

	var retried, succeeded int
	w.pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE attempt > 1), count(*) FILTER (WHERE state = 'succeeded') FROM jobs`).Scan(&retried, &succeeded)
	if succeeded != n || retried != 0 {
		t.Errorf("%d of %d jobs succeeded, %d needed a retry; want all on the first attempt", succeeded, n, retried)
	}
	st := w.sim.Stats()
	for _, e := range []string{"a@x.io", "b@x.io"} {
		if st.Accounts[e].Refreshes < 2 {
			t.Errorf("%s refreshed %d times in 7s of 3s tokens", e, st.Accounts[e].Refreshes)
		}
	}
	if st.Accounts["dead@x.io"].Submitted != 0 {
		t.Errorf("an account with an expired refresh token ran %d jobs", st.Accounts["dead@x.io"].Submitted)
	}
	var errored int
	w.pool.QueryRow(context.Background(), `SELECT count(*) FROM accounts WHERE status = 'error'`).Scan(&errored)
	if errored != 0 {
		t.Errorf("%d accounts went to error: a stale token reached the upstream", errored)
	}
}
