package scheduler_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/pgtest"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/scheduler"
)

// TestThroughPgBouncer: two replicas whose queries go through a real
// PgBouncer in transaction mode (a server connection per transaction, no
// prepared statements kept) and whose notifications arrive on direct
// connections, as DATABASE_URL and DATABASE_LISTEN_URL set them up in
// production. Every job ends, no account runs more than maxJobs, and no
// slot leaks.
func TestThroughPgBouncer(t *testing.T) {
	t.Parallel()
	w := newWorld(t, simWith(func(c *sim.Config) { c.JobDuration, c.Jitter = 50*time.Millisecond, 20*time.Millisecond }))
	w.addAccounts(3, 2)
	direct := w.pool.Config().ConnString()
	through := pgtest.Bouncer(t, direct)

	var replicas []*scheduler.Scheduler
	for i := range 2 {
		pc, err := pgxpool.ParseConfig(through + "&default_query_exec_mode=cache_describe")
		if err != nil {
			t.Fatal(err)
		}
		pool, err := pgxpool.NewWithConfig(context.Background(), pc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		cfg := w.replicaConfig()
		cfg.Pool = pool
		cfg.Owner = fmt.Sprint("bouncer-", i)
		cfg.Listen = func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, direct) }
		replicas = append(replicas, w.start(cfg))
	}

	const jobs = 60
	var wg sync.WaitGroup
	for i := range jobs {
		wg.Go(func() { w.create(replicas[i%2], video(fmt.Sprint("through the bouncer ", i))) })
	}
	wg.Wait()
	w.waitTerminal(60 * time.Second)
	if n := w.count(`SELECT count(*)::int FROM jobs WHERE state = 'succeeded'`); n != jobs {
		t.Errorf("%d of %d jobs succeeded", n, jobs)
	}
	st := w.settled()
	t.Logf("upstream peaks %v", st.Accounts)
}
