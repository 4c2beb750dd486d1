// Package bench measures poolgate end to end against a real Postgres and
// the upstream simulator on loopback, with several replicas in one
// process, and checks the scheduler's invariants after every run:
//
//  1. throughput: N jobs through the whole lifecycle (insert, place, run on
//     an instant upstream, complete, free the slot);
//  2. placement: the same for pools of 10, 1,000 and 10,000 accounts;
//  3. http: authenticated POST /v1/jobs and GET /v1/jobs/{id} at a fixed
//     concurrency;
//  4. saturation: every slot full and a deep queue, measuring how long a
//     freed slot stays idle before the next job takes it;
//  5. insert_depth: the insert rate into an empty queue and into one
//     already holding 50,000 queued jobs;
//  7. results (only when asked for): 50 results of 20 MB streamed at once
//     into the result store and out through GET /v1/jobs/{id}/result on
//     one replica, with the process's peak RSS.
//
// Every scenario also reports WAL fsyncs, statements and transactions per
// job (see recordActivity), and http the API's GET rate against a bare
// echo handler's (get_vs_bare).
//
// Each scenario runs in its own fresh database; every database the bench
// creates is dropped when it ends.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/poolgate/poolgate/internal/retention"
)

// Config says what to measure. Zero fields take Defaults' values.
type Config struct {
	// ServerURL names a Postgres database whose user may CREATE DATABASE;
	// the bench creates and drops its own databases on that server.
	ServerURL string
	// Scenarios to run, by name (throughput, placement, http, saturation,
	// insert_depth, soak) or number (1-6); empty means all but the soak.
	Scenarios []string
	// Runs is how often each scenario runs; figures are medians of runs.
	Runs int
	// Replicas is how many schedulers share the database.
	Replicas int
	// Producers is how many goroutines create jobs in insert phases.
	Producers int
	// InsertBatch > 0 makes scenario 1 queue its jobs with CreateMany (what
	// POST /v1/jobs/batch does) in batches of this many, as River's side
	// does with InsertMany; 0 creates them one by one (group-committed).
	InsertBatch int

	// Scenario 1: Jobs through a pool of Accounts × Slots.
	Jobs, Accounts, Slots int
	// Scenario 2: PlacementJobs through pools of each size.
	PlacementPools []int
	PlacementJobs  int
	// Scenario 3: HTTPRequests of each kind from HTTPConcurrency clients.
	HTTPRequests, HTTPConcurrency int
	// Scenario 4: SatAccounts × SatSlots slots, SatQueued jobs waiting
	// behind them, jobs lasting SatJobDuration ± SatJitter upstream,
	// measured for SatWindow (then the rest of the queue is canceled).
	SatAccounts, SatSlots, SatQueued int
	SatJobDuration, SatJitter        time.Duration
	SatWindow                        time.Duration
	// Scenario 5: DepthJobs jobs queued into an empty queue, then as many
	// again behind DepthQueued queued jobs.
	DepthJobs, DepthQueued int
	// Scenario 6 (soak): SoakRate jobs a second for SoakDuration, each
	// lasting SoakJobDuration upstream, with every retention period
	// SoakRetention. It runs only when named.
	SoakRate                                     int
	SoakDuration, SoakRetention, SoakJobDuration time.Duration
	// Cleanups returns the retention service's cleanups with every period
	// keep: what serve runs (cmd/server wires it). Only the soak needs it.
	Cleanups func(keep time.Duration) []retention.Cleanup
	// Scenario 7: ResultJobs results of ResultMB megabytes each, all at
	// once, in ResultStore: "dir" (default) or "s3" (a versitygw the bench
	// starts, see internal/s3server).
	ResultJobs, ResultMB int
	ResultStore          string

	// PollInterval is how often replicas read a running job's status.
	PollInterval time.Duration
	// UpstreamConns sets the idle connections per host of the replicas'
	// upstream HTTP client; 0 keeps net/http's default (2), which is what
	// poolgate serve uses.
	UpstreamConns int
	// Timeout bounds how long a run may take to drain its jobs.
	Timeout time.Duration
	// CPUProfile, if set, receives a CPU profile of the measured phase of
	// each scenario's first run, as CPUProfile + "." + scenario.
	CPUProfile string

	// Logger receives the replicas' logs; Progress, one line per step.
	Logger   *slog.Logger
	Progress io.Writer
}

// Defaults are the figures: 100k jobs, 100 accounts × 20 slots,
// pools of 10 to 10,000 accounts, 64 HTTP clients, 2,000 slots with
// 50,000 jobs queued behind them.
func Defaults() Config {
	return Config{
		Runs: 1, Replicas: 4, Producers: 16,
		Jobs: 100_000, Accounts: 100, Slots: 20,
		PlacementPools: []int{10, 1_000, 10_000}, PlacementJobs: 20_000,
		HTTPRequests: 20_000, HTTPConcurrency: 64,
		SatAccounts: 100, SatSlots: 20, SatQueued: 50_000,
		SatJobDuration: 2 * time.Second, SatJitter: 500 * time.Millisecond, SatWindow: 30 * time.Second,
		DepthJobs: 5_000, DepthQueued: 50_000,
		SoakRate: 300, SoakDuration: 4 * time.Minute, SoakRetention: 10 * time.Second, SoakJobDuration: 50 * time.Millisecond,
		ResultJobs: 50, ResultMB: 20,
		PollInterval: time.Second,
		Timeout:      15 * time.Minute,
	}
}

func (c *Config) defaults() {
	d := Defaults()
	setInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	setInt(&c.Runs, d.Runs)
	setInt(&c.Replicas, d.Replicas)
	setInt(&c.Producers, d.Producers)
	setInt(&c.Jobs, d.Jobs)
	setInt(&c.Accounts, d.Accounts)
	setInt(&c.Slots, d.Slots)
	setInt(&c.PlacementJobs, d.PlacementJobs)
	setInt(&c.HTTPRequests, d.HTTPRequests)
	setInt(&c.HTTPConcurrency, d.HTTPConcurrency)
	setInt(&c.SatAccounts, d.SatAccounts)
	setInt(&c.SatSlots, d.SatSlots)
	setInt(&c.SatQueued, d.SatQueued)
	setInt(&c.DepthJobs, d.DepthJobs)
	setInt(&c.DepthQueued, d.DepthQueued)
	setInt(&c.SoakRate, d.SoakRate)
	setDur(&c.SoakDuration, d.SoakDuration)
	setDur(&c.SoakRetention, d.SoakRetention)
	setDur(&c.SoakJobDuration, d.SoakJobDuration)
	setInt(&c.ResultJobs, d.ResultJobs)
	setInt(&c.ResultMB, d.ResultMB)
	setDur(&c.SatJobDuration, d.SatJobDuration)
	setDur(&c.SatWindow, d.SatWindow)
	setDur(&c.PollInterval, d.PollInterval)
	setDur(&c.Timeout, d.Timeout)
	if c.SatJitter < 0 {
		c.SatJitter = 0
	}
	if c.ResultStore == "" {
		c.ResultStore = "dir"
	}
	if len(c.PlacementPools) == 0 {
		c.PlacementPools = d.PlacementPools
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// scenario is one named measurement; run performs one run of it.
type scenario struct {
	name string
	run  func(b *runner, ctx context.Context, tag string) (*sample, Invariants, error)
}

func (c Config) plan() ([]scenario, error) {
	want := c.Scenarios
	if len(want) == 0 {
		want = []string{"throughput", "placement", "http", "saturation", "insert_depth"}
	}
	var out []scenario
	for _, name := range want {
		switch strings.TrimSpace(name) {
		case "1", "throughput":
			out = append(out, scenario{"throughput", func(b *runner, ctx context.Context, tag string) (*sample, Invariants, error) {
				return b.throughput(ctx, tag, "throughput", c.Accounts, c.Slots, c.Jobs)
			}})
		case "2", "placement":
			for _, n := range c.PlacementPools {
				name := "placement_" + strconv.Itoa(n)
				out = append(out, scenario{name, func(b *runner, ctx context.Context, tag string) (*sample, Invariants, error) {
					return b.throughput(ctx, tag, name, n, c.Slots, c.PlacementJobs)
				}})
			}
		case "3", "http":
			out = append(out, scenario{"http", (*runner).http})
		case "4", "saturation":
			out = append(out, scenario{"saturation", (*runner).saturation})
		case "5", "insert_depth":
			out = append(out, scenario{"insert_depth", (*runner).insertDepth})
		case "6", "soak":
			out = append(out, scenario{"soak", (*runner).soak})
		case "7", "results":
			out = append(out, scenario{"results", (*runner).results})
		default:
			return nil, fmt.Errorf("unknown scenario %q (want throughput, placement, http, saturation, insert_depth, soak, results or 1-7)", name)
		}
	}
	return out, nil
}

// runner carries what every scenario run needs.
type runner struct {
	cfg Config
	dbs *databases
}

func (b *runner) progress(format string, args ...any) {
	fmt.Fprintf(b.cfg.Progress, "bench: "+format+"\n", args...)
}

// Run performs the configured scenarios and returns their figures. A run
// that breaks an invariant does not stop the others: Report.OK says
// whether everything held.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	plan, err := cfg.plan()
	if err != nil {
		return nil, err
	}
	dbs, err := newDatabases(ctx, cfg.ServerURL)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := dbs.close(); err != nil {
			fmt.Fprintf(cfg.Progress, "bench: dropping databases: %v\n", err)
		}
	}()
	rep := &Report{Bench: "poolgate", Machine: machine(ctx, cfg.ServerURL), Config: cfg.summary(), OK: true}
	b := &runner{cfg: cfg, dbs: dbs}
	for _, sc := range plan {
		res := Scenario{Name: sc.name}
		for i := range cfg.Runs {
			b.progress("%s: run %d of %d", sc.name, i+1, cfg.Runs)
			s, inv, err := sc.run(b, ctx, fmt.Sprintf("%s_%d", shortTag(sc.name), i))
			if err != nil {
				if ctx.Err() != nil {
					return rep, ctx.Err()
				}
				res.Errors = append(res.Errors, err.Error())
				b.progress("%s: run %d failed: %v", sc.name, i+1, err)
				continue
			}
			res.add(s)
			res.Invariants.add(inv)
			res.Runs++
			for _, msg := range inv.Broken() {
				b.progress("%s: run %d BROKE AN INVARIANT: %s", sc.name, i+1, msg)
			}
		}
		res.Broken = res.Invariants.Broken()
		res.OK = len(res.Broken) == 0 && len(res.Errors) == 0 && res.Runs > 0
		rep.OK = rep.OK && res.OK
		rep.Scenarios = append(rep.Scenarios, res)
	}
	return rep, nil
}

func shortTag(name string) string {
	return strings.NewReplacer("throughput", "t", "placement_", "p", "http", "h", "saturation", "s", "insert_depth", "d", "soak", "k", "results", "r").Replace(name)
}

// sample is one run's figures, in the order they are shown.
type sample struct {
	names []string
	units map[string]string
	vals  map[string]float64
	diag  map[string]float64 // Postgres counters per job, see pgCounters
	// sources names where a metric's figure came from, when that varies
	// with the server (see recordActivity).
	sources map[string]string
}

func newSample() *sample {
	return &sample{units: map[string]string{}, vals: map[string]float64{}}
}

// source notes where metric name's figure came from.
func (s *sample) source(name, from string) {
	if s.sources == nil {
		s.sources = map[string]string{}
	}
	s.sources[name] = from
}

func (s *sample) set(name, unit string, v float64) {
	if _, ok := s.vals[name]; !ok {
		s.names = append(s.names, name)
	}
	s.units[name], s.vals[name] = unit, v
}

// cpu records CPU per job of a phase, in milliseconds.
func (s *sample) cpu(prefix string, self, pg time.Duration, jobs int) {
	if jobs <= 0 {
		return
	}
	s.set(prefix+"go_cpu_ms_per_job", "ms", ms(self)/float64(jobs))
	if pg >= 0 {
		s.set(prefix+"pg_cpu_ms_per_job", "ms", ms(pg)/float64(jobs))
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func perSec(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// percentile returns the p-th percentile (0..100) of sorted xs, nearest rank.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	i := int(float64(len(xs))*p/100+0.5) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	switch {
	case n == 0:
		return 0
	case n%2 == 1:
		return s[n/2]
	default:
		return (s[n/2-1] + s[n/2]) / 2
	}
}

func (c Config) summary() map[string]any {
	return map[string]any{
		"runs": c.Runs, "replicas": c.Replicas, "producers": c.Producers, "insert_batch": c.InsertBatch,
		"jobs": c.Jobs, "accounts": c.Accounts, "slots_per_account": c.Slots,
		"placement_pools": c.PlacementPools, "placement_jobs": c.PlacementJobs,
		"http_requests": c.HTTPRequests, "http_concurrency": c.HTTPConcurrency,
		"sat_accounts": c.SatAccounts, "sat_slots_per_account": c.SatSlots, "sat_queued": c.SatQueued,
		"sat_job_duration": c.SatJobDuration.String(), "sat_jitter": c.SatJitter.String(),
		"sat_window": c.SatWindow.String(), "poll_interval": c.PollInterval.String(),
		"depth_jobs": c.DepthJobs, "depth_queued": c.DepthQueued,
		"soak_rate": c.SoakRate, "soak_duration": c.SoakDuration.String(), "soak_retention": c.SoakRetention.String(),
		"result_jobs": c.ResultJobs, "result_mb": c.ResultMB, "result_store": c.ResultStore,
		"upstream_conns": c.UpstreamConns, "gomaxprocs": runtime.GOMAXPROCS(0),
	}
}
