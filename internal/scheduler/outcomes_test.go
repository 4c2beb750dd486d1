package scheduler_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/scheduler"
)

// TestOutcomes runs one job into each class of upstream answer and checks
// what happens to the job, to the account, and to the slot.
func TestOutcomes(t *testing.T) {
	t.Parallel()

	// firstSubmitFails starts the simulator refusing every submission as
	// tune says and returns it to normal once the first refusal is back,
	// so exactly one attempt fails. It reports the account that failed.
	firstSubmitFails := func(t *testing.T, tune func(*sim.Config)) (*world, *scheduler.Scheduler, func() string) {
		w := newWorld(t, simWith(tune))
		w.addAccounts(3, 2)
		var (
			once   sync.Once
			mu     sync.Mutex
			failed string
		)
		p := newProxy(w.upstream())
		p.submit = func(_ context.Context, a provider.Account, _ int64, forward func() (provider.Status, error)) (provider.Status, error) {
			st, err := forward()
			once.Do(func() {
				mu.Lock()
				failed = a.Email
				mu.Unlock()
				w.sim.SetConfig(fastSim())
			})
			return st, err
		}
		s := w.replica(func(c *scheduler.Config) { c.Provider = p })
		return w, s, func() string { mu.Lock(); defer mu.Unlock(); return failed }
	}

	t.Run("auth failure takes the account out and retries elsewhere", func(t *testing.T) {
		t.Parallel()
		w, s, failedOn := firstSubmitFails(t, func(c *sim.Config) { c.AuthFailureRate = 1 })
		j := w.await(s, w.create(s, video("a cat")).ID, 10*time.Second)

		wantEnded(t, j, scheduler.StateSucceeded, "")
		bad := failedOn()
		if j.Attempt != 2 || j.Email == nil || *j.Email == bad {
			t.Errorf("job ran attempt %d on %v; want attempt 2 on an account other than %s", j.Attempt, j.Email, bad)
		}
		a, err := w.accounts.Get(context.Background(), w.scope, bad)
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != accounts.StatusError || !strings.Contains(a.Reason, "simulated authentication failure") {
			t.Errorf("account %s: status %s, reason %q; want error with the upstream's reason", bad, a.Status, a.Reason)
		}
		w.settled()
	})

	t.Run("rate limit quarantines the account and retries elsewhere", func(t *testing.T) {
		t.Parallel()
		w, s, failedOn := firstSubmitFails(t, func(c *sim.Config) {
			c.RateLimitRate, c.RateLimitRetryAfter = 1, 90*time.Second
		})
		before := time.Now()
		j := w.await(s, w.create(s, video("a cat")).ID, 10*time.Second)
		after := time.Now()

		wantEnded(t, j, scheduler.StateSucceeded, "")
		bad := failedOn()
		if j.Attempt != 2 || j.Email == nil || *j.Email == bad {
			t.Errorf("job ran attempt %d on %v; want attempt 2 on an account other than %s", j.Attempt, j.Email, bad)
		}
		var until time.Time
		if err := w.pool.QueryRow(context.Background(),
			`SELECT quarantined_until FROM accounts WHERE email = $1`, bad).Scan(&until); err != nil {
			t.Fatalf("quarantined_until of %s: %v", bad, err)
		}
		if until.Before(before.Add(89*time.Second)) || until.After(after.Add(91*time.Second)) {
			t.Errorf("%s quarantined until %s, want about 90s (the upstream's Retry-After) after %s", bad, until, before)
		}
		if a, _ := w.accounts.Get(context.Background(), w.scope, bad); a.Status != accounts.StatusQuarantined ||
			a.QuarantineReason != accounts.QuarantineRateLimited {
			t.Errorf("rate-limited account %s has status %s (%q); want quarantined for rate_limited", bad, a.Status, a.QuarantineReason)
		}
		av, err := s.Available(context.Background(), w.scope)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range av.Available {
			if c.Email == bad {
				t.Errorf("quarantined account %s is listed as available", bad)
			}
		}
		w.settled()
	})

	t.Run("transient failures back off, then exhaust the attempts", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, simWith(func(c *sim.Config) { c.TransientRate = 1 }))
		w.addAccounts(2, 2)
		const base = 100 * time.Millisecond
		s := w.replica(func(c *scheduler.Config) { c.RetryBase, c.RetryMax = base, time.Second })
		nj := video("a cat")
		nj.MaxAttempts = 3
		j := w.await(s, w.create(s, nj).ID, 10*time.Second)

		wantEnded(t, j, scheduler.StateFailed, scheduler.CodeRetriesExceeded)
		if j.Attempt != 3 || !strings.Contains(j.Error.Message, "simulated service outage") {
			t.Errorf("attempt %d, message %q; want 3 attempts and the upstream's last reason", j.Attempt, j.Error.Message)
		}
		// Two backoffs of base and 2·base, each at least 75% of that.
		var took time.Duration
		w.pool.QueryRow(context.Background(), `SELECT finished_at - created_at FROM jobs WHERE id = $1`, j.ID).Scan(&took)
		if min := 3 * base * 3 / 4; took < min {
			t.Errorf("three attempts took %s; the backoffs alone should take at least %s", took, min)
		}
		st := w.settled()
		if got := st.Jobs[j.ID]; len(got) != 3 || got["1"] != 1 || got["2"] != 1 || got["3"] != 1 {
			t.Errorf("upstream saw submissions %v, want attempts 1, 2 and 3 once each", got)
		}
	})

	t.Run("moderated prompt fails with the upstream's reason", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, fastSim())
		emails := w.addAccounts(1, 2)
		s := w.replica(nil)
		j := w.await(s, w.create(s, video("please "+sim.ModerationTrigger)).ID, 10*time.Second)

		wantEnded(t, j, scheduler.StateFailed, scheduler.CodeInvalidInput)
		if j.Attempt != 1 || !strings.Contains(j.Error.Message, "moderation") {
			t.Errorf("attempt %d, message %q; want one attempt and the upstream's moderation message", j.Attempt, j.Error.Message)
		}
		if a, _ := w.accounts.Get(context.Background(), w.scope, emails[0]); a.Status != accounts.StatusActive {
			t.Errorf("a bad prompt changed the account's status to %s", a.Status)
		}
		w.settled()
	})

	t.Run("failed generation fails the job", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, simWith(func(c *sim.Config) { c.FailureRate = 1 }))
		w.addAccounts(2, 2)
		s := w.replica(nil)
		j := w.await(s, w.create(s, video("a cat")).ID, 10*time.Second)

		wantEnded(t, j, scheduler.StateFailed, scheduler.CodeUpstreamFailed)
		if j.Attempt != 1 || j.Error.Message != sim.FailureMessage {
			t.Errorf("attempt %d, message %q; want one attempt and %q", j.Attempt, j.Error.Message, sim.FailureMessage)
		}
		w.settled()
	})

	t.Run("permanent refusal fails the job without retry", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, fastSim())
		w.addAccounts(2, 2)
		p := newProxy(w.upstream())
		p.submit = func(context.Context, provider.Account, int64, func() (provider.Status, error)) (provider.Status, error) {
			return provider.Status{}, &provider.Error{Class: provider.ClassPermanent, Message: "model retired"}
		}
		s := w.replica(func(c *scheduler.Config) { c.Provider = p })
		j := w.await(s, w.create(s, video("a cat")).ID, 10*time.Second)

		wantEnded(t, j, scheduler.StateFailed, scheduler.CodeRejected)
		if j.Attempt != 1 || j.Error.Message != "model retired" || p.submits.Load() != 1 {
			t.Errorf("attempt %d, %d submits, message %q; want one attempt failed with the upstream's reason",
				j.Attempt, p.submits.Load(), j.Error.Message)
		}
		w.settled()
	})
}

// TestUnstorableResultFailsOnlyItsJob: an upstream result Postgres refuses
// (a NUL character in JSON) ends that job failed; the jobs whose endings
// were written in the same batch succeed, and no slot leaks.
func TestUnstorableResultFailsOnlyItsJob(t *testing.T) {
	t.Parallel()
	w := newWorld(t, simWith(func(c *sim.Config) { c.JobDuration, c.Jitter = 0, 0 }))
	w.addAccounts(2, 10)
	p := newProxy(w.upstream())
	p.submit = func(_ context.Context, _ provider.Account, n int64, forward func() (provider.Status, error)) (provider.Status, error) {
		st, err := forward()
		if err == nil && n == 1 {
			st.Result = json.RawMessage(`{"url":"a\u0000b"}`)
		}
		return st, err
	}
	ids := w.queueWithoutDispatch(12)
	w.replica(func(c *scheduler.Config) { c.Provider = p })
	w.waitTerminal(20 * time.Second)

	failed := 0
	reader := w.replica(func(c *scheduler.Config) { c.DispatchOff = true })
	for _, id := range ids {
		j := w.get(reader, id)
		switch j.State {
		case scheduler.StateSucceeded:
		case scheduler.StateFailed:
			failed++
			wantEnded(t, j, scheduler.StateFailed, scheduler.CodeUpstreamFailed)
		default:
			t.Errorf("job %s ended %s", id, j.State)
		}
	}
	if failed != 1 {
		t.Errorf("%d jobs failed, want exactly the one with the unstorable result", failed)
	}
	w.settled()
}
