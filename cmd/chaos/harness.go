package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/loopback"
	"github.com/poolgate/poolgate/internal/pgbouncer"
	"github.com/poolgate/poolgate/internal/provider/sim"
)

// harness owns everything one chaos run starts.
type harness struct {
	cfg    config
	getenv func(string) string
	logf   func(format string, a ...any)
	rng    *mrand.Rand // used by the chaos goroutine only, after setup

	logDir     string
	tempLogs   bool
	server     string // a URL on the Postgres server, for CREATE/DROP DATABASE
	ownPG      bool   // this run started the throwaway cluster
	pgWhy      string
	dbName     string
	dbURL      string
	queryURL   string // the servers' DATABASE_URL: dbURL, or through PgBouncer
	stopPgb    func()
	admin      *pgxpool.Pool
	secretKey  string
	sim        *proc
	simURL     string
	mu         sync.Mutex // guards servers' up flags
	servers    []*server
	key        string
	client     *http.Client
	pgRestarts int
}

// proc is one child process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func (h *harness) start(name string, env []string, args ...string) (*proc, error) {
	f, err := os.OpenFile(filepath.Join(h.logDir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(h.cfg.bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL to this process only and waits for it.
func (p *proc) kill() {
	if p.alive() {
		p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// stop asks the process to end (SIGTERM) and kills it after grace.
func (p *proc) stop(grace time.Duration) {
	if !p.alive() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.kill()
	}
}

// server is one poolgate serve replica; its address survives restarts.
type server struct {
	idx  int
	addr string
	url  string
	p    *proc
	up   bool
}

func (h *harness) run(ctx context.Context) (figures, error) {
	fig := figures{States: map[string]int{}, MaxJobs: h.cfg.maxJobs}
	if err := h.setup(ctx); err != nil {
		return fig, err
	}
	fig.PGRestart = h.pgWhy
	h.logf("load: %.0f jobs/s for %s on %d servers; kills every %s–%s", h.cfg.rate, h.cfg.duration,
		len(h.servers), h.cfg.killMin, h.cfg.killMax)
	until := time.Now().Add(h.cfg.duration)
	var (
		wg        sync.WaitGroup
		accepted  []string
		submitted int
		retries   int
		unknown   int
	)
	wg.Go(func() { submitted, accepted, retries, unknown = h.load(ctx, until) })
	kills, restarts := h.chaos(ctx, until)
	wg.Wait()
	if ctx.Err() != nil {
		return fig, ctx.Err()
	}
	fig.Submitted, fig.Accepted, fig.SubmitErrors, fig.Kills, fig.Restarts, fig.PGRestarts = submitted, len(accepted), retries, kills, restarts, h.pgRestarts
	if unknown > 0 {
		fig.Violations = append(fig.Violations, fmt.Sprintf("%d job submissions never got an answer", unknown))
	}
	if refused := submitted - unknown - len(accepted); refused > 0 {
		fig.Violations = append(fig.Violations, fmt.Sprintf("%d valid job submissions were refused (see the log above)", refused))
	}
	if err := h.allUp(ctx); err != nil {
		return fig, err
	}
	h.logf("load over: %d jobs accepted; waiting up to %s for them to end", len(accepted), h.cfg.drain)
	h.drain(ctx, accepted)
	return fig, h.check(ctx, accepted, &fig)
}

// setup picks Postgres, creates the database, and starts the simulator
// and the servers, then issues a key and registers the accounts.
func (h *harness) setup(ctx context.Context) error {
	if err := h.makeLogDir(); err != nil {
		return err
	}
	if err := h.pickPostgres(ctx); err != nil {
		return err
	}
	h.dbName = "poolgate_chaos_" + randomHex(6)
	if err := adminExec(ctx, h.server, "CREATE DATABASE "+h.dbName); err != nil {
		h.dbName = ""
		return fmt.Errorf("create database: %w", err)
	}
	var err error
	if h.dbURL, err = dbx.WithDatabase(h.server, h.dbName); err != nil {
		return err
	}
	if h.admin, err = pgxpool.New(ctx, h.dbURL); err != nil {
		return err
	}
	h.queryURL = h.dbURL
	if h.cfg.pgbouncer {
		through, stop, err := pgbouncer.Start(h.dbURL)
		if err != nil {
			return err
		}
		h.stopPgb = stop
		h.queryURL = through + "&default_query_exec_mode=cache_describe"
		h.logf("servers' queries go through PgBouncer (transaction mode); LISTEN and migrations direct")
	}
	key := make([]byte, 32)
	rand.Read(key)
	h.secretKey = base64.StdEncoding.EncodeToString(key)
	h.client = &http.Client{Timeout: 5 * time.Second}
	h.logf("database %s (%s); logs in %s", h.dbName, h.pgWhy, h.logDir)

	if err := h.startSim(ctx); err != nil {
		return err
	}
	for i := range h.cfg.servers {
		h.servers = append(h.servers, &server{idx: i, addr: freeAddr()})
		h.servers[i].url = "http://" + h.servers[i].addr
	}
	var wg sync.WaitGroup
	errs := make([]error, len(h.servers))
	for i, s := range h.servers { // all at once: migrations run under an advisory lock
		wg.Go(func() { errs[i] = h.startServer(ctx, s) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := h.issueKey(ctx); err != nil {
		return err
	}
	return h.registerAccounts(ctx)
}

func (h *harness) makeLogDir() error {
	if h.cfg.logDir != "" {
		h.logDir = h.cfg.logDir
		return os.MkdirAll(h.logDir, 0o755)
	}
	dir, err := os.MkdirTemp("", "poolgate-chaos-")
	h.logDir, h.tempLogs = dir, true
	return err
}

func (h *harness) startSim(ctx context.Context) error {
	addr := freeAddr()
	p, err := h.start("sim", []string{"POOLGATE_SIM_ADDR=" + addr}, "sim",
		"-job-duration", h.cfg.jobDur.String(), "-jitter", h.cfg.jitter.String())
	if err != nil {
		return err
	}
	h.sim, h.simURL = p, "http://"+addr
	return h.waitHTTP(ctx, h.simURL+"/_sim/stats", p, 15*time.Second)
}

func (h *harness) serverEnv(s *server) []string {
	return []string{
		"DATABASE_URL=" + h.queryURL,
		"DATABASE_LISTEN_URL=" + h.dbURL,
		"POOLGATE_ADDR=" + s.addr,
		"POOLGATE_METRICS_ADDR=127.0.0.1:0", // three servers on one host: no fixed metrics port
		"POOLGATE_SECRET_KEY=" + h.secretKey,
		"POOLGATE_UPSTREAM_URL=" + h.simURL,
		"POOLGATE_LEASE_TTL=" + h.cfg.leaseTTL.String(),
		"POOLGATE_POLL_INTERVAL=" + h.cfg.poll.String(),
		"POOLGATE_SHUTDOWN_TIMEOUT=5s",
		"POOLGATE_MAX_QUEUED=1000000",
		"POOLGATE_KEY_RATE_LIMIT=100000/1s",
		// Sub-second jobs: nothing to expect from the production table, and
		// no request budget to slow the load that is meant to stress.
		"POOLGATE_POLL_EXPECTED=none",
		"POOLGATE_UPSTREAM_RPS=0",
	}
}

// startServer starts s and waits until it is ready; a server that exits
// (Postgres restarting, say) is started again until ctx ends.
func (h *harness) startServer(ctx context.Context, s *server) error {
	deadline := time.Now().Add(90 * time.Second)
	for {
		p, err := h.start(fmt.Sprintf("server%d", s.idx), h.serverEnv(s), "serve")
		if err != nil {
			return err
		}
		err = h.waitHTTP(ctx, s.url+"/readyz", p, 30*time.Second)
		if err == nil {
			h.mu.Lock()
			s.p, s.up = p, true
			h.mu.Unlock()
			return nil
		}
		p.kill()
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("server %d did not start: %w (see %s)", s.idx, err, h.logDir)
		}
		h.logf("server %d did not come up (%v); retrying", s.idx, err)
		time.Sleep(time.Second)
	}
}

// waitHTTP polls url until it answers 200, p exits, or timeout passes.
func (h *harness) waitHTTP(ctx context.Context, url string, p *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !p.alive() {
			return errors.New("the process exited")
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := h.client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer within %s", url, timeout)
}

func (h *harness) issueKey(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, h.cfg.bin, "keys", "create", "--tenant", "chaos", "--name", "chaos")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+h.dbURL)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("keys create: %w: %s", err, stderr.String())
	}
	h.key, _, _ = strings.Cut(string(out), "\n")
	return nil
}

func (h *harness) registerAccounts(ctx context.Context) error {
	for i := range h.cfg.accounts {
		email := fmt.Sprintf("chaos%d@sim.invalid", i)
		body, _ := json.Marshal(map[string]any{
			"cookie":  sim.Cookie(email, time.Now().Add(24*time.Hour), time.Now().Add(90*24*time.Hour)),
			"maxJobs": h.cfg.maxJobs,
		})
		status, raw, err := h.post(ctx, h.servers[0].url+"/v1/accounts", body, nil)
		if err != nil || status != http.StatusOK {
			return fmt.Errorf("register %s: status %d, %v: %s", email, status, err, raw)
		}
	}
	return nil
}

func (h *harness) post(ctx context.Context, url string, body []byte, hdr map[string]string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+h.key)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// cleanup stops every process this run started, drops its database, and
// stops the throwaway cluster if this run started it.
func (h *harness) cleanup(failed bool) {
	var wg sync.WaitGroup
	for _, s := range h.servers {
		if s.p != nil {
			wg.Go(func() { s.p.stop(10 * time.Second) })
		}
	}
	wg.Wait()
	if h.sim != nil {
		h.sim.stop(5 * time.Second)
	}
	if h.stopPgb != nil {
		h.stopPgb()
	}
	if h.admin != nil {
		h.admin.Close()
	}
	if h.dbName != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := adminExec(ctx, h.server, "DROP DATABASE IF EXISTS "+h.dbName+" WITH (FORCE)"); err != nil {
			h.logf("drop database %s: %v", h.dbName, err)
		}
		cancel()
	}
	if h.ownPG {
		if out, err := exec.Command("scripts/pg.sh", "stop").CombinedOutput(); err != nil {
			h.logf("stop the throwaway cluster: %v: %s", err, out)
		}
	}
	switch {
	case failed:
		h.logf("processes' logs kept in %s", h.logDir)
	case h.tempLogs:
		os.RemoveAll(h.logDir)
	}
}

func adminExec(ctx context.Context, server, sql string) error {
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// freeAddr returns a loopback address nobody listens on right now.
func freeAddr() string {
	addr, err := loopback.FreeAddr()
	if err != nil {
		return "127.0.0.1:0"
	}
	return addr
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
