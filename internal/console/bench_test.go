package console_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/alerts"
	"github.com/poolgate/poolgate/internal/api"
	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/console"
	"github.com/poolgate/poolgate/internal/pgtest"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/scheduler"
	"github.com/poolgate/poolgate/internal/secret"
)

// jobsSeed inserts $3 ended jobs, created over the last hour before $4.
const jobsSeed = `
INSERT INTO jobs (tenant_id, id, mode, type, params, state, account_id, account_email, attempt, max_attempts,
	run_after, queue_deadline, created_at, started_at, finished_at, error_code, error_message, result)
SELECT $1, 'job_00' || lpad(i::text, 24, '0'), $2, CASE WHEN i % 3 = 0 THEN 'image' ELSE 'video' END,
	'{"prompt":"bench"}', CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'succeeded' END, 1,
	'acct' || lpad((i % 10000)::text, 5, '0') || '@bench.invalid', 1, 3,
	t, t + interval '1 hour', t, t + interval '2 seconds', t + interval '30 seconds',
	CASE WHEN i % 10 = 0 THEN 'upstream_failed' END, CASE WHEN i % 10 = 0 THEN 'generation failed' END,
	CASE WHEN i % 10 <> 0 THEN '{"url":"https://cdn.example/v.mp4"}'::jsonb END
FROM generate_series(1, $3::int) AS i, LATERAL (SELECT $4::timestamptz - (i % 3600) * interval '1 second' - interval '31 seconds' AS t) AS c`

// BenchmarkConsolePages measures each page's server time (the real router,
// no network) on a pool of 10,000 accounts and 100,000 queued jobs, the
// size issue 11 asks to stay under 200 ms:
//
//	go test ./internal/console -run '^$' -bench ConsolePages -benchtime 20x -timeout 30m
func BenchmarkConsolePages(b *testing.B) {
	const nAccounts, nJobs, nQueued = 10_000, 100_000, 10_000
	ctx := context.Background()
	key := make([]byte, secret.KeySize)
	rand.Read(key)
	box, _ := secret.NewBox(key)
	pool := pgtest.New(b)
	logger := slog.New(slog.DiscardHandler)
	keys := auth.NewStore(pool, time.Now)
	_, admin, err := keys.Bootstrap(ctx, "acme", auth.KeyParams{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	p, err := keys.Verify(ctx, admin)
	if err != nil {
		b.Fatal(err)
	}
	accountStore := accounts.NewStore(pool, box, time.Now)
	sched := scheduler.New(scheduler.Config{Pool: pool, Accounts: accountStore, Logger: logger,
		MaxQueued: 10_000_000, DispatchOff: true})

	start := time.Now()
	exp, rexp := time.Now().Add(24*time.Hour), time.Now().Add(90*24*time.Hour)
	maxJobs := 20
	if err := parallel(8, nAccounts, func(i int) error {
		_, err := accountStore.Register(ctx, p.Scope, accounts.Registration{
			Cookie: sim.Cookie(fmt.Sprintf("acct%05d@bench.invalid", i), exp, rexp), MaxJobs: &maxJobs})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	// Most of a busy pool's jobs have ended. Creating 100,000 through the
	// scheduler would mostly measure its queue limit check, so the ended
	// ones go in with one INSERT (test-only knowledge of the jobs table),
	// spread over the last hour so the Live chart has work to do, and the
	// queued ones through the scheduler.
	if _, err := pool.Exec(ctx, jobsSeed, p.TenantID, p.Mode, nJobs-nQueued, time.Now().UTC()); err != nil {
		b.Fatal(err)
	}
	nj := scheduler.NewJob{Type: "video", Params: []byte(`{"prompt":"bench"}`)}
	if err := parallel(8, nQueued, func(int) error {
		_, _, err := sched.Create(ctx, p.Scope, nj, nil)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d accounts and %d jobs in %s", nAccounts, nJobs, time.Since(start).Round(time.Second))

	sessions := auth.NewSessionStore(pool, box, time.Now, console.DefaultTimeouts)
	alertStore := alerts.NewStore(pool, time.Now, true)
	router := func(chartTTL time.Duration) http.Handler {
		return api.New(api.Deps{Logger: logger, DB: pool, Keys: keys, Accounts: accountStore, Jobs: sched, Alerts: alertStore,
			Console: console.New(console.Deps{Logger: logger, Verifier: keys, Sessions: sessions, Accounts: accountStore,
				Jobs: sched, Alerts: alertStore, Keys: keys, Stats: scheduler.NewStats(pool), ChartTTL: chartTTL})})
	}
	h, uncached := router(0), router(-1)
	token, _, err := sessions.Create(ctx, p, admin)
	if err != nil {
		b.Fatal(err)
	}
	for _, page := range []string{"/console/pool", "/console/pool?page=50", "/console/pool?q=acct09999",
		"/console/live", "/console/live.json", "/console/live/chart.svg",
		"/console/jobs", "/console/jobs?state=queued", "/console/jobs?account=nobody", "/console/alerts", "/console/keys",
		"uncached/console/live/chart.svg"} {
		h, name := h, page
		if p, ok := strings.CutPrefix(page, "uncached"); ok {
			h, page = uncached, p // what the chart costs every 10 s
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, page, nil)
				req.AddCookie(&http.Cookie{Name: "poolgate_console", Value: token})
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", page, rec.Code, rec.Body)
				}
			}
		})
	}
}

// parallel runs f(0..n-1) on workers goroutines and returns the first error.
func parallel(workers, n int, f func(i int) error) error {
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
