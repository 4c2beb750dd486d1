package scheduler_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/pgtest"
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
	scope    tenant.Scope
	maxJobs  map[string]int
}

func newWorld(t *testing.T, cfg sim.Config) *world {
	t.Helper()
	pool := pgtest.New(t)
	key := make([]byte, secret.KeySize)
	rand.Read(key)
	box, _ := secret.NewBox(key)
	s := sim.New(cfg, nil)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	w := &world{t: t, pool: pool, sim: s, simURL: srv.URL, accounts: accounts.NewStore(pool, box, time.Now),
		maxJobs: map[string]int{}}
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
	for i := range n {
		email := fmt.Sprintf("a%d@x.io", len(w.maxJobs)+i)
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
	cfg := scheduler.Config{
		Pool: w.pool, Accounts: w.accounts, Provider: ltxstudio.New(w.simURL, nil), Logger: testLogger(w.t),
		LeaseTTL: 3 * time.Second, PollInterval: 20 * time.Millisecond, WakeInterval: 200 * time.Millisecond,
		RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
	}
	if tune != nil {
		tune(&cfg)
	}
	s := scheduler.New(cfg)
	s.Start(context.Background())
	w.t.Cleanup(func() { s.Stop(5 * time.Second) })
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
		SELECT count(*) FROM accounts a WHERE running <> (SELECT count(*) FROM jobs j
		WHERE j.tenant_id = a.tenant_id AND j.account_id = a.id AND j.state IN ('dispatching','running'))`).Scan(&leaked)
	if leaked > 0 {
		w.t.Errorf("%d accounts' running counts differ from their jobs in flight", leaked)
	}
	return st
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("POOLGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func hasPrefix(s, p string) bool { return strings.HasPrefix(s, p) }
