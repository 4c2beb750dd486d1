package scheduler_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/scheduler"
)

// TestCrashedReplicaIsRescued kills a replica without warning while it
// holds jobs in every in-flight condition: running upstream, submitted but
// not yet recorded, and not yet submitted. Another replica rescues them
// all, and nothing is submitted twice.
func TestCrashedReplicaIsRescued(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, simWith(func(c *sim.Config) { c.JobDuration, c.Jitter = 2*time.Second, 0 }))
	w.addAccounts(3, 2)

	// The doomed replica has connections of its own, so it can lose them
	// all at once, and an upstream it can stop talking to.
	pool, err := pgxpool.New(ctx, w.pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	p := newProxy(w.upstream())
	p.submit = func(ctx context.Context, _ provider.Account, n int64, forward func() (provider.Status, error)) (provider.Status, error) {
		switch {
		case n <= 2: // these run
		case n == 3: // reaches the upstream; the replica dies before it records that
			forward()
			<-ctx.Done()
			return provider.Status{}, ctx.Err()
		default: // the replica dies before these leave it
			<-ctx.Done()
			return provider.Status{}, ctx.Err()
		}
		return forward()
	}
	cfg := w.replicaConfig()
	cfg.Pool, cfg.Accounts, cfg.Provider = pool, accounts.NewStore(pool, w.box, time.Now).WithHooks(adoptJobs), p
	cfg.Owner, cfg.LeaseTTL = "doomed", time.Second
	doomed := w.start(cfg)

	var ids []string
	for range 6 {
		ids = append(ids, w.create(doomed, video("a cat")).ID)
	}
	w.waitUntil("holding 2 running and 4 dispatching jobs", func() bool {
		return w.count(`SELECT count(*) FROM jobs WHERE lease_owner = 'doomed' AND state = 'running'`) == 2 &&
			w.count(`SELECT count(*) FROM jobs WHERE lease_owner = 'doomed' AND state = 'dispatching'`) == 4 &&
			p.submits.Load() == 6
	}, 10*time.Second)

	// Crash: no more upstream calls, no more database, no hand-over.
	p.freeze()
	pool.Close()
	// Generations created from now on are quick; those running keep 2s.
	w.sim.SetConfig(fastSim())

	rescuer := w.replica(func(c *scheduler.Config) { c.LeaseTTL = time.Second })
	for range 3 {
		ids = append(ids, w.create(rescuer, video("a dog")).ID)
	}
	w.waitTerminal(20 * time.Second)

	st := w.settled()
	for i, id := range ids {
		j := w.get(rescuer, id)
		wantEnded(t, j, scheduler.StateSucceeded, "")
		// An attempt the doomed replica left behind keeps its number: it
		// was found upstream or submitted for the first time, never twice.
		if j.Attempt != 1 || len(st.Jobs[id]) != 1 || st.Jobs[id]["1"] != 1 {
			t.Errorf("job %d (%s): attempt %d, upstream saw submissions %v; want attempt 1 submitted once",
				i, id, j.Attempt, st.Jobs[id])
		}
	}
	if st.DuplicateSubmits != 0 {
		t.Errorf("upstream saw %d duplicate submissions", st.DuplicateSubmits)
	}
}

// TestGracefulStop: a stopping replica gives its jobs the grace period to
// end, keeping their leases alive meanwhile, and hands over the rest.
func TestGracefulStop(t *testing.T) {
	t.Parallel()

	// setup starts replica "a" and has it run four jobs, then starts
	// replica "b", whose upstream calls are counted.
	setup := func(t *testing.T, jobDuration time.Duration) (w *world, a, b *scheduler.Scheduler, pb *proxy, ids []string) {
		w = newWorld(t, simWith(func(c *sim.Config) { c.JobDuration, c.Jitter = jobDuration, 0 }))
		w.addAccounts(2, 2)
		a = w.replica(func(c *scheduler.Config) { c.Owner, c.LeaseTTL = "a", 600*time.Millisecond })
		for range 4 {
			ids = append(ids, w.create(a, video("a cat")).ID)
		}
		for _, id := range ids {
			w.waitFor(a, id, "running", inState(scheduler.StateRunning), 5*time.Second)
		}
		pb = newProxy(w.upstream())
		b = w.replica(func(c *scheduler.Config) { c.Owner, c.LeaseTTL, c.Provider = "b", 600*time.Millisecond, pb })
		return w, a, b, pb, ids
	}

	t.Run("jobs that end within grace end on their replica", func(t *testing.T) {
		t.Parallel()
		// The jobs outlast a's lease TTL: only renewal keeps b off them.
		w, a, _, pb, ids := setup(t, 1500*time.Millisecond)
		const grace = 4 * time.Second
		start := time.Now()
		stopWithin(a, grace)
		if took := time.Since(start); took > grace-time.Second {
			t.Errorf("Stop took %s; it should return once the jobs end, well within %s", took, grace)
		}
		for _, id := range ids {
			wantEnded(t, w.get(a, id), scheduler.StateSucceeded, "")
		}
		if n := pb.calls.Load(); n != 0 {
			t.Errorf("the other replica made %d upstream calls: it rescued jobs whose replica was still following them", n)
		}
		w.settled()
	})

	t.Run("jobs still running after grace are handed over", func(t *testing.T) {
		t.Parallel()
		w, a, b, pb, ids := setup(t, 2*time.Second)
		start := time.Now()
		stopWithin(a, 200*time.Millisecond)
		if took := time.Since(start); took > 1500*time.Millisecond {
			t.Errorf("Stop(200ms) took %s", took)
		}
		// Handed over: the lease is expired, or b has already rescued the
		// job (its rescuer runs every 200ms here). Not handed over: a still
		// holds a live lease.
		if n := w.count(`SELECT count(*) FROM jobs WHERE state IN ('dispatching', 'running') AND lease_owner = 'a' AND lease_expires_at > now()`); n != 0 {
			t.Errorf("%d of 4 running jobs still leased to the stopped replica", n)
		}
		// The stopped replica still serves the API; its job runs on b.
		w.sim.SetConfig(fastSim())
		ids = append(ids, w.create(a, video("a dog")).ID)
		w.waitTerminal(15 * time.Second)
		for _, id := range ids {
			wantEnded(t, w.get(b, id), scheduler.StateSucceeded, "")
		}
		if pb.calls.Load() == 0 {
			t.Error("the other replica never called the upstream: who finished the jobs?")
		}
		w.settled()
	})
}
