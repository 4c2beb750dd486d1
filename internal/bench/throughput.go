package bench

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/poolgate/poolgate/internal/provider/sim"
)

// throughput is scenarios 1 and 2. The insert phase queues every job with
// the replicas' dispatchers off; the work phase starts them and ends when
// the database confirms that every job succeeded and freed its slot. Its
// jobs/s is the headline figure, comparable with River's "work N
// pre-inserted jobs".
func (b *runner) throughput(ctx context.Context, tag, name string, nAccounts, slots, jobs int) (*sample, Invariants, error) {
	w, err := newWorld(ctx, b.cfg, b.dbs, tag, sim.Config{Seed: 1}) // instant upstream
	if err != nil {
		return nil, Invariants{}, err
	}
	defer w.close(b.dbs)
	if err := w.addAccounts(ctx, nAccounts, slots); err != nil {
		return nil, Invariants{}, err
	}
	if err := w.newReplicas(ctx, b.cfg.Replicas, nil); err != nil {
		return nil, Invariants{}, err
	}
	s := newSample()

	b.progress("%s: queueing %d jobs from %d producers", name, jobs, b.cfg.Producers)
	activity, insertActivity := w.startActivity(ctx), w.startActivity(ctx)
	t0 := time.Now()
	create := w.createJobs
	if b.cfg.InsertBatch > 0 {
		create = func(ctx context.Context, n, producers int) ([]string, time.Duration, time.Duration, error) {
			return w.createJobsBatched(ctx, n, producers, b.cfg.InsertBatch)
		}
	}
	ids, self, pg, err := create(ctx, jobs, b.cfg.Producers)
	if err != nil {
		return nil, Invariants{}, fmt.Errorf("queue jobs: %w", err)
	}
	insert := time.Since(t0)
	s.set("insert_jobs_per_sec", "jobs/s", perSec(jobs, insert))
	s.cpu("insert_", self, pg, jobs)
	insertActivity.stop(ctx, s, "insert_", jobs)

	b.progress("%s: working them off with %d replicas", name, b.cfg.Replicas)
	stopProfile := b.profile(tag, name)
	counters := readCounters(ctx, w.admin)
	meter := startCPU(ctx, w.admin, w.dbName)
	t1 := time.Now()
	w.startReplicas(ctx)
	end, err := w.waitDrained(ctx, int64(jobs), b.cfg.Timeout)
	stopProfile()
	if err != nil {
		return nil, Invariants{}, err
	}
	work := end.Sub(t1)
	self, pg = meter.stop(ctx)
	s.set("jobs_per_sec", "jobs/s", perSec(jobs, work))
	s.set("e2e_jobs_per_sec", "jobs/s", perSec(jobs, insert+work))
	s.cpu("", self, pg, jobs)
	w.stopReplicas() // their backends exit and publish their counters
	w.waitQuiet(ctx)
	s.diag = readCounters(ctx, w.admin).perJob(counters, jobs)
	activity.stop(ctx, s, "", jobs) // insert + work
	w.upstreamRequests(s)

	inv, err := w.check(ctx, ids)
	return s, inv, err
}

// profile starts a CPU profile of a scenario's first run if one was asked
// for; the returned function stops it.
func (b *runner) profile(tag, name string) func() {
	if b.cfg.CPUProfile == "" || !strings.HasSuffix(tag, "_0") {
		return func() {}
	}
	f, err := os.Create(b.cfg.CPUProfile + "." + name)
	if err != nil {
		b.progress("cpu profile: %v", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.progress("cpu profile: %v", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		b.progress("%s: CPU profile in %s", name, f.Name())
	}
}
