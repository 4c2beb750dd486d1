// Command river-bench runs River's equivalent of poolgate's bench scenario
// 1 (internal/bench): insert N trivial jobs with InsertMany, then work them
// with a comparable number of workers, and print jobs/s in the same JSON
// form as `poolgate bench`, so `make bench-compare` can set them side by
// side. It lives in its own module so River never enters poolgate's
// dependencies.
//
// Each run gets a fresh database on DATABASE_URL's server, migrated with
// rivermigrate, and drops it at the end.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "river-bench:", err)
		os.Exit(1)
	}
}

type config struct {
	server    string
	jobs      int
	runs      int
	clients   int
	workers   int
	batch     int
	producers int
	work      string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	fs := flag.NewFlagSet("river-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.jobs, "jobs", 100_000, "jobs to insert and work")
	fs.IntVar(&c.runs, "runs", 1, "runs; figures are medians")
	fs.IntVar(&c.clients, "clients", 4, "River clients (poolgate's -replicas)")
	fs.IntVar(&c.workers, "workers", 500, "MaxWorkers per client (4 × 500 = poolgate's 100 accounts × 20 slots)")
	fs.IntVar(&c.batch, "batch", 1000, "jobs per InsertMany call")
	fs.IntVar(&c.producers, "producers", 4, "goroutines calling InsertMany")
	fs.StringVar(&c.work, "work", "trivial", "what a job does: trivial (returns at once) or http (one POST to a loopback server, like poolgate's upstream submit)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.work != "trivial" && c.work != "http" {
		return fmt.Errorf("-work must be trivial or http")
	}
	c.server = os.Getenv("DATABASE_URL")
	if c.server == "" {
		return errors.New("DATABASE_URL is not set (make bench-compare sets it)")
	}
	res := scenario{Name: "throughput", Metrics: map[string]metric{}}
	for i := range c.runs {
		fmt.Fprintf(stderr, "river-bench: throughput: run %d of %d (%d jobs, %d clients × %d workers, work=%s)\n",
			i+1, c.runs, c.jobs, c.clients, c.workers, c.work)
		s, err := once(ctx, c, i)
		if err != nil {
			res.Errors = append(res.Errors, err.Error())
			fmt.Fprintf(stderr, "river-bench: run %d failed: %v\n", i+1, err)
			continue
		}
		res.add(s)
		res.Runs++
	}
	res.OK = res.Runs > 0 && len(res.Errors) == 0
	rep := report{Bench: "river", Machine: machine(ctx, c.server), Scenarios: []scenario{res}, OK: res.OK,
		Config: map[string]any{"jobs": c.jobs, "runs": c.runs, "clients": c.clients, "workers_per_client": c.workers,
			"insert_batch": c.batch, "producers": c.producers, "work": c.work, "river": "v0.51.1",
			"fetch_cooldown": river.FetchCooldownDefault.String(), "fetch_poll_interval": river.FetchPollIntervalDefault.String()}}
	rep.writeTable(stdout)
	b, _ := json.Marshal(rep)
	fmt.Fprintf(stdout, "%s\n", b)
	if !rep.OK {
		return errors.New("a run failed")
	}
	return nil
}

// noopArgs is the trivial job.
type noopArgs struct{}

func (noopArgs) Kind() string { return "noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
	target string // "" or a URL to POST to
	client *http.Client
	done   *atomic.Int64
}

func (w *noopWorker) Work(ctx context.Context, _ *river.Job[noopArgs]) error {
	defer w.done.Add(1)
	if w.target == "" {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.target, strings.NewReader(`{"type":"video","params":{"prompt":"bench"}}`))
	if err != nil {
		return err
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// once is one run in a fresh database.
func once(ctx context.Context, c config, i int) (*sample, error) {
	name := fmt.Sprintf("poolgate_river_%s_%d", randomHex(5), i)
	if err := adminExec(ctx, c.server, "CREATE DATABASE "+name); err != nil {
		return nil, fmt.Errorf("create database (does the user have CREATEDB?): %w", err)
	}
	defer adminExec(context.WithoutCancel(ctx), c.server, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	dbURL, err := withDatabase(c.server, name)
	if err != nil {
		return nil, err
	}
	admin, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	migrator, err := rivermigrate.New(riverpgxv5.New(admin), nil)
	if err != nil {
		return nil, err
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}

	var target string
	if c.work == "http" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"id":"gen_1","status":"completed"}`)
		})}
		go srv.Serve(ln)
		defer srv.Close()
		target = "http://" + ln.Addr().String() + "/"
	}

	// One pool and one client per "replica", like poolgate's bench.
	var done atomic.Int64
	clients := make([]*river.Client[pgx.Tx], c.clients)
	pools := make([]*pgxpool.Pool, c.clients)
	for k := range clients {
		if pools[k], err = pgxpool.New(ctx, dbURL); err != nil {
			return nil, err
		}
		defer pools[k].Close()
		workers := river.NewWorkers()
		river.AddWorker(workers, &noopWorker{target: target, client: http.DefaultClient, done: &done})
		clients[k], err = river.NewClient(riverpgxv5.New(pools[k]), &river.Config{
			Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: c.workers}},
			Workers: workers,
			Logger:  slog.New(slog.DiscardHandler),
		})
		if err != nil {
			return nil, err
		}
	}
	s := &sample{vals: map[string]float64{}, units: map[string]string{}}

	// Insert phase: InsertMany in batches from a few producers, through
	// the clients' pools.
	meter := startCPU(ctx, admin, name)
	t0 := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, c.producers)
	for p := range c.producers {
		wg.Go(func() {
			cl := clients[p%len(clients)]
			for {
				lo := int(next.Add(int64(c.batch))) - c.batch
				if lo >= c.jobs {
					return
				}
				params := make([]river.InsertManyParams, min(c.batch, c.jobs-lo))
				for j := range params {
					params[j] = river.InsertManyParams{Args: noopArgs{}}
				}
				if _, err := cl.InsertMany(ctx, params); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("insert: %w", err)
	}
	insert := time.Since(t0)
	self, pg := meter.stop(ctx)
	s.set("insert_jobs_per_sec", "jobs/s", float64(c.jobs)/insert.Seconds())
	s.cpu("insert_", self, pg, c.jobs)

	// Work phase: until the database says every job completed.
	meter = startCPU(ctx, admin, name)
	t1 := time.Now()
	for _, cl := range clients {
		if err := cl.Start(ctx); err != nil {
			return nil, err
		}
	}
	deadline := time.Now().Add(15 * time.Minute)
	for {
		if done.Load() >= int64(c.jobs) {
			var completed int
			if err := admin.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state = 'completed'`).Scan(&completed); err != nil {
				return nil, err
			}
			if completed == c.jobs {
				break
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("only %d of %d jobs worked after 15 minutes", done.Load(), c.jobs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	work := time.Since(t1)
	self, pg = meter.stop(ctx)
	s.set("jobs_per_sec", "jobs/s", float64(c.jobs)/work.Seconds())
	s.set("e2e_jobs_per_sec", "jobs/s", float64(c.jobs)/(insert+work).Seconds())
	s.cpu("", self, pg, c.jobs)

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for _, cl := range clients {
		cl.Stop(sctx)
	}
	var lost int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state <> 'completed'`).Scan(&lost); err != nil {
		return nil, err
	}
	if lost > 0 {
		return nil, fmt.Errorf("%d jobs did not complete", lost)
	}
	return s, nil
}

// The report mirrors internal/bench's JSON form.
type report struct {
	Bench     string         `json:"bench"`
	Machine   machineInfo    `json:"machine"`
	Config    map[string]any `json:"config"`
	Scenarios []scenario     `json:"scenarios"`
	OK        bool           `json:"ok"`
}

type machineInfo struct {
	CPUs              int    `json:"cpus"`
	CPU               string `json:"cpu"`
	Go                string `json:"go"`
	OS                string `json:"os"`
	Postgres          string `json:"postgres"`
	Fsync             string `json:"fsync"`
	SynchronousCommit string `json:"synchronous_commit"`
}

type scenario struct {
	Name    string            `json:"name"`
	Runs    int               `json:"runs"`
	Metrics map[string]metric `json:"metrics"`
	Errors  []string          `json:"errors,omitempty"`
	OK      bool              `json:"ok"`
	order   []string
}

type metric struct {
	Median float64   `json:"median"`
	Unit   string    `json:"unit"`
	Values []float64 `json:"runs"`
}

type sample struct {
	names []string
	units map[string]string
	vals  map[string]float64
}

func (s *sample) set(name, unit string, v float64) {
	if _, ok := s.vals[name]; !ok {
		s.names = append(s.names, name)
	}
	s.units[name], s.vals[name] = unit, v
}

func (s *sample) cpu(prefix string, self, pg time.Duration, jobs int) {
	s.set(prefix+"go_cpu_ms_per_job", "ms", float64(self)/float64(time.Millisecond)/float64(jobs))
	if pg >= 0 {
		s.set(prefix+"pg_cpu_ms_per_job", "ms", float64(pg)/float64(time.Millisecond)/float64(jobs))
	}
}

func (sc *scenario) add(s *sample) {
	for _, n := range s.names {
		m, ok := sc.Metrics[n]
		if !ok {
			sc.order = append(sc.order, n)
		}
		m.Unit = s.units[n]
		m.Values = append(m.Values, round(s.vals[n]))
		m.Median = round(median(m.Values))
		sc.Metrics[n] = m
	}
}

func (r report) writeTable(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "machine: %d CPUs (%s), %s %s, PostgreSQL %s (fsync=%s, synchronous_commit=%s)\n",
		m.CPUs, m.CPU, m.Go, m.OS, m.Postgres, m.Fsync, m.SynchronousCommit)
	for _, s := range r.Scenarios {
		for _, n := range s.order {
			mt := s.Metrics[n]
			vals := make([]string, len(mt.Values))
			for i, v := range mt.Values {
				vals[i] = strconv.FormatFloat(v, 'g', 4, 64)
			}
			fmt.Fprintf(w, "river %-10s %-26s %10s %-7s runs: %s\n", s.Name, n,
				strconv.FormatFloat(mt.Median, 'g', 4, 64), mt.Unit, strings.Join(vals, " "))
		}
	}
}

func round(v float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 4, 64), 64)
	return r
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

func machine(ctx context.Context, server string) machineInfo {
	m := machineInfo{CPUs: runtime.NumCPU(), CPU: cpuModel(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		return m
	}
	defer conn.Close(ctx)
	conn.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('fsync'),
		current_setting('synchronous_commit')`).Scan(&m.Postgres, &m.Fsync, &m.SynchronousCommit)
	return m
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func adminExec(ctx context.Context, server, sql string) error {
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func withDatabase(dsn, db string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", errors.New("DATABASE_URL is not a valid URL")
		}
		u.Path = "/" + db
		return u.String(), nil
	}
	return dsn + " dbname=" + db, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// cpuMeter is internal/bench's: this process's CPU, and that of the
// Postgres backends serving the database (read from /proc; -1 if not).
type cpuMeter struct {
	admin  *pgxpool.Pool
	dbName string
	self   time.Duration
	pg     map[int]time.Duration
}

func startCPU(ctx context.Context, admin *pgxpool.Pool, dbName string) *cpuMeter {
	m := &cpuMeter{admin: admin, dbName: dbName, self: selfCPU()}
	m.pg = m.backends(ctx)
	return m
}

func (m *cpuMeter) stop(ctx context.Context) (self, pg time.Duration) {
	self = selfCPU() - m.self
	now := m.backends(ctx)
	if now == nil {
		return self, -1
	}
	for pid, t := range now {
		pg += t - m.pg[pid]
	}
	return self, pg
}

func (m *cpuMeter) backends(ctx context.Context) map[int]time.Duration {
	rows, err := m.admin.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1`, m.dbName)
	if err != nil {
		return nil
	}
	defer rows.Close()
	out := map[int]time.Duration{}
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) != nil {
			return nil
		}
		raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return nil
		}
		s := string(raw)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 13 {
			return nil
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		out[pid] = time.Duration(ut+st) * time.Second / 100
	}
	return out
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
