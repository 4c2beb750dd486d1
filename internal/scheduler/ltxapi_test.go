package scheduler_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/ltxapi"
	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/results/resultstest"
	"github.com/poolgate/poolgate/internal/scheduler"
)

// apiKey is the LTX-2 API key of the account named name in these tests.
func apiKey(name string) string { return "ltxv_sk_test_" + name }

// addKey registers an LTX-2 API key account, and tells the simulator to
// refuse that key past maxJobs calls in flight: a 429 for that reason
// means poolgate broke the limit.
func (w *world) addKey(name string, maxJobs int) {
	w.t.Helper()
	_, err := w.accounts.RegisterAPIKey(context.Background(), w.scope, accounts.KeyRegistration{
		APIKey: apiKey(name), Name: name, MaxJobs: &maxJobs})
	if err != nil {
		w.t.Fatalf("register key %s: %v", name, err)
	}
	w.sim.SetAPIKeyLimit(apiKey(name), maxJobs)
}

// keyStats is what the simulator saw of the key of account name.
func (w *world) keyStats(name string) sim.APIKeyStats {
	return w.sim.Stats().APIKeys[provider.KeyFingerprint(apiKey(name))]
}

// bothProviders configures a replica with both upstreams, the LTX-2 API
// one storing videos in dir.
func (w *world) bothProviders(dir string) func(*scheduler.Config) {
	return func(c *scheduler.Config) {
		c.Provider = nil
		c.Providers = map[string]provider.Provider{
			provider.NameLTXStudio: ltxstudio.New(w.simURL, nil),
			provider.NameLTXAPI:    ltxapi.New(w.simURL, resultstest.Dir(w.t, dir), nil),
		}
	}
}

func apiSim() sim.Config {
	return simWith(func(c *sim.Config) {
		c.LTXAPIDelay, c.LTXAPIVideoBytes = 150*time.Millisecond, 50_000
		c.JobDuration, c.Jitter = 150*time.Millisecond, 0
	})
}

func forProvider(nj scheduler.NewJob, name string) scheduler.NewJob {
	nj.Provider = name
	return nj
}

// TestBothProvidersInOnePool runs jobs that ask for either provider or
// for none through three replicas: each lands on an account of the
// provider it asked for, those that asked for none on both kinds, every
// video is stored whole, and no key ever has more calls in flight than its
// maxJobs (the simulator would have refused one with 429).
func TestBothProvidersInOnePool(t *testing.T) {
	t.Parallel()
	w := newWorld(t, apiSim())
	w.addAccounts(3, 2)
	keys := []string{"key-one", "key-two", "key-three"}
	for _, k := range keys {
		w.addKey(k, 2)
	}
	dir := t.TempDir()
	replicas := []*scheduler.Scheduler{
		w.replica(w.bothProviders(dir)), w.replica(w.bothProviders(dir)), w.replica(w.bothProviders(dir)),
	}
	want := map[string]string{} // job id → provider it asked for
	for i := range 48 {
		var nj scheduler.NewJob
		switch i % 3 {
		case 0:
			nj = forProvider(video("an eagle"), provider.NameLTXAPI)
		case 1:
			nj = forProvider(video("a cat"), provider.NameLTXStudio)
		default:
			nj = video("anything")
		}
		want[w.create(replicas[i%3], nj).ID] = nj.Provider
	}
	w.waitTerminal(60 * time.Second)

	isKey := map[string]bool{}
	for _, k := range keys {
		isKey[k] = true
	}
	anyOn := map[bool]int{}
	for id, asked := range want {
		j := w.get(replicas[0], id)
		wantEnded(t, j, scheduler.StateSucceeded, "")
		onKey := isKey[*j.Email]
		switch asked {
		case provider.NameLTXAPI:
			if !onKey {
				t.Errorf("job %s asked for ltx-api but ran on %s", id, *j.Email)
			}
		case provider.NameLTXStudio:
			if onKey {
				t.Errorf("job %s asked for ltxstudio but ran on key %s", id, *j.Email)
			}
		default:
			anyOn[onKey]++
		}
		if !onKey {
			continue
		}
		var res ltxapi.Result
		if err := json.Unmarshal(j.Result, &res); err != nil || res.URL != "/v1/jobs/"+id+"/result" || res.Size != 50_000 {
			t.Errorf("job %s result %s, want the stored video's url and size", id, j.Result)
		}
		if fi, err := os.Stat(filepath.Join(dir, "objects", id)); err != nil || fi.Size() != 50_000 {
			t.Errorf("job %s: stored video %v (err %v), want 50000 bytes", id, fi, err)
		}
	}
	if anyOn[true] == 0 || anyOn[false] == 0 {
		t.Errorf("jobs that asked for no provider ran %d on keys and %d on cookie accounts, want both used", anyOn[true], anyOn[false])
	}
	for _, k := range keys {
		st := w.keyStats(k)
		if st.Peak > 2 || st.Limited > 0 {
			t.Errorf("key %s: peak %d in flight, %d refused over its limit; maxJobs is 2", k, st.Peak, st.Limited)
		}
		if st.Successes == 0 {
			t.Errorf("key %s ran nothing: placement is not uniform", k)
		}
	}
	w.settled()
}

// TestRevokedKeyLeavesRotation: a 401 takes the key's account out of
// rotation and its jobs run on the other key.
func TestRevokedKeyLeavesRotation(t *testing.T) {
	t.Parallel()
	w := newWorld(t, apiSim())
	w.addKey("revoked", 2)
	w.addKey("good", 2)
	w.sim.RevokeAPIKey(apiKey("revoked"))
	s := w.replica(w.bothProviders(t.TempDir()))
	var ids []string
	for range 6 {
		ids = append(ids, w.create(s, forProvider(video("x"), provider.NameLTXAPI)).ID)
	}
	w.waitTerminal(30 * time.Second)
	for _, id := range ids {
		j := w.get(s, id)
		wantEnded(t, j, scheduler.StateSucceeded, "")
		if *j.Email != "good" {
			t.Errorf("job %s succeeded on %s", id, *j.Email)
		}
	}
	a, err := w.accounts.Get(context.Background(), w.scope, "revoked")
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != accounts.StatusError || !strings.Contains(a.Reason, "Invalid API key") {
		t.Errorf("revoked key's account is %s (%q), want error naming the upstream's reason", a.Status, a.Reason)
	}
	if n := w.keyStats("revoked").Requests; n > 2 {
		t.Errorf("the revoked key was tried %d times; it should leave rotation at its first 401s", n)
	}
	w.settled()
}

// TestRateLimitedKeyIsQuarantined: a 429 rests the key's account for the
// Retry-After the upstream sent, and its jobs run on the other key.
func TestRateLimitedKeyIsQuarantined(t *testing.T) {
	t.Parallel()
	w := newWorld(t, simWith(func(c *sim.Config) {
		c.LTXAPIDelay, c.RateLimitRate, c.RateLimitRetryAfter = 50*time.Millisecond, 1, 90*time.Second
	}))
	w.addKey("limited", 2)
	s := w.replica(w.bothProviders(t.TempDir()))
	j := w.create(s, forProvider(video("x"), provider.NameLTXAPI))
	w.waitUntil("the key quarantined", func() bool {
		a, err := w.accounts.Get(context.Background(), w.scope, "limited")
		return err == nil && a.QuarantinedUntil != nil && time.Until(*a.QuarantinedUntil) > 60*time.Second
	}, 10*time.Second)
	w.sim.SetConfig(simWith(func(c *sim.Config) { c.LTXAPIDelay = 50 * time.Millisecond }))
	w.addKey("spare", 2)
	done := w.await(s, j.ID, 20*time.Second)
	wantEnded(t, done, scheduler.StateSucceeded, "")
	if *done.Email != "spare" {
		t.Errorf("job ran on %s while that key rested", *done.Email)
	}
	if n := w.keyStats("limited").Requests; n != 1 {
		t.Errorf("the quarantined key got %d calls, want just the one refused", n)
	}
}

// TestDeadReplicaLeavesOutcomeUnknown kills a replica while its LTX-2 API
// call is in flight. The API takes no idempotency key and cannot be asked
// what became of the call, so the rescuer ends the job outcome_unknown,
// or resubmits it (saying so) only when the job allows it; never silently
// twice.
func TestDeadReplicaLeavesOutcomeUnknown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, simWith(func(c *sim.Config) { c.LTXAPIDelay = 100 * time.Millisecond }))
	w.addKey("k", 2)
	dir := t.TempDir()

	pool, err := pgxpool.New(ctx, w.pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	real := ltxapi.New(w.simURL, resultstest.Dir(t, dir), nil)
	p := newProxy(real)
	p.submit = func(ctx context.Context, _ provider.Account, _ int64, forward func() (provider.Status, error)) (provider.Status, error) {
		forward() // the call reaches the upstream and runs; the replica dies before it hears back
		<-ctx.Done()
		return provider.Status{}, ctx.Err()
	}
	cfg := w.replicaConfig()
	cfg.Pool, cfg.Accounts = pool, accounts.NewStore(pool, w.box, time.Now).WithHooks(adoptJobs)
	cfg.Provider, cfg.Providers = nil, map[string]provider.Provider{provider.NameLTXAPI: p}
	cfg.Owner, cfg.LeaseTTL = "doomed", time.Second
	doomed := w.start(cfg)

	strict := w.create(doomed, forProvider(video("once"), provider.NameLTXAPI))
	lenient := forProvider(video("twice is fine"), provider.NameLTXAPI)
	yes := true
	lenient.ResubmitUnknown = &yes
	lenientID := w.create(doomed, lenient).ID
	w.waitUntil("both calls made", func() bool { return w.keyStats("k").Successes == 2 }, 10*time.Second)
	p.freeze()
	pool.Close()

	// The rescuer's own lease is longer than the dead replica's: a renewal
	// that a loaded machine delays past a 1 s lease would have the rescuer
	// rescue its own second attempt, a third call this test must not see.
	rescuer := w.replica(func(c *scheduler.Config) {
		w.bothProviders(dir)(c)
		c.LeaseTTL = 5 * time.Second
	})
	j := w.await(rescuer, strict.ID, 20*time.Second)
	wantEnded(t, j, scheduler.StateFailed, scheduler.CodeOutcomeUnknown)
	if j.Attempt != 1 || !strings.Contains(j.Error.Message, "resubmitUnknown") {
		t.Errorf("strict job: attempt %d, error %q; want one attempt and a message saying how to allow resubmission", j.Attempt, j.Error.Message)
	}
	l := w.await(rescuer, lenientID, 20*time.Second)
	wantEnded(t, l, scheduler.StateSucceeded, "")
	if l.Attempt != 2 || l.Warning == nil || !strings.Contains(*l.Warning, "may run twice") {
		t.Errorf("lenient job: attempt %d, warning %v; want a second attempt and a warning that it may have run twice", l.Attempt, l.Warning)
	}
	if n := w.keyStats("k").Requests; n != 3 {
		t.Errorf("the upstream got %d calls, want 3: one per job, and the one resubmission allowed", n)
	}
	w.settled()
}

// TestLostAnswerIsNotRetried: a call whose answer was lost after it went
// out (the connection broke mid-video) is not retried like a 5xx: the job
// ends outcome_unknown at once, after one call.
func TestLostAnswerIsNotRetried(t *testing.T) {
	t.Parallel()
	w := newWorld(t, simWith(func(c *sim.Config) { c.LTXAPIDelay = 20 * time.Millisecond }))
	w.addKey("k", 2)
	p := newProxy(ltxapi.New(w.simURL, resultstest.Dir(t, t.TempDir()), nil))
	p.submit = func(_ context.Context, _ provider.Account, _ int64, forward func() (provider.Status, error)) (provider.Status, error) {
		forward()
		return provider.Status{}, &provider.Error{Class: provider.ClassTransient, Message: "connection reset mid-video",
			Err: errors.Join(provider.ErrOutcomeUnknown, errors.New("read: connection reset by peer"))}
	}
	s := w.replica(func(c *scheduler.Config) {
		c.Provider, c.Providers = nil, map[string]provider.Provider{provider.NameLTXAPI: p}
	})
	j := w.await(s, w.create(s, forProvider(video("x"), provider.NameLTXAPI)).ID, 20*time.Second)
	wantEnded(t, j, scheduler.StateFailed, scheduler.CodeOutcomeUnknown)
	if !strings.Contains(j.Error.Message, "connection reset mid-video") || j.Attempt != 1 {
		t.Errorf("job: attempt %d, error %q; want one attempt and the cause", j.Attempt, j.Error.Message)
	}
	if n := w.keyStats("k").Requests; n != 1 {
		t.Errorf("the upstream got %d calls, want 1", n)
	}
	w.settled()
}
