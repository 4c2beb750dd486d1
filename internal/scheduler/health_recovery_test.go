package scheduler_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/alerts"
	"github.com/poolgate/poolgate/internal/fakeclock"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/scheduler"
)

// These tests hold the account health rules to what the review of issue
// 13's first cut found missing: quarantines that end when probes are off,
// a breaker that rests a flapping account longer each time, and accounts
// in error whose lt_token lapsed while they waited for a probe.

// withAlerts wires the alert hook into hw's account store, as serve does.
func (hw *healthWorld) withAlerts() {
	hw.t.Helper()
	alerter, err := alerts.New(alerts.Config{Pool: hw.pool, Logger: testLogger(hw.t), Schedule: "@every 1h",
		Thresholds: []alerts.Threshold{{Name: "1d", Before: 24 * time.Hour}}, URL: "https://alerts.example/hook"})
	if err != nil {
		hw.t.Fatal(err)
	}
	hw.accounts.WithHooks(accounts.Hooks{OnRegister: adoptJobs.OnRegister, OnHealth: []accounts.HealthHook{alerter.OnHealth}})
}

// TestHealthProbesOffQuarantineEndsOnTheClock: with probes off, a breaker
// quarantine ends when its time has passed. The breaker counts again and
// trips again, each transition is an event (recovered included), and no
// quarantined alert stays open once the account is back.
func TestHealthProbesOffQuarantineEndsOnTheClock(t *testing.T) {
	t.Parallel()
	hw := newHealthWorld(t, accounts.HealthConfig{BreakerFailures: 2,
		BreakerQuarantine: 300 * time.Millisecond, BreakerQuarantineMax: 300 * time.Millisecond})
	hw.withAlerts()
	off := false
	if _, err := hw.accounts.Update(context.Background(), hw.scope, hw.bad, accounts.Patch{Probe: &off}); err != nil {
		t.Fatal(err)
	}
	hw.sim.SetFaults(hw.bad, sim.Faults{Submit: sim.FaultUnavailable})

	// Six attempts, two failures per trip: three trips, and between them
	// the quarantine ends on the clock and the account takes the job again.
	j := hw.await(hw.s, hw.pinned(6).ID, 20*time.Second)
	wantEnded(t, j, scheduler.StateFailed, scheduler.CodeRetriesExceeded)
	wantEvents(t, hw.events(), accounts.EventQuarantined, accounts.EventRecovered, accounts.EventQuarantined,
		accounts.EventRecovered, accounts.EventQuarantined)
	if msg := hw.account(hw.bad).Health[0].Message; strings.Contains(msg, "probe returns") {
		t.Errorf("quarantine message %q promises a probe for an account whose probes are off", msg)
	}

	// The last quarantine passes with no job to notice: the prober's round
	// says so, and the alerts it raised are resolved.
	hw.waitUntil("the last quarantine passed", func() bool {
		a := hw.account(hw.bad)
		return a.QuarantinedUntil != nil && time.Now().After(*a.QuarantinedUntil)
	}, 10*time.Second)
	hw.clock.Advance(time.Minute)
	hw.probe()
	wantEvents(t, hw.events(), accounts.EventQuarantined, accounts.EventRecovered, accounts.EventQuarantined,
		accounts.EventRecovered, accounts.EventQuarantined, accounts.EventRecovered)
	if a := hw.account(hw.bad); a.Status != accounts.StatusActive || a.QuarantinedUntil != nil {
		t.Errorf("after the sweep: status %s, quarantined until %v; want active with no quarantine", a.Status, a.QuarantinedUntil)
	}
	if n := hw.count(`SELECT count(*) FROM alerts WHERE kind = 'quarantined'`); n != 3 {
		t.Errorf("%d quarantined alerts raised, want 3 (one per trip)", n)
	}
	if n := hw.count(`SELECT count(*) FROM alerts WHERE kind = 'quarantined' AND resolved_at IS NULL`); n != 0 {
		t.Errorf("%d quarantined alerts still open after the account came back", n)
	}
	if n := hw.sim.Stats().Accounts[hw.bad].Probes; n != 0 {
		t.Errorf("an account with probes off was probed %d times", n)
	}
}

// TestHealthBreakerRestsLongerOnEachTrip: the probe (GET /me) passes while
// submissions still fail, so a bad account trips the breaker again after
// every recovery; each repeated trip quarantines it twice as long, up to
// the cap, until a job succeeds on it.
func TestHealthBreakerRestsLongerOnEachTrip(t *testing.T) {
	t.Parallel()
	hw := newHealthWorld(t, accounts.HealthConfig{BreakerFailures: 2,
		BreakerQuarantine: time.Hour, BreakerQuarantineMax: 4 * time.Hour})
	hw.sim.SetFaults(hw.bad, sim.Faults{Submit: sim.FaultUnavailable})
	// lengths lists each quarantine's length, oldest first.
	lengths := func() []time.Duration {
		var out []time.Duration
		for _, ev := range hw.account(hw.bad).Health {
			if ev.Kind == accounts.EventQuarantined {
				out = append([]time.Duration{ev.Until.Sub(ev.At)}, out...)
			}
		}
		return out
	}
	quarantines := func(n int) {
		t.Helper()
		hw.waitUntil("quarantine "+strconv.Itoa(n), func() bool { return len(lengths()) == n }, 10*time.Second)
	}
	// recover moves the prober past the quarantine and probes.
	recover := func() {
		t.Helper()
		a := hw.waitStatus(accounts.StatusQuarantined)
		hw.clock.Advance(a.QuarantinedUntil.Sub(hw.clock.Now()) + time.Minute)
		if n := hw.probe(); n != 1 {
			t.Fatalf("probe after the quarantine recovered %d accounts, want 1", n)
		}
	}

	job := hw.pinned(10) // 4 trips of 2 failures, then the success
	quarantines(1)
	recover()
	quarantines(2)
	recover()
	quarantines(3)
	recover()
	quarantines(4)
	want := []time.Duration{time.Hour, 2 * time.Hour, 4 * time.Hour, 4 * time.Hour}
	if got := lengths(); !equalDurations(got, want) {
		t.Fatalf("breaker quarantines %v, want %v (doubling up to the cap)", got, want)
	}

	// A job that succeeds on the account resets the growth.
	hw.sim.SetFaults(hw.bad, sim.Faults{})
	recover()
	wantEnded(t, hw.await(hw.s, job.ID, 10*time.Second), scheduler.StateSucceeded, "")
	hw.sim.SetFaults(hw.bad, sim.Faults{Submit: sim.FaultUnavailable})
	hw.pinned(5)
	quarantines(5)
	if got := lengths()[4]; got != time.Hour {
		t.Fatalf("first trip after a success quarantined for %s, want %s", got, time.Hour)
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestHealthErrorAccountWithLapsedTokenRecovers: an account put in error
// by a refusal that may be temporary waits for its probe; meanwhile its
// lt_token lapses (the refresh token is good for months). The refresher
// renews the token of such an account, and the probe that follows brings
// it back, instead of being refused for the stale token forever.
func TestHealthErrorAccountWithLapsedTokenRecovers(t *testing.T) {
	t.Parallel()
	// The simulator, the refresher and the prober share a fake clock; the
	// scheduler runs on real time.
	clock := fakeclock.New(time.Now())
	w := newWorldAt(t, fastSim(), clock.Now)
	w.accounts.WithHealth(accounts.HealthConfig{ProbeBase: time.Minute, ProbeMax: time.Hour})
	emails := w.addAccounts(2, 2)
	hw := &healthWorld{world: w, bad: emails[0], good: emails[1], clock: clock}
	hw.s = w.replica(nil)
	hw.prober = hw.newProber()
	refresher := accounts.NewRefresher(accounts.RefresherConfig{Store: w.accounts, Provider: w.upstream(),
		Logger: testLogger(t), Now: clock.Now, Lead: 10 * time.Minute})

	hw.sim.SetFaults(hw.bad, sim.Faults{Submit: sim.FaultUnauthorized})
	job := hw.pinned(5)
	if a := hw.waitStatus(accounts.StatusError); a.NextProbeAt == nil {
		t.Fatal("an account refused on submit has no probe planned")
	}
	hw.sim.SetFaults(hw.bad, sim.Faults{})

	// A day later every lt_token (24h) has lapsed upstream.
	clock.Advance(25 * time.Hour)
	for range 4 {
		if _, err := refresher.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		hw.probe()
		if hw.account(hw.bad).Status != accounts.StatusError {
			break
		}
		clock.Advance(2 * time.Hour) // past any probe backoff
	}
	a := hw.account(hw.bad)
	if a.Status != accounts.StatusActive {
		t.Fatalf("account in error with a lapsed lt_token: status %s (%s) after 4 refresh and probe rounds, want active",
			a.Status, a.Reason)
	}
	if n := hw.sim.Stats().Accounts[hw.bad].Refreshes; n != 1 {
		t.Errorf("%s refreshed %d times, want 1", hw.bad, n)
	}
	// The simulator finishes generations on its own clock.
	hw.waitUntil("the pinned job ends", func() bool {
		clock.Advance(time.Second)
		return hw.get(hw.s, job.ID).State == scheduler.StateSucceeded
	}, 10*time.Second)
	wantEvents(t, hw.events(), accounts.EventError, accounts.EventRecovered)
}

// TestHealthReregisteredAfterErrorIsProbed: a quarantined account that
// then lands in error with no probe planned (its refresh token refused)
// comes back once the operator registers fresh cookies: the quarantine's
// probe is planned again, and the probe returns it to rotation.
func TestHealthReregisteredAfterErrorIsProbed(t *testing.T) {
	t.Parallel()
	hw := newHealthWorld(t, accounts.HealthConfig{})
	hw.sim.SetFaults(hw.bad, sim.Faults{Submit: sim.FaultRateLimited, RetryAfter: time.Hour})
	job := hw.pinned(5)
	hw.waitStatus(accounts.StatusQuarantined)
	hw.sim.SetFaults(hw.bad, sim.Faults{})

	// Cookies whose refresh token the upstream refuses: the refresher
	// takes the account to error, for good (no probe can mend that).
	if _, err := hw.accounts.Register(context.Background(), hw.scope, accounts.Registration{
		Cookie: "lt_token=" + anonymousToken(time.Now().Add(time.Minute)) + "; lt_refresh_token=revoked-by-upstream", Email: hw.bad,
	}); err != nil {
		t.Fatal(err)
	}
	refresher := accounts.NewRefresher(accounts.RefresherConfig{Store: hw.accounts, Provider: hw.upstream(),
		Logger: slog.New(slog.DiscardHandler), Now: hw.clock.Now})
	if _, err := refresher.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a := hw.waitStatus(accounts.StatusError); a.NextProbeAt != nil {
		t.Fatalf("refused refresh token: next probe %v, want none", a.NextProbeAt)
	}

	// The operator registers fresh cookies while the quarantine runs.
	hw.addAccount(hw.scope, hw.bad, 2)
	if a := hw.account(hw.bad); a.Status != accounts.StatusQuarantined || a.NextProbeAt == nil {
		t.Fatalf("after fresh cookies: status %s, next probe %v; want quarantined with its probe planned", a.Status, a.NextProbeAt)
	}
	hw.clock.Advance(2 * time.Hour)
	if n := hw.probe(); n != 1 {
		t.Fatalf("probe after the quarantine recovered %d accounts, want 1", n)
	}
	wantEnded(t, hw.await(hw.s, job.ID, 10*time.Second), scheduler.StateSucceeded, "")
}

// anonymousToken is an lt_token that names no account: the simulator
// refuses a refresh that comes with it and an opaque refresh token.
func anonymousToken(exp time.Time) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"HS256"}`)) + "." +
		enc.EncodeToString(fmt.Appendf(nil, `{"exp":%d}`, exp.Unix())) + ".sig"
}
