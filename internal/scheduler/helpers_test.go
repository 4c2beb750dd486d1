package scheduler_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/pgtest"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/scheduler"
	"github.com/poolgate/poolgate/internal/secret"
	"github.com/poolgate/poolgate/internal/tenant"
)

// world is one test's universe: a database, the simulator on loopback and
// a tenant whose pool the test fills.
type world struct {
	t        *testing.T
	pool     *pgxpool.Pool
	sim      *sim.Server
	simURL   string
	accounts *accounts.Store
	box      *secret.Box // seals the accounts' cookies
	scope    tenant.Scope
	maxJobs  map[string]int
}

// adoptJobs wires what serve wires for the scheduler on registration.
var adoptJobs = accounts.Hooks{OnRegister: []accounts.RegisterHook{scheduler.AdoptJobs}}

func newWorld(t *testing.T, cfg sim.Config) *world {
	t.Helper()
	return newWorldAt(t, cfg, nil)
}

// newWorldAt is newWorld with the simulator reading time from now.
func newWorldAt(t *testing.T, cfg sim.Config, now func() time.Time) *world {
	t.Helper()
	pool := pgtest.New(t)
	key := make([]byte, secret.KeySize)
	rand.Read(key)
	box, _ := secret.NewBox(key)
	s := sim.New(cfg, now)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	w := &world{t: t, pool: pool, sim: s, simURL: srv.URL, accounts: accounts.NewStore(pool, box, time.Now).WithHooks(adoptJobs),
		box: box, maxJobs: map[string]int{}}
	w.scope = w.tenant("acme", tenant.Live)
	return w
}

func (w *world) tenant(name string, mode tenant.Mode) tenant.Scope {
	var id int64
	err := w.pool.QueryRow(context.Background(),
		`INSERT INTO tenants (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id`, name).Scan(&id)
	if err != nil {
		w.t.Fatal(err)
	}
	return tenant.Scope{TenantID: id, Mode: mode}
}

// addAccounts registers n accounts a0@x.io… with maxJobs each.
func (w *world) addAccounts(n, maxJobs int) []string {
	var emails []string
	first := len(w.maxJobs) // before the loop: addAccount grows it
	for i := range n {
		email := fmt.Sprintf("a%d@x.io", first+i)
		w.addAccount(w.scope, email, maxJobs)
		emails = append(emails, email)
	}
	return emails
}

func (w *world) addAccount(scope tenant.Scope, email string, maxJobs int) {
	w.t.Helper()
	_, err := w.accounts.Register(context.Background(), scope, accounts.Registration{
		Cookie: sim.Cookie(email, time.Now().Add(24*time.Hour), time.Now().Add(90*24*time.Hour)), MaxJobs: &maxJobs,
	})
	if err != nil {
		w.t.Fatalf("register %s: %v", email, err)
	}
	w.maxJobs[email] = maxJobs
}

// replica starts a scheduler on the shared database; it stops at cleanup.
func (w *world) replica(tune func(*scheduler.Config)) *scheduler.Scheduler {
	cfg := w.replicaConfig()
	if tune != nil {
		tune(&cfg)
	}
	return w.start(cfg)
}

// replicaConfig is a replica's configuration with fast timings.
func (w *world) replicaConfig() scheduler.Config {
	return scheduler.Config{
		Pool: w.pool, Accounts: w.accounts, Provider: w.upstream(), Logger: testLogger(w.t),
		LeaseTTL: 3 * time.Second, PollInterval: 20 * time.Millisecond, WakeInterval: 200 * time.Millisecond,
		RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
	}
}

// start starts a scheduler configured by cfg; it stops at cleanup.
func (w *world) start(cfg scheduler.Config) *scheduler.Scheduler {
	s := scheduler.New(cfg)
	s.Start(context.Background())
	// No grace: whatever a test leaves running is handed over, not awaited.
	w.t.Cleanup(func() { stopWithin(s, 0) })
	return s
}

// waitTerminal waits until no job of the world is queued or in flight.
func (w *world) waitTerminal(timeout time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var open int
		w.pool.QueryRow(context.Background(), `SELECT count(*) FROM jobs WHERE state NOT IN ('succeeded','failed','canceled')`).Scan(&open)
		if open == 0 {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%d jobs still not terminal after %s", open, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkInvariants judges the run from the simulator's side and the slots'.
func (w *world) checkInvariants() sim.Stats {
	w.t.Helper()
	st := w.sim.Stats()
	for email, a := range st.Accounts {
		if max, ok := w.maxJobs[email]; ok && a.Peak > max {
			w.t.Errorf("account %s: upstream saw %d concurrent jobs, maxJobs is %d", email, a.Peak, max)
		}
	}
	for job, attempts := range st.Jobs {
		for attempt, n := range attempts {
			if n > 1 {
				w.t.Errorf("job %s attempt %s submitted %d times", job, attempt, n)
			}
		}
	}
	var leaked int
	w.pool.QueryRow(context.Background(), `
		SELECT count(*) FROM account_slots a WHERE held <> (SELECT count(*) FROM jobs j
		WHERE j.tenant_id = a.tenant_id AND j.account_id = a.id AND j.state IN ('dispatching','running'))`).Scan(&leaked)
	if leaked > 0 {
		w.t.Errorf("%d accounts' running counts differ from their jobs in flight", leaked)
	}
	w.checkQueueDepth()
	return st
}

// checkQueueDepth compares the O(1) queue depth counters admission reads
// with the queued jobs they stand for, pool by pool.
func (w *world) checkQueueDepth() {
	w.t.Helper()
	rows, err := w.pool.Query(context.Background(), `
		WITH counted AS (
			SELECT tenant_id, mode, count(*) AS n FROM jobs WHERE state = 'queued' GROUP BY 1, 2
		), kept AS (
			SELECT tenant_id, mode, sum(CASE side WHEN 'in' THEN n ELSE -n END) AS n FROM queue_depth GROUP BY 1, 2
		)
		SELECT coalesce(c.tenant_id, k.tenant_id), coalesce(c.mode, k.mode), coalesce(c.n, 0), coalesce(k.n, 0)
		FROM counted c FULL JOIN kept k USING (tenant_id, mode)
		WHERE coalesce(c.n, 0) <> coalesce(k.n, 0)`)
	if err != nil {
		w.t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			tenantID      int64
			mode          string
			counted, kept int64
		)
		if err := rows.Scan(&tenantID, &mode, &counted, &kept); err != nil {
			w.t.Fatal(err)
		}
		w.t.Errorf("tenant %d %s: %d jobs queued, but the queue depth counter says %d", tenantID, mode, counted, kept)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("POOLGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func hasPrefix(s, p string) bool { return strings.HasPrefix(s, p) }

// simWith returns a simulator config with short jobs and no injected failures;
// tune adjusts it.
func simWith(tune func(*sim.Config)) sim.Config {
	c := fastSim()
	if tune != nil {
		tune(&c)
	}
	return c
}

// video is a job request with the given prompt.
func video(prompt string) scheduler.NewJob {
	params, _ := json.Marshal(map[string]string{"prompt": prompt})
	return scheduler.NewJob{Type: "video", Params: params}
}

// create queues nj through s in the world's tenant and fails the test on error.
func (w *world) create(s *scheduler.Scheduler, nj scheduler.NewJob) scheduler.Job {
	w.t.Helper()
	j, _, err := s.Create(context.Background(), w.scope, nj, nil)
	if err != nil {
		w.t.Fatalf("create job: %v", err)
	}
	return j
}

// get reads a job of the world's tenant.
func (w *world) get(s *scheduler.Scheduler, id string) scheduler.Job {
	w.t.Helper()
	j, err := s.Get(context.Background(), w.scope, id)
	if err != nil {
		w.t.Fatalf("get job %s: %v", id, err)
	}
	return j
}

// await long-polls job id until it is terminal, failing after timeout.
func (w *world) await(s *scheduler.Scheduler, id string, timeout time.Duration) scheduler.Job {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	j, err := s.Wait(ctx, w.scope, id)
	if err != nil {
		w.t.Fatalf("wait for job %s: %v", id, err)
	}
	if !j.State.Terminal() {
		w.t.Fatalf("job %s still %s after %s", id, j.State, timeout)
	}
	return j
}

// waitFor polls job id until cond holds, failing after timeout.
func (w *world) waitFor(s *scheduler.Scheduler, id string, what string, cond func(scheduler.Job) bool, timeout time.Duration) scheduler.Job {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j := w.get(s, id)
		if cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("job %s: not %s after %s (state %s)", id, what, timeout, j.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func inState(st scheduler.State) func(scheduler.Job) bool {
	return func(j scheduler.Job) bool { return j.State == st }
}

// waitUntil polls cond until it holds, failing after timeout.
func (w *world) waitUntil(what string, cond func() bool, timeout time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			w.t.Fatalf("still not %s after %s", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// count runs a count(*)-style query.
func (w *world) count(sql string, args ...any) int {
	w.t.Helper()
	var n int
	if err := w.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		w.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// slotsHeld sums the slots every account of the database holds.
func (w *world) slotsHeld() int {
	return w.count(`SELECT coalesce(sum(held), 0)::int FROM account_slots`)
}

// settled checks that nothing is left in flight: every slot is free, the
// upstream runs nothing, and the invariants hold.
func (w *world) settled() sim.Stats {
	w.t.Helper()
	if n := w.slotsHeld(); n != 0 {
		w.t.Errorf("%d slots still held with no job in flight", n)
	}
	st := w.checkInvariants()
	for email, a := range st.Accounts {
		if a.Running != 0 {
			w.t.Errorf("upstream still runs %d jobs on %s", a.Running, email)
		}
	}
	return st
}

// wantCode fails unless err is an *errs.Error with the given kind and code.
func wantCode(t *testing.T, err error, kind errs.Kind, code string) *errs.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	e, ok := errors.AsType[*errs.Error](err)
	if !ok || e.Code != code || e.Kind != kind {
		t.Fatalf("got error %v, want kind %d code %s", err, kind, code)
	}
	return e
}

// wantEnded fails unless j ended in state with the error code ("" for none).
func wantEnded(t *testing.T, j scheduler.Job, state scheduler.State, code string) {
	t.Helper()
	if j.State != state {
		t.Fatalf("job %s ended %s (error %+v), want %s", j.ID, j.State, j.Error, state)
	}
	switch {
	case code == "" && j.Error != nil:
		t.Fatalf("job %s: unexpected error %+v", j.ID, *j.Error)
	case code != "" && (j.Error == nil || j.Error.Code != code):
		t.Fatalf("job %s: error %+v, want code %s", j.ID, j.Error, code)
	}
	if j.FinishedAt == nil {
		t.Errorf("job %s is %s but has no finish time", j.ID, j.State)
	}
}

// proxy stands between a replica and the upstream so a test can watch and
// steer the calls. Hooks are optional.
type proxy struct {
	provider.Provider
	calls   atomic.Int64 // every call made through the proxy
	submits atomic.Int64

	// submit, if set, runs instead of a plain Submit; forward makes the
	// real call.
	submit func(ctx context.Context, a provider.Account, n int64, forward func() (provider.Status, error)) (provider.Status, error)

	// Once frozen is closed, every call blocks until its context ends,
	// like a process that stopped running.
	frozen chan struct{}
}

func newProxy(p provider.Provider) *proxy { return &proxy{Provider: p, frozen: make(chan struct{})} }

func (p *proxy) freeze() { close(p.frozen) }

// gate blocks a frozen proxy's call until ctx ends.
func (p *proxy) gate(ctx context.Context) error {
	p.calls.Add(1)
	select {
	case <-p.frozen:
		<-ctx.Done()
		return ctx.Err()
	default:
		return nil
	}
}

func (p *proxy) Submit(ctx context.Context, a provider.Account, s provider.Submission) (provider.Status, error) {
	if err := p.gate(ctx); err != nil {
		return provider.Status{}, err
	}
	n := p.submits.Add(1)
	forward := func() (provider.Status, error) { return p.Provider.Submit(ctx, a, s) }
	if p.submit != nil {
		return p.submit(ctx, a, n, forward)
	}
	return forward()
}

func (p *proxy) Status(ctx context.Context, a provider.Account, id string) (provider.Status, error) {
	if err := p.gate(ctx); err != nil {
		return provider.Status{}, err
	}
	return p.Provider.Status(ctx, a, id)
}

func (p *proxy) Lookup(ctx context.Context, a provider.Account, key string) (provider.Status, bool, error) {
	if err := p.gate(ctx); err != nil {
		return provider.Status{}, false, err
	}
	return p.Provider.Lookup(ctx, a, key)
}

func (p *proxy) Cancel(ctx context.Context, a provider.Account, id string) error {
	if err := p.gate(ctx); err != nil {
		return err
	}
	return p.Provider.Cancel(ctx, a, id)
}

// upstream is a plain client of the world's simulator.
func (w *world) upstream() provider.Provider { return ltxstudio.New(w.simURL, nil) }

// stopWithin stops s, giving its jobs in flight grace to end.
func stopWithin(s *scheduler.Scheduler, grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	s.Stop(ctx)
}
