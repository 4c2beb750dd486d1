package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/poolgate/poolgate/internal/bench"
	"github.com/poolgate/poolgate/internal/results"
	"github.com/poolgate/poolgate/internal/retention"
)

// errBenchFailed says a bench run broke an invariant or failed; the report
// has already said which.
var errBenchFailed = errors.New("bench: an invariant was broken or a run failed (see above)")

// benchmark is "poolgate bench": it measures the scheduler and the API
// against the Postgres server of DATABASE_URL (in databases it creates and
// drops) and an in-process simulator, prints a table, then one JSON line.
func benchmark(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	d := bench.Defaults()
	cfg := d
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scenarios := fs.String("scenarios", "throughput,placement,http,saturation,insert_depth", "scenarios to run, by name or number (1-7; soak (6) and results (7) run only when named)")
	fs.IntVar(&cfg.Runs, "runs", d.Runs, "runs of each scenario; figures are medians")
	fs.IntVar(&cfg.Replicas, "replicas", d.Replicas, "schedulers sharing the database")
	fs.IntVar(&cfg.Producers, "producers", d.Producers, "goroutines queueing jobs in insert phases")
	fs.IntVar(&cfg.InsertBatch, "insert-batch", 0, "scenario 1 queues jobs with CreateMany (POST /v1/jobs/batch) in batches of this many; 0: one by one")
	fs.IntVar(&cfg.Jobs, "jobs", d.Jobs, "scenario 1: jobs through the lifecycle")
	fs.IntVar(&cfg.Accounts, "accounts", d.Accounts, "scenarios 1 and 3: accounts in the pool")
	fs.IntVar(&cfg.Slots, "slots", d.Slots, "scenarios 1-3: maxJobs of each account")
	pools := fs.String("placement-pools", joinInts(d.PlacementPools), "scenario 2: pool sizes")
	fs.IntVar(&cfg.PlacementJobs, "placement-jobs", d.PlacementJobs, "scenario 2: jobs per pool size")
	fs.IntVar(&cfg.HTTPRequests, "http-requests", d.HTTPRequests, "scenario 3: requests of each kind")
	fs.IntVar(&cfg.HTTPConcurrency, "http-concurrency", d.HTTPConcurrency, "scenario 3: concurrent clients")
	fs.IntVar(&cfg.SatAccounts, "sat-accounts", d.SatAccounts, "scenario 4: accounts")
	fs.IntVar(&cfg.SatSlots, "sat-slots", d.SatSlots, "scenario 4: maxJobs of each account")
	fs.IntVar(&cfg.SatQueued, "sat-queued", d.SatQueued, "scenario 4: jobs queued behind the full slots")
	fs.DurationVar(&cfg.SatJobDuration, "sat-job-duration", d.SatJobDuration, "scenario 4: how long a job runs upstream")
	fs.DurationVar(&cfg.SatJitter, "sat-jitter", d.SatJitter, "scenario 4: ± spread of the job duration")
	fs.DurationVar(&cfg.SatWindow, "sat-window", d.SatWindow, "scenario 4: how long to measure")
	fs.IntVar(&cfg.DepthJobs, "depth-jobs", d.DepthJobs, "scenario 5: jobs queued into the empty, then the deep queue")
	fs.IntVar(&cfg.DepthQueued, "depth-queued", d.DepthQueued, "scenario 5: jobs already queued for the deep measurement")
	fs.IntVar(&cfg.SoakRate, "soak-rate", d.SoakRate, "scenario 6: jobs queued per second")
	fs.DurationVar(&cfg.SoakDuration, "soak-duration", d.SoakDuration, "scenario 6: how long to queue jobs")
	fs.DurationVar(&cfg.SoakRetention, "soak-retention", d.SoakRetention, "scenario 6: every retention period (idempotency keys keep their 24h floor)")
	fs.DurationVar(&cfg.SoakJobDuration, "soak-job-duration", d.SoakJobDuration, "scenario 6: how long a job runs upstream")
	fs.IntVar(&cfg.ResultJobs, "result-jobs", d.ResultJobs, "scenario 7: results streamed at once")
	fs.IntVar(&cfg.ResultMB, "result-mb", d.ResultMB, "scenario 7: megabytes of each result")
	fs.StringVar(&cfg.ResultStore, "result-store", "dir", "scenario 7: dir, or s3 (a versitygw the bench starts)")
	fs.DurationVar(&cfg.PollInterval, "poll-interval", d.PollInterval, "how often replicas read a running job's status")
	fs.IntVar(&cfg.UpstreamConns, "upstream-conns", 0, "idle connections per host to the upstream (0: net/http's default, as serve)")
	fs.DurationVar(&cfg.Timeout, "timeout", d.Timeout, "how long one run may take to drain its jobs")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of each scenario's measured phase to FILE.<scenario> (and of http's GETs to FILE.http_get)")
	compare := fs.String("compare", "", "a file holding another bench's JSON line (bench/river) to compare scenario 1 with")
	verbose := fs.Bool("v", false, "show the replicas' warnings and errors")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: bench takes only flags", errUsage)
	}
	var err error
	if cfg.PlacementPools, err = parseInts(*pools); err != nil {
		return fmt.Errorf("%w: -placement-pools: %v", errUsage, err)
	}
	cfg.Scenarios = splitList(*scenarios)
	if cfg.ServerURL, err = databaseURL(getenv); err != nil {
		return err
	}
	cfg.Progress = stderr
	// The soak's jobs store no results, but the cleanup list deletes them
	// with their jobs; a throwaway directory store stands in.
	soakResults, err := os.MkdirTemp("", "poolgate-soak-results-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(soakResults)
	store, err := results.NewDir(soakResults)
	if err != nil {
		return err
	}
	cfg.Cleanups = func(keep time.Duration) []retention.Cleanup {
		return cleanups(retentionConfig{Jobs: keep, Idempotency: keep, Webhooks: keep, Alerts: keep, CronRuns: keep, Usage: keep}, store)
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	if *verbose {
		cfg.Logger = newLogger(stderr, slog.LevelWarn)
	}

	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *compare != "" {
		raw, err := os.ReadFile(*compare)
		if err != nil {
			return err
		}
		if err := rep.CompareWith(bytes.NewReader(raw)); err != nil {
			return err
		}
	}
	rep.WriteTable(stdout)
	if err := rep.WriteJSON(stdout); err != nil {
		return err
	}
	if !rep.OK {
		return errBenchFailed
	}
	return nil
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, p := range splitList(s) {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", p)
		}
		out = append(out, n)
	}
	return out, nil
}
