package scheduler_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/alerts"
	"github.com/poolgate/poolgate/internal/fakeclock"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/scheduler"
)

// healthWorld is a world with one account the test breaks ("bad") and one
// that keeps working ("good"), a replica, and a prober on a fake clock
// that starts at the real time (the scheduler and the simulator run on
// real time; only the prober's view of "past the quarantine" is moved).
type healthWorld struct {
	*world
	s         *scheduler.Scheduler
	clock     *fakeclock.Clock
	prober    *accounts.Prober
	bad, good string
}

func newHealthWorld(t *testing.T, h accounts.HealthConfig) *healthWorld {
	w := newWorld(t, fastSim())
	w.accounts.WithHealth(h)
	emails := w.addAccounts(2, 2)
	hw := &healthWorld{world: w, bad: emails[0], good: emails[1], clock: fakeclock.New(time.Now())}
	hw.s = w.replica(nil)
	hw.prober = hw.newProber()
	return hw
}

func (hw *healthWorld) newProber() *accounts.Prober {
	return accounts.NewProber(accounts.ProberConfig{Store: hw.accounts, Provider: hw.upstream(),
		Logger: testLogger(hw.t), Now: hw.clock.Now})
}

// pinned queues a job that may run on the bad account only.
func (hw *healthWorld) pinned(attempts int) scheduler.Job {
	nj := video("pinned")
	nj.Email, nj.MaxAttempts = hw.bad, attempts
	return hw.create(hw.s, nj)
}

func (hw *healthWorld) account(email string) accounts.Account {
	hw.t.Helper()
	a, err := hw.accounts.Get(context.Background(), hw.scope, email)
	if err != nil {
		hw.t.Fatalf("get %s: %v", email, err)
	}
	return a
}

// waitStatus waits until the bad account shows status st.
func (hw *healthWorld) waitStatus(st accounts.Status) accounts.Account {
	hw.t.Helper()
	var a accounts.Account
	hw.waitUntil("account "+hw.bad+" "+string(st), func() bool {
		a = hw.account(hw.bad)
		return a.Status == st
	}, 10*time.Second)
	return a
}

// probe runs one probe round at the fake clock's time and returns how
// many accounts it brought back.
func (hw *healthWorld) probe() int {
	hw.t.Helper()
	n, err := hw.prober.RunOnce(context.Background())
	if err != nil {
		hw.t.Fatalf("probe round: %v", err)
	}
	return n
}

func (hw *healthWorld) probes() int { return hw.sim.Stats().Accounts[hw.bad].Probes }

// events lists the kinds of the bad account's health events, oldest first.
func (hw *healthWorld) events() []accounts.EventKind {
	hist := hw.account(hw.bad).Health
	out := make([]accounts.EventKind, len(hist))
	for i, ev := range hist {
		out[len(hist)-1-i] = ev.Kind
	}
	return out
}

func wantEvents(t *testing.T, got []accounts.EventKind, want ...accounts.EventKind) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("health events %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("health events %v, want %v", got, want)
		}
	}
}

// runsElsewhere runs n unpinned jobs to the end and fails if any of them
// ran on the bad account.
func (hw *healthWorld) runsElsewhere(n int) {
	hw.t.Helper()
	for range n {
		j := hw.await(hw.s, hw.create(hw.s, video("meanwhile")).ID, 10*time.Second)
		wantEnded(hw.t, j, scheduler.StateSucceeded, "")
		if *j.Email == hw.bad {
			hw.t.Fatalf("job %s ran on %s while it was out of rotation", j.ID, hw.bad)
		}
	}
}

func TestHealthRateLimitQuarantineEndsWithProbe(t *testing.T) {
	t.Parallel()
	hw := newHealthWorld(t, accounts.HealthConfig{})
	hw.sim.SetFaults(hw.bad, sim.Faults{Submit: sim.FaultRateLimited, RetryAfter: 90 * time.Second})
	before := time.Now()
	job := hw.pinned(5)

	a := hw.waitStatus(accounts.StatusQuarantined)
	if a.QuarantineReason != accounts.QuarantineRateLimited || a.StatusCode != accounts.QuarantineRateLimited {
		t.Errorf("quarantine reason %q (status code %q), want rate_limited", a.QuarantineReason, a.StatusCode)
	}
	if a.QuarantinedUntil.Before(before.Add(89*time.Second)) || a.QuarantinedUntil.After(time.Now().Add(91*time.Second)) {
		t.Errorf("quarantined until %s, want the upstream's Retry-After (90s) after %s", a.QuarantinedUntil, before)
	}
	hw.sim.SetFaults(hw.bad, sim.Faults{}) // the upstream would take jobs again; only the probe may say so

	// Meanwhile every job runs on the other account, the pinned one waits,
	// and nobody probes before the quarantine's end.
	hw.runsElsewhere(6)
	if n := hw.probe(); n != 0 || hw.probes() != 0 {
		t.Fatalf("probe round before the quarantine ended probed %d times, recovered %d", hw.probes(), n)
	}
	// Let the quarantine pass for the scheduler too (its clock is the real
	// one): until the probe, the account stays out all the same.
	if _, err := hw.pool.Exec(context.Background(), `UPDATE accounts SET quarantined_until = now() - interval '1 minute',
		probe_at = now() - interval '1 minute' WHERE email = $1`, hw.bad); err != nil {
		t.Fatal(err)
	}
	hw.clock.Advance(2 * time.Minute) // and for the prober
	hw.runsElsewhere(4)
	if st := hw.get(hw.s, job.ID).State; st != scheduler.StateQueued {
		t.Fatalf("pinned job is %s while its account is quarantined, want queued", st)
	}
	if hw.sim.Stats().Accounts[hw.bad].Submitted != 0 {
		t.Fatalf("the upstream created generations on %s while it was quarantined", hw.bad)
	}

	if n := hw.probe(); n != 1 || hw.probes() != 1 {
		t.Fatalf("probe round after the quarantine: recovered %d with %d probes, want 1 and 1", n, hw.probes())
	}
	if a := hw.account(hw.bad); a.Status != accounts.StatusActive || a.QuarantinedUntil != nil {
		t.Fatalf("after a successful probe: status %s, quarantined until %v", a.Status, a.QuarantinedUntil)
	}
	j := hw.await(hw.s, job.ID, 10*time.Second)
	wantEnded(t, j, scheduler.StateSucceeded, "")
	wantEvents(t, hw.events(), accounts.EventQuarantined, accounts.EventRecovered)
	hw.settled()
}

func TestHealthDailyQuotaQuarantinesUntilReset(t *testing.T) {
	t.Parallel()
	hw := newHealthWorld(t, accounts.HealthConfig{})
	reset := time.Now().Add(3 * time.Hour).Truncate(time.Second)
	hw.sim.SetFaults(hw.bad, sim.Faults{Submit: sim.FaultDailyQuota, QuotaReset: reset})
	job := hw.pinned(5)

	a := hw.waitStatus(accounts.StatusQuarantined)
	if a.QuarantineReason != accounts.QuarantineDailyQuota {
		t.Errorf("quarantine reason %q, want daily_quota", a.QuarantineReason)
	}
	if d := a.QuarantinedUntil.Sub(reset); d < -time.Second || d > time.Second {
		t.Errorf("quarantined until %s, want the quota's reset %s", a.QuarantinedUntil, reset)
	}
	hw.runsElsewhere(3)
	hw.clock.Advance(2*time.Hour + 59*time.Minute)
	if hw.probe(); hw.probes() != 0 {
		t.Fatal("probed before the quota's reset")
	}
	hw.clock.Advance(2 * time.Minute)
	if n := hw.probe(); n != 1 {
		t.Fatalf("probe after the reset recovered %d accounts, want 1", n)
	}
	// The simulator's own clock has not reached the reset, so the quota
	// still refuses: the job is tried again and the account rests anew.
	hw.waitUntil("pinned job tried again", func() bool {
		return len(hw.account(hw.bad).Health) == 3
	}, 10*time.Second)
	wantEvents(t, hw.events(), accounts.EventQuarantined, accounts.EventRecovered, accounts.EventQuarantined)
	if st := hw.get(hw.s, job.ID).State; st != scheduler.StateQueued {
		t.Fatalf("pinned job is %s, want queued behind the quota", st)
	}
}

func TestHealthBreakerTripsAfterConsecutiveFailures(t *testing.T) {
	t.Parallel()
	hw := newHealthWorld(t, accounts.HealthConfig{BreakerFailures: 5, BreakerQuarantine: time.Hour})
	submits := func(id string) int {
		n := 0
		for _, c := range hw.sim.Stats().Jobs[id] {
			n += c
		}
		return n
	}

	// Four failures in a row, then a success: the success resets the count.
	hw.sim.SetFaults(hw.bad, sim.Faults{Submit: sim.FaultUnavailable})
	j := hw.await(hw.s, hw.pinned(4).ID, 10*time.Second)
	wantEnded(t, j, scheduler.StateFailed, scheduler.CodeRetriesExceeded)
	if a := hw.account(hw.bad); a.Status != accounts.StatusActive {
		t.Fatalf("after 4 failures (breaker at 5) the account is %s", a.Status)
	}
	hw.sim.SetFaults(hw.bad, sim.Faults{})
	wantEnded(t, hw.await(hw.s, hw.pinned(1).ID, 10*time.Second), scheduler.StateSucceeded, "")

	// Now five in a row trip it, however many attempts the job has left.
	hw.sim.SetFaults(hw.bad, sim.Faults{Submit: sim.FaultUnavailable})
	job := hw.pinned(10)
	a := hw.waitStatus(accounts.StatusQuarantined)
	if a.QuarantineReason != accounts.QuarantineConsecutiveFailures {
		t.Fatalf("quarantine reason %q, want consecutive_failures", a.QuarantineReason)
	}
	if n := submits(job.ID); n != 5 {
		t.Errorf("the breaker tripped after %d submissions of the job, want 5 (the 4 before a success do not count)", n)
	}
	hw.runsElsewhere(3)
	if n := submits(job.ID); n != 5 {
		t.Errorf("the job was submitted %d times, want no more than 5 while the breaker is open", n)
	}
	wantEvents(t, hw.events(), accounts.EventQuarantined)
}

func TestHealthAuthFailureProbedWithBackoff(t *testing.T) {
	t.Parallel()
	hw := newHealthWorld(t, accounts.HealthConfig{ProbeBase: time.Minute, ProbeMax: time.Hour})
	hw.sim.SetFaults(hw.bad, sim.Faults{Submit: sim.FaultUnauthorized, ProbeFails: true})
	job := hw.pinned(5)
	a := hw.waitStatus(accounts.StatusError)
	if a.StatusCode != "credentials_refused" || a.NextProbeAt == nil {
		t.Fatalf("status code %q, next probe %v; want credentials_refused with a probe planned", a.StatusCode, a.NextProbeAt)
	}

	// Each failed probe keeps it in error and waits longer for the next.
	var gaps []time.Duration
	last := *a.NextProbeAt
	for i := range 3 {
		hw.clock.Advance(last.Sub(hw.clock.Now()) + time.Second)
		probedAt := hw.clock.Now()
		if n := hw.probe(); n != 0 || hw.probes() != i+1 {
			t.Fatalf("failing probe %d: recovered %d, %d probes", i+1, n, hw.probes())
		}
		a := hw.account(hw.bad)
		if a.Status != accounts.StatusError || a.NextProbeAt == nil {
			t.Fatalf("after failing probe %d: status %s, next probe %v", i+1, a.Status, a.NextProbeAt)
		}
		gaps = append(gaps, a.NextProbeAt.Sub(probedAt))
		last = *a.NextProbeAt
	}
	if !(gaps[0] < gaps[1] && gaps[1] < gaps[2]) {
		t.Errorf("waits between failing probes %v, want growing", gaps)
	}
	hw.runsElsewhere(2)

	hw.sim.SetFaults(hw.bad, sim.Faults{})
	hw.clock.Advance(last.Sub(hw.clock.Now()) + time.Second)
	if n := hw.probe(); n != 1 {
		t.Fatalf("succeeding probe recovered %d accounts, want 1", n)
	}
	wantEnded(t, hw.await(hw.s, job.ID, 10*time.Second), scheduler.StateSucceeded, "")
	wantEvents(t, hw.events(), accounts.EventError, accounts.EventRecovered)
}

func TestHealthDisabledAccountNeverProbed(t *testing.T) {
	t.Parallel()
	hw := newHealthWorld(t, accounts.HealthConfig{})
	hw.sim.SetFaults(hw.bad, sim.Faults{Submit: sim.FaultRateLimited, RetryAfter: time.Minute})
	hw.pinned(5)
	hw.waitStatus(accounts.StatusQuarantined)
	off := false
	if _, err := hw.accounts.Update(context.Background(), hw.scope, hw.bad, accounts.Patch{Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	hw.sim.SetFaults(hw.bad, sim.Faults{})
	for range 3 {
		hw.clock.Advance(time.Hour)
		hw.probe()
	}
	a := hw.account(hw.bad)
	if hw.probes() != 0 || a.Enabled || a.Status != accounts.StatusDisabled {
		t.Fatalf("operator-disabled account: %d probes, enabled %v, status %s; want never probed and still disabled",
			hw.probes(), a.Enabled, a.Status)
	}
	hw.runsElsewhere(3)

	// probe: false on an enabled account is honoured the same way.
	on := true
	if _, err := hw.accounts.Update(context.Background(), hw.scope, hw.good, accounts.Patch{Probe: &off}); err != nil {
		t.Fatal(err)
	}
	hw.sim.SetFaults(hw.good, sim.Faults{Submit: sim.FaultUnauthorized})
	if _, err := hw.accounts.Update(context.Background(), hw.scope, hw.bad, accounts.Patch{Enabled: &on}); err != nil {
		t.Fatal(err)
	}
	hw.create(hw.s, scheduler.NewJob{Type: "video", Params: []byte(`{}`), Email: hw.good})
	hw.waitUntil(hw.good+" in error", func() bool { return hw.account(hw.good).Status == accounts.StatusError }, 10*time.Second)
	hw.clock.Advance(24 * time.Hour)
	hw.probe()
	if n := hw.sim.Stats().Accounts[hw.good].Probes; n != 0 {
		t.Fatalf("account with probe: false was probed %d times", n)
	}
}

// TestHealthOneMessagePerTransition: three replicas see the same account
// refuse jobs, and three probers race to bring it back; each transition
// is one event and one alert delivery.
func TestHealthOneMessagePerTransition(t *testing.T) {
	t.Parallel()
	w := newWorld(t, fastSim())
	alerter, err := alerts.New(alerts.Config{Pool: w.pool, Logger: testLogger(t), Schedule: "@every 1h",
		Thresholds: []alerts.Threshold{{Name: "1d", Before: 24 * time.Hour}}, URL: "https://alerts.example/hook"})
	if err != nil {
		t.Fatal(err)
	}
	w.accounts.WithHooks(accounts.Hooks{OnRegister: adoptJobs.OnRegister, OnHealth: []accounts.HealthHook{alerter.OnHealth}})
	emails := w.addAccounts(4, 5)
	bad := emails[0]
	w.sim.SetFaults(bad, sim.Faults{Submit: sim.FaultRateLimited, RetryAfter: time.Minute})
	var replicas []*scheduler.Scheduler
	for range 3 {
		replicas = append(replicas, w.replica(nil))
	}
	var ids []string
	for i := range 30 {
		nj := video("burst")
		if i%3 == 0 {
			nj.Email = bad // several replicas may place these at once
		}
		ids = append(ids, w.create(replicas[i%3], nj).ID)
	}
	w.waitUntil(bad+" quarantined", func() bool {
		a, _ := w.accounts.Get(context.Background(), w.scope, bad)
		return a.Status == accounts.StatusQuarantined
	}, 10*time.Second)
	w.sim.SetFaults(bad, sim.Faults{})

	clock := fakeclock.New(time.Now().Add(2 * time.Minute))
	var wg sync.WaitGroup
	for range 3 {
		p := accounts.NewProber(accounts.ProberConfig{Store: w.accounts, Provider: w.upstream(), Logger: testLogger(t), Now: clock.Now})
		wg.Go(func() {
			if _, err := p.RunOnce(context.Background()); err != nil {
				t.Errorf("probe round: %v", err)
			}
		})
	}
	wg.Wait()
	for _, id := range ids {
		wantEnded(t, w.await(replicas[0], id, 20*time.Second), scheduler.StateSucceeded, "")
	}

	if n := w.sim.Stats().Accounts[bad].Probes; n != 1 {
		t.Errorf("three probers probed %s %d times, want once", bad, n)
	}
	for kind, want := range map[string]int{"quarantined": 1, "recovered": 1} {
		if n := w.count(`SELECT count(*) FROM account_health_events WHERE kind = $1`, kind); n != want {
			t.Errorf("%d %s events, want %d", n, kind, want)
		}
		if n := w.count(`SELECT count(*) FROM webhook_deliveries WHERE event = $1`, "alert."+kind); n != want {
			t.Errorf("%d alert.%s deliveries queued, want %d", n, kind, want)
		}
	}
	w.settled()
}

func TestHealthUnavailableWithRetryAfterQuarantines(t *testing.T) {
	t.Parallel()
	hw := newHealthWorld(t, accounts.HealthConfig{})
	hw.sim.SetFaults(hw.bad, sim.Faults{Submit: sim.FaultUnavailable, RetryAfter: 2 * time.Minute})
	before := time.Now()
	hw.pinned(5)
	a := hw.waitStatus(accounts.StatusQuarantined)
	if a.QuarantineReason != accounts.QuarantineUpstreamUnavailable {
		t.Fatalf("quarantine reason %q, want upstream_unavailable", a.QuarantineReason)
	}
	if a.QuarantinedUntil.Before(before.Add(119*time.Second)) || a.QuarantinedUntil.After(time.Now().Add(121*time.Second)) {
		t.Errorf("quarantined until %s, want the 503's Retry-After (2m) after %s", a.QuarantinedUntil, before)
	}
	hw.runsElsewhere(2)
	wantEvents(t, hw.events(), accounts.EventQuarantined)
}
