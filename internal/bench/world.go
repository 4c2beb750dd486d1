package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/scheduler"
	"github.com/poolgate/poolgate/internal/secret"
	"github.com/poolgate/poolgate/internal/tenant"
	"github.com/poolgate/poolgate/internal/usage"
	"github.com/poolgate/poolgate/migrations"
)

// databases creates the bench's databases on one server: a migrated
// template made once per bench run, and a clone of it per scenario run, so
// no run sees another's rows. Everything it created is dropped by close.
type databases struct {
	server   string // URL of a database on the server, used for CREATE/DROP
	template string
	mu       sync.Mutex
	made     []string
}

func newDatabases(ctx context.Context, server string) (*databases, error) {
	d := &databases{server: server, template: "poolgate_bench_" + randomHex(6)}
	if err := d.exec(ctx, "CREATE DATABASE "+d.template); err != nil {
		return nil, fmt.Errorf("create bench database (does the user have CREATEDB?): %w", err)
	}
	d.made = append(d.made, d.template)
	u, err := dbx.WithDatabase(server, d.template)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	if _, err := migrations.Apply(ctx, pool); err != nil {
		return nil, fmt.Errorf("migrate bench database: %w", err)
	}
	return d, nil
}

// clone returns the name and URL of a fresh migrated database.
func (d *databases) clone(ctx context.Context, tag string) (string, string, error) {
	name := d.template + "_" + tag
	if err := d.exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+d.template); err != nil {
		return "", "", err
	}
	d.mu.Lock()
	d.made = append(d.made, name)
	d.mu.Unlock()
	u, err := dbx.WithDatabase(d.server, name)
	return name, u, err
}

// drop removes one database made by clone.
func (d *databases) drop(ctx context.Context, name string) error {
	return d.exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
}

// close drops every database this run made, template last.
func (d *databases) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for i := len(d.made) - 1; i >= 0; i-- {
		if err := d.drop(ctx, d.made[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (d *databases) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, d.server)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", redact(d.server), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// world is one scenario run: a fresh database, the simulator on loopback,
// a tenant and its pool of accounts, and the replicas sharing them.
type world struct {
	cfg     Config
	dbName  string
	dbURL   string
	admin   *pgxpool.Pool // the bench's own connections: setup and checks
	box     *secret.Box
	sim     *sim.Server
	simURL  string
	simSrv  *http.Server
	scope   tenant.Scope
	key     string // an API key of the tenant, for HTTP scenarios
	maxJobs map[string]int
	// statements says whether pg_stat_statements counts this database's
	// statements (see statementsAvailable).
	statements bool
	// finished counts terminal transitions seen by any replica's finish
	// hook: a cheap progress signal, confirmed against the database.
	finished atomic.Int64
	replicas []*replica
}

func newWorld(ctx context.Context, cfg Config, dbs *databases, tag string, simCfg sim.Config) (_ *world, err error) {
	name, u, err := dbs.clone(ctx, tag)
	if err != nil {
		return nil, fmt.Errorf("create scenario database: %w", err)
	}
	w := &world{cfg: cfg, dbName: name, dbURL: u, maxJobs: map[string]int{}}
	defer func() {
		if err != nil {
			w.close(dbs)
		}
	}()
	if w.admin, err = pgxpool.New(ctx, u); err != nil {
		return nil, err
	}
	key := make([]byte, secret.KeySize)
	rand.Read(key)
	if w.box, err = secret.NewBox(key); err != nil {
		return nil, err
	}
	w.sim = sim.New(simCfg, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	w.simSrv = &http.Server{Handler: w.sim, ReadHeaderTimeout: 10 * time.Second}
	go w.simSrv.Serve(ln)
	w.simURL = "http://" + ln.Addr().String()

	_, secretKey, err := auth.NewStore(w.admin, time.Now).Bootstrap(ctx, "bench", auth.KeyParams{Name: "bench"})
	if err != nil {
		return nil, fmt.Errorf("issue bench key: %w", err)
	}
	p, err := auth.NewStore(w.admin, time.Now).Verify(ctx, secretKey)
	if err != nil {
		return nil, fmt.Errorf("verify bench key: %w", err)
	}
	w.key, w.scope = secretKey, p.Scope
	w.statements = statementsAvailable(ctx, w.admin)
	return w, nil
}

// close stops the replicas and the simulator and drops the database.
func (w *world) close(dbs *databases) {
	w.stopReplicas()
	if w.simSrv != nil {
		w.simSrv.Close()
	}
	if w.admin != nil {
		w.admin.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := dbs.drop(ctx, w.dbName); err != nil {
		fmt.Fprintf(w.cfg.Progress, "bench: drop database %s: %v\n", w.dbName, err)
	}
}

// addAccounts registers n accounts with maxJobs slots each, in parallel.
func (w *world) addAccounts(ctx context.Context, n, maxJobs int) error {
	store := accounts.NewStore(w.admin, w.box, time.Now)
	exp, rexp := time.Now().Add(24*time.Hour), time.Now().Add(90*24*time.Hour)
	emails := make([]string, n)
	for i := range emails {
		emails[i] = fmt.Sprintf("acct%05d@bench.invalid", i)
	}
	err := parallel(ctx, 8, n, func(ctx context.Context, i int) error {
		_, err := store.Register(ctx, w.scope, accounts.Registration{
			Cookie: sim.Cookie(emails[i], exp, rexp), MaxJobs: &maxJobs})
		return err
	})
	if err != nil {
		return fmt.Errorf("register accounts: %w", err)
	}
	for _, e := range emails {
		w.maxJobs[e] = maxJobs
	}
	return nil
}

// replica is one in-process poolgate replica: its own connection pool (as
// a separate process would have) and scheduler.
type replica struct {
	pool   *pgxpool.Pool
	sched  *scheduler.Scheduler
	store  *accounts.Store
	roller *usage.Roller
}

// newReplicas makes n replicas; their schedulers start only with
// startReplicas, so that the insert phase can be measured alone.
func (w *world) newReplicas(ctx context.Context, n int, tune func(*scheduler.Config)) error {
	hc := upstreamClient(w.cfg.UpstreamConns)
	for i := range n {
		pool, err := pgxpool.New(ctx, w.dbURL) // the same defaults as poolgate serve
		if err != nil {
			return err
		}
		store := accounts.NewStore(pool, w.box, time.Now)
		owner := fmt.Sprintf("bench-%d", i)
		// Usage is recorded and rolled up as poolgate serve does it, so the
		// bench counts its statements and commits.
		var uh usage.Hooks
		sc := scheduler.Config{
			Pool: pool, Accounts: store, Provider: ltxstudio.New(w.simURL, hc), Logger: w.cfg.Logger,
			Owner: owner, PollInterval: w.cfg.PollInterval, MaxQueued: 10_000_000,
			OnFinish: scheduler.FinishHooks(func(_ context.Context, _ pgx.Tx, jobs []scheduler.Job) error {
				w.finished.Add(int64(len(jobs)))
				return nil
			}, uh.Finished),
			OnStarted: uh.Started, OnRetried: uh.Retried,
		}
		if tune != nil {
			tune(&sc)
		}
		w.replicas = append(w.replicas, &replica{pool: pool, sched: scheduler.New(sc), store: store,
			roller: usage.NewRoller(pool, w.cfg.Logger, owner, usage.RollupInterval)})
	}
	return nil
}

func (w *world) startReplicas(ctx context.Context) {
	for _, r := range w.replicas {
		r.sched.Start(ctx)
		r.roller.Start(ctx)
	}
}

func (w *world) stopReplicas() {
	var wg sync.WaitGroup
	for _, r := range w.replicas {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			r.sched.Stop(ctx)
			r.roller.Stop(ctx)
			r.pool.Close()
		})
	}
	wg.Wait()
	w.replicas = nil
}

// upstreamClient is the HTTP client replicas use to reach the simulator.
// conns 0 keeps net/http's defaults, which is what poolgate serve uses.
func upstreamClient(conns int) *http.Client {
	if conns <= 0 {
		return nil
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = conns, conns
	return &http.Client{Transport: t, Timeout: 60 * time.Second}
}

// benchKeyID stands for the API key that creates the bench's jobs.
const benchKeyID = "key_bench"

// createJobs queues n jobs from producers goroutines and returns their ids
// in creation order. It creates them through a scheduler of its own, on a
// pool with a connection per producer (the API replicas of a deployment),
// closed when done so that Postgres publishes its counters. It also
// returns the CPU the phase cost here and in Postgres (see cpuMeter).
func (w *world) createJobs(ctx context.Context, n, producers int) (ids []string, self, pg time.Duration, err error) {
	ids = make([]string, n)
	nj := scheduler.NewJob{Type: "video", Params: []byte(`{"prompt":"bench"}`), KeyID: benchKeyID}
	self, pg, err = w.produce(ctx, producers, n, func(ctx context.Context, sched *scheduler.Scheduler, i int) error {
		j, _, err := sched.Create(ctx, w.scope, nj, nil)
		ids[i] = j.ID
		return err
	})
	return ids, self, pg, err
}

// createJobsBatched is createJobs through CreateMany, batch jobs at a
// time, as POST /v1/jobs/batch queues them.
func (w *world) createJobsBatched(ctx context.Context, n, producers, batch int) (ids []string, self, pg time.Duration, err error) {
	ids = make([]string, n)
	batches := (n + batch - 1) / batch
	self, pg, err = w.produce(ctx, producers, batches, func(ctx context.Context, sched *scheduler.Scheduler, b int) error {
		lo, hi := b*batch, min((b+1)*batch, n)
		items := make([]scheduler.BatchItem, hi-lo)
		for i := range items {
			items[i] = scheduler.BatchItem{Job: scheduler.NewJob{Type: "video", Params: []byte(`{"prompt":"bench"}`), KeyID: benchKeyID}}
		}
		res, err := sched.CreateMany(ctx, w.scope, items)
		if err != nil {
			return err
		}
		for i, r := range res {
			if r.Err != nil {
				return r.Err
			}
			ids[lo+i] = r.Job.ID
		}
		return nil
	})
	return ids, self, pg, err
}

// produce runs f(0..n-1) from producers goroutines on a scheduler of the
// producers' own (its pool has a connection per producer and is closed
// when done, so that Postgres publishes its counters), and returns the
// CPU the phase cost here and in Postgres.
func (w *world) produce(ctx context.Context, producers, n int, f func(context.Context, *scheduler.Scheduler, int) error) (self, pg time.Duration, err error) {
	meter := startCPU(ctx, w.admin, w.dbName)
	sched, closeProducer, err := w.producer(ctx, producers)
	if err != nil {
		return 0, 0, err
	}
	defer w.waitGone(ctx, producerApp)
	defer closeProducer()
	err = parallel(ctx, producers, n, func(ctx context.Context, i int) error { return f(ctx, sched, i) })
	self, pg = meter.stop(ctx)
	return self, pg, err
}

// producer is a scheduler that only queues jobs, on a pool of conns
// connections of its own (named producerApp), as an API replica of a
// deployment would; close stops both.
func (w *world) producer(ctx context.Context, conns int) (sched *scheduler.Scheduler, close func(), err error) {
	pc, err := pgxpool.ParseConfig(w.dbURL)
	if err != nil {
		return nil, nil, err
	}
	pc.MaxConns = int32(max(conns, 1))
	pc.ConnConfig.RuntimeParams["application_name"] = producerApp
	pool, err := pgxpool.NewWithConfig(context.WithoutCancel(ctx), pc)
	if err != nil {
		return nil, nil, err
	}
	sched = scheduler.New(scheduler.Config{Pool: pool, Accounts: accounts.NewStore(pool, w.box, time.Now),
		Logger: w.cfg.Logger, MaxQueued: 10_000_000, DispatchOff: true})
	return sched, func() { sched.Stop(context.WithoutCancel(ctx)); pool.Close() }, nil
}

// producerApp names the producers' connections in pg_stat_activity.
const producerApp = "poolgate-bench-producer"

// waitGone waits (up to 5s) until the connections named app have left,
// so that their counters are published before the next phase starts.
func (w *world) waitGone(ctx context.Context, app string) {
	for range 100 {
		var n int
		err := w.admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2`,
			w.dbName, app).Scan(&n)
		if err != nil || n == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// parallel runs f(0..n-1) on workers goroutines and returns the first error.
func parallel(ctx context.Context, workers, n int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		return u.String()
	}
	return "(DATABASE_URL)"
}
