// Command chaos runs poolgate as it is deployed — several `poolgate serve`
// processes and the upstream simulator on loopback, sharing one fresh
// database — puts a steady job load on it, SIGKILLs a random replica at
// random moments and restarts it, restarts Postgres once when this run
// started its own throwaway cluster, and then checks the invariants:
// every accepted job ended, no account ever ran more than maxJobs (as the
// simulator saw it), held slots equal jobs in flight, and no attempt was
// submitted upstream twice. It prints the figures last and exits non-zero
// if anything broke.
//
//	go build -o bin/poolgate ./cmd/server && go run ./cmd/chaos
//
// It stops by itself (-duration, then at most -drain) and kills every
// process it started, by pid, on the way out.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}

// config is the run's shape.
type config struct {
	bin                string
	servers            int
	duration, drain    time.Duration
	rate               float64
	accounts, maxJobs  int
	jobDur, jitter     time.Duration
	killMin, killMax   time.Duration
	downMin, downMax   time.Duration
	leaseTTL, poll     time.Duration
	pgMode             string
	pgbouncer          bool
	logDir             string
	seed               uint64
	keepLogsOnSuccess  bool
	pgRestartAfterFrac float64
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.bin, "bin", "bin/poolgate", "the poolgate binary")
	fs.IntVar(&c.servers, "servers", 3, "poolgate serve processes")
	fs.DurationVar(&c.duration, "duration", 60*time.Second, "how long the load and the kills go on")
	fs.DurationVar(&c.drain, "drain", 60*time.Second, "how long accepted jobs may take to end afterwards")
	fs.Float64Var(&c.rate, "rate", 25, "jobs submitted per second")
	fs.IntVar(&c.accounts, "accounts", 6, "accounts in the pool")
	fs.IntVar(&c.maxJobs, "max-jobs", 3, "maxJobs of each account")
	fs.DurationVar(&c.jobDur, "job-duration", 400*time.Millisecond, "how long a job runs upstream")
	fs.DurationVar(&c.jitter, "jitter", 300*time.Millisecond, "± spread of -job-duration")
	fs.DurationVar(&c.killMin, "kill-min", 3*time.Second, "shortest time between kills")
	fs.DurationVar(&c.killMax, "kill-max", 9*time.Second, "longest time between kills")
	fs.DurationVar(&c.downMin, "down-min", 300*time.Millisecond, "shortest time a killed server stays down")
	fs.DurationVar(&c.downMax, "down-max", 3*time.Second, "longest time a killed server stays down")
	fs.DurationVar(&c.leaseTTL, "lease-ttl", 3*time.Second, "POOLGATE_LEASE_TTL of the servers")
	fs.DurationVar(&c.poll, "poll", 100*time.Millisecond, "POOLGATE_POLL_INTERVAL of the servers")
	fs.StringVar(&c.pgMode, "pg", "auto", "auto: DATABASE_URL, else 127.0.0.1:5432, else a throwaway cluster (scripts/pg.sh); own: always the throwaway cluster")
	fs.BoolVar(&c.pgbouncer, "pgbouncer", false, "send the servers' queries through a PgBouncer in transaction mode (Debian's pgbouncer), LISTEN and migrations direct")
	fs.StringVar(&c.logDir, "logs", "", "directory for the processes' logs (default: a temporary one, kept if the run fails)")
	fs.Uint64Var(&c.seed, "seed", 0, "random seed for kills (0: random)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.pgMode != "auto" && c.pgMode != "own" {
		return c, errors.New("-pg must be auto or own")
	}
	if c.servers < 2 {
		return c, errors.New("-servers must be at least 2: a killed server's jobs need someone to rescue them")
	}
	if c.killMax < c.killMin || c.downMax < c.downMin {
		return c, errors.New("-kill-max/-down-max must not be below their -min")
	}
	c.pgRestartAfterFrac = 0.5
	return c, nil
}

// figures are what the run ends with.
type figures struct {
	Submitted    int            `json:"submitted"`
	Accepted     int            `json:"accepted"`
	JobsInDB     int            `json:"jobs_in_db"`
	States       map[string]int `json:"states"`
	Lost         int            `json:"lost"`
	Kills        int            `json:"kills"`
	Restarts     int            `json:"restarts"`
	PGRestarts   int            `json:"pg_restarts"`
	PGRestart    string         `json:"pg_restart"` // why there was or was not one
	SubmitErrors int            `json:"submit_retries"`
	MaxPeak      int            `json:"max_peak"`
	MaxJobs      int            `json:"max_jobs"`
	PeakOver     int            `json:"peak_over_max"`
	SlotsHeld    int            `json:"slots_held"`
	InFlight     int            `json:"in_flight"`
	LeakedSlots  int            `json:"leaked_slots"`
	Double       int            `json:"double_submits"`
	Rescues      int            `json:"rescued_jobs"`
	UsageOff     []string       `json:"usage_differences"` // pools whose usage counts differ from their jobs
	Seconds      float64        `json:"seconds"`
	Violations   []string       `json:"violations"`
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if _, err := os.Stat(c.bin); err != nil {
		return fmt.Errorf("%s: %w (build it first: go build -o bin/poolgate ./cmd/server)", c.bin, err)
	}
	if c.seed == 0 {
		c.seed = rand.Uint64()
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "chaos: %s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, a...)...)
	}
	h := &harness{cfg: c, getenv: getenv, logf: logf, rng: rand.New(rand.NewPCG(c.seed, c.seed^0xc4a05))}
	logf("seed %d", c.seed)
	start := time.Now()
	fig, runErr := h.run(ctx)
	h.cleanup(runErr != nil || len(fig.Violations) > 0)
	fig.Seconds = time.Since(start).Round(100 * time.Millisecond).Seconds()
	if runErr != nil {
		return runErr
	}
	printFigures(stdout, fig)
	if len(fig.Violations) > 0 {
		return fmt.Errorf("%d invariant violations (logs in %s)", len(fig.Violations), h.logDir)
	}
	return nil
}
