package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/tenant"
	"github.com/poolgate/poolgate/internal/usage"
)

// load submits jobs at the configured rate until until. Each job has its
// own Idempotency-Key, so a submission that failed in transit (its server
// killed, Postgres down) is retried on another server without risk of a
// second job: a job counts as accepted once some server answered 2xx.
// It returns how many jobs it submitted, the accepted ids, how many
// retries that took, and how many submissions never got an answer. The
// rate is a ceiling: when all 64 submissions in flight are retrying (say,
// Postgres is down) ticks are skipped.
func (h *harness) load(ctx context.Context, until time.Time) (submitted int, accepted []string, retries, unknown int) {
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		ids = map[string]bool{}
	)
	tick := time.NewTicker(time.Duration(float64(time.Second) / h.cfg.rate))
	defer tick.Stop()
	sem := make(chan struct{}, 64)
	for n := 0; time.Now().Before(until) && ctx.Err() == nil; n++ {
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
		sem <- struct{}{}
		submitted++
		wg.Go(func() {
			defer func() { <-sem }()
			id, tries := h.submit(ctx, fmt.Sprintf("chaos-job-%d", n))
			mu.Lock()
			defer mu.Unlock()
			retries += tries
			if id == "" {
				unknown++
			} else {
				ids[id] = true
			}
		})
	}
	wg.Wait()
	for id := range ids {
		accepted = append(accepted, id)
	}
	return submitted, accepted, retries, unknown
}

// submit creates one job, retrying on other servers until one answers,
// for at most two minutes. It returns the job id ("" if none answered).
func (h *harness) submit(ctx context.Context, key string) (string, int) {
	body := []byte(`{"type":"video","params":{"prompt":"chaos"}}`)
	deadline := time.Now().Add(2 * time.Minute)
	for tries := 0; time.Now().Before(deadline) && ctx.Err() == nil; tries++ {
		s := h.pickServer()
		status, raw, err := h.post(ctx, s.url+"/v1/jobs", body, map[string]string{"Idempotency-Key": key})
		if err == nil && (status == http.StatusAccepted || status == http.StatusOK) {
			var j struct{ ID string }
			if json.Unmarshal(raw, &j) == nil && j.ID != "" {
				return j.ID, tries
			}
		}
		if err == nil && status < 500 && status != http.StatusTooManyRequests {
			h.logf("job %s refused: %d %s", key, status, raw)
			return "", tries
		}
		time.Sleep(time.Duration(100+mrand.IntN(200)) * time.Millisecond)
	}
	return "", 0
}

// pickServer returns a random server that is up, or any if none is.
func (h *harness) pickServer() *server {
	h.mu.Lock()
	defer h.mu.Unlock()
	var up []*server
	for _, s := range h.servers {
		if s.up {
			up = append(up, s)
		}
	}
	if len(up) == 0 {
		return h.servers[mrand.IntN(len(h.servers))]
	}
	return up[mrand.IntN(len(up))]
}

// chaos kills a random server at random moments until until and restarts
// it after a random pause; halfway through it restarts Postgres, if this
// run started it. One server is down at a time at most.
func (h *harness) chaos(ctx context.Context, until time.Time) (kills, restarts int) {
	pgAt := time.Now().Add(time.Duration(float64(h.cfg.duration) * h.cfg.pgRestartAfterFrac))
	pgDone := !h.ownPG
	for ctx.Err() == nil {
		wait := h.cfg.killMin + time.Duration(h.rng.Int64N(int64(h.cfg.killMax-h.cfg.killMin)+1))
		next := time.Now().Add(wait)
		if !pgDone && pgAt.Before(next) {
			sleepUntil(ctx, pgAt)
			h.restartPostgres(ctx)
			pgDone = true
			continue
		}
		if next.After(until) {
			sleepUntil(ctx, until)
			return kills, restarts
		}
		sleepUntil(ctx, next)
		// Like a load balancer, the load generator learns of the death
		// only after a health-check delay: requests cut off mid-flight and
		// refused meanwhile are retried elsewhere with the same key.
		s := h.servers[h.rng.IntN(len(h.servers))]
		s.p.kill()
		kills++
		down := h.cfg.downMin + time.Duration(h.rng.Int64N(int64(h.cfg.downMax-h.cfg.downMin)+1))
		h.logf("SIGKILLed server %d; restarting it in %s", s.idx, down.Round(time.Millisecond))
		restartAt := time.Now().Add(down)
		sleepUntil(ctx, time.Now().Add(min(healthCheckDelay, down)))
		h.mu.Lock()
		s.up = false
		h.mu.Unlock()
		sleepUntil(ctx, restartAt)
		if err := h.startServer(ctx, s); err != nil {
			h.logf("restart server %d: %v", s.idx, err)
			continue
		}
		restarts++
	}
	return kills, restarts
}

// healthCheckDelay is how long a dead server stays in rotation.
const healthCheckDelay = 500 * time.Millisecond

func (h *harness) restartPostgres(ctx context.Context) {
	h.logf("restarting Postgres (the throwaway cluster this run started)")
	if out, err := exec.CommandContext(ctx, "scripts/pg.sh", "stop").CombinedOutput(); err != nil {
		h.logf("stop Postgres: %v: %s", err, out)
		return
	}
	sleepUntil(ctx, time.Now().Add(time.Second))
	if out, err := exec.CommandContext(ctx, "scripts/pg.sh", "url-run").CombinedOutput(); err != nil {
		h.logf("start Postgres: %v: %s", err, out)
		return
	}
	h.pgRestarts++
	h.logf("Postgres is back")
}

func sleepUntil(ctx context.Context, t time.Time) {
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(t)):
	}
}

// allUp restarts any server that is down (one killed at the very end).
func (h *harness) allUp(ctx context.Context) error {
	for _, s := range h.servers {
		if s.p == nil || !s.p.alive() {
			if err := h.startServer(ctx, s); err != nil {
				return err
			}
		}
	}
	return nil
}

const qTerminal = `SELECT count(*) FROM jobs WHERE id = ANY($1) AND state IN ('succeeded', 'failed', 'canceled')`

// drain waits until every accepted job is terminal, or the drain time is up.
func (h *harness) drain(ctx context.Context, ids []string) {
	deadline := time.Now().Add(h.cfg.drain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var n int
		if err := h.admin.QueryRow(ctx, qTerminal, ids).Scan(&n); err == nil && n == len(ids) {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

const (
	qStates = `SELECT state, count(*) FROM jobs WHERE id = ANY($1) GROUP BY state`
	qSlots  = `SELECT
	(SELECT coalesce(sum(held), 0) FROM account_slots),
	(SELECT count(*) FROM jobs WHERE state IN ('dispatching', 'running')),
	(SELECT count(*) FROM account_slots a WHERE held <> (SELECT count(*) FROM jobs j
		WHERE j.tenant_id = a.tenant_id AND j.account_id = a.id AND j.state IN ('dispatching', 'running')))`
)

// check judges the run from the simulator's stats and the database.
func (h *harness) check(ctx context.Context, ids []string, fig *figures) error {
	rows, err := h.admin.Query(ctx, qStates, ids)
	if err != nil {
		return err
	}
	terminal := 0
	for rows.Next() {
		var state string
		var n int
		if err := rows.Scan(&state, &n); err != nil {
			rows.Close()
			return err
		}
		fig.States[state] = n
		if state == "succeeded" || state == "failed" || state == "canceled" {
			terminal += n
		}
	}
	rows.Close()
	fig.Lost = len(ids) - terminal
	if err := h.admin.QueryRow(ctx, `SELECT count(*) FROM jobs`).Scan(&fig.JobsInDB); err != nil {
		return err
	}
	if err := h.admin.QueryRow(ctx, qSlots).Scan(&fig.SlotsHeld, &fig.InFlight, &fig.LeakedSlots); err != nil {
		return err
	}
	st, err := h.simStats(ctx)
	if err != nil {
		return err
	}
	for _, a := range st.Accounts {
		fig.MaxPeak = max(fig.MaxPeak, a.Peak)
		if a.Peak > h.cfg.maxJobs {
			fig.PeakOver++
		}
	}
	for _, attempts := range st.Jobs {
		for _, n := range attempts {
			if n > 1 {
				fig.Double++
			}
		}
	}
	fig.Rescues = h.countLogLines("rescuing job whose lease lapsed")
	if fig.UsageOff, err = h.checkUsage(ctx); err != nil {
		return err
	}
	h.judge(fig)
	return nil
}

// qJobTotals is what usage must add up to, per pool: every placement
// started an attempt (attempt counts them), every ended job ended once.
const qJobTotals = `
SELECT tenant_id, mode, sum(attempt)::bigint, count(*) FILTER (WHERE state = 'succeeded'),
	count(*) FILTER (WHERE state = 'failed'), count(*) FILTER (WHERE state = 'canceled')
FROM jobs GROUP BY 1, 2`

// checkUsage compares each pool's usage counts (rolled up or still
// pending) with its jobs, and describes every difference.
func (h *harness) checkUsage(ctx context.Context) ([]string, error) {
	rows, err := h.admin.Query(ctx, qJobTotals)
	if err != nil {
		return nil, err
	}
	type totals struct{ started, succeeded, failed, canceled int64 }
	want := map[tenant.Scope]totals{}
	for rows.Next() {
		var sc tenant.Scope
		var t totals
		if err := rows.Scan(&sc.TenantID, &sc.Mode, &t.started, &t.succeeded, &t.failed, &t.canceled); err != nil {
			rows.Close()
			return nil, err
		}
		want[sc] = t
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var off []string
	now := time.Now()
	for sc, w := range want {
		groups, err := usage.Usage(ctx, h.admin, sc, usage.Range{From: now.Add(-24 * time.Hour), To: now.Add(time.Hour)}, usage.ByHour, "")
		if err != nil {
			return nil, err
		}
		c := usage.Total(groups)
		if got := (totals{c.Started, c.Succeeded, c.Failed, c.Canceled}); got != w {
			off = append(off, fmt.Sprintf("tenant %d %s: usage counts started/succeeded/failed/canceled %d/%d/%d/%d, the jobs %d/%d/%d/%d",
				sc.TenantID, sc.Mode, got.started, got.succeeded, got.failed, got.canceled, w.started, w.succeeded, w.failed, w.canceled))
		}
	}
	return off, nil
}

func (h *harness) judge(fig *figures) {
	v := &fig.Violations
	if fig.Lost > 0 {
		*v = append(*v, fmt.Sprintf("%d accepted jobs did not end within %s", fig.Lost, h.cfg.drain))
	}
	if fig.PeakOver > 0 {
		*v = append(*v, fmt.Sprintf("%d accounts ran more than maxJobs=%d at once (peak %d)", fig.PeakOver, h.cfg.maxJobs, fig.MaxPeak))
	}
	if fig.LeakedSlots > 0 || fig.SlotsHeld != fig.InFlight {
		*v = append(*v, fmt.Sprintf("slots held %d but jobs in flight %d (%d accounts differ)", fig.SlotsHeld, fig.InFlight, fig.LeakedSlots))
	}
	if fig.Double > 0 {
		*v = append(*v, fmt.Sprintf("%d attempts were submitted upstream more than once", fig.Double))
	}
	if fig.JobsInDB != fig.Accepted {
		*v = append(*v, fmt.Sprintf("the database holds %d jobs for %d accepted submissions (retries must replay, not duplicate)",
			fig.JobsInDB, fig.Accepted))
	}
	*v = append(*v, fig.UsageOff...)
	if fig.Accepted == 0 {
		*v = append(*v, "no job was accepted: the run proved nothing")
	}
}

func (h *harness) simStats(ctx context.Context) (sim.Stats, error) {
	var st sim.Stats
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.simURL+"/_sim/stats", nil)
	resp, err := h.client.Do(req)
	if err != nil {
		return st, fmt.Errorf("simulator stats: %w", err)
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// countLogLines counts lines holding msg in the servers' logs.
func (h *harness) countLogLines(msg string) int {
	n := 0
	files, _ := filepath.Glob(filepath.Join(h.logDir, "server*.log"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err == nil {
			n += strings.Count(string(raw), msg)
		}
	}
	return n
}

func usageVerdict(off []string) string {
	if len(off) == 0 {
		return "matches the jobs"
	}
	return fmt.Sprintf("differs in %d pools", len(off))
}

func printFigures(w io.Writer, f figures) {
	fmt.Fprintf(w, "chaos: %d jobs submitted, %d accepted in %.0fs (%d submissions retried on another server), %d in the database; states %v; lost %d\n",
		f.Submitted, f.Accepted, f.Seconds, f.SubmitErrors, f.JobsInDB, f.States, f.Lost)
	fmt.Fprintf(w, "chaos: %d SIGKILLs, %d restarts, %d rescued jobs; Postgres restarts: %d (%s)\n",
		f.Kills, f.Restarts, f.Rescues, f.PGRestarts, f.PGRestart)
	fmt.Fprintf(w, "chaos: peak %d (maxJobs %d, %d accounts over); slots held %d, in flight %d, %d accounts differ; %d double submissions; usage %s\n",
		f.MaxPeak, f.MaxJobs, f.PeakOver, f.SlotsHeld, f.InFlight, f.LeakedSlots, f.Double, usageVerdict(f.UsageOff))
	if len(f.Violations) == 0 {
		fmt.Fprintln(w, "chaos: OK, no violations")
	}
	for _, v := range f.Violations {
		fmt.Fprintln(w, "chaos: VIOLATION:", v)
	}
	if f.Violations == nil {
		f.Violations = []string{}
	}
	b, _ := json.Marshal(f)
	fmt.Fprintf(w, "%s\n", b)
}
