// Package scheduler is poolgate's durable job queue. Jobs and slot counts
// live in Postgres and change together in one transaction, so any number of
// replicas can share the queue without ever running more jobs on an account
// than its maxJobs, losing a job, or leaking a slot.
//
// The hot path is batched around Postgres. The inserter group-commits
// concurrent job creations; the dispatcher places a batch of queued jobs on
// random free accounts in one transaction; one goroutine per placed job
// submits it upstream and follows it; the completer writes what those learn
// (running, ended, slots freed, outbox rows) in one transaction per batch.
// Wake-ups travel inside a replica directly and between replicas as
// coalesced notifications sent outside those transactions, with polling as
// the fallback. The renewer keeps this replica's leases alive; the rescuer
// takes over jobs whose lease lapsed (their replica died) and fails jobs
// that outwaited their queue timeout.
package scheduler

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/pubsub"
)

// Config holds the scheduler's dependencies and tuning.
type Config struct {
	Pool     *pgxpool.Pool
	Accounts *accounts.Store
	// Providers are the upstreams by name (provider.NameLTXStudio, …); a
	// job runs on the provider of the account it is placed on.
	Providers provider.Set
	// Provider, if set, is the LTX Studio provider when Providers has none
	// (a one-upstream setup, as tests use): shorthand for
	// Providers[provider.NameLTXStudio].
	Provider provider.Provider
	Logger   *slog.Logger
	Metrics  *Metrics         // nil: no metrics
	Now      func() time.Time // nil: time.Now

	// Owner names this replica in leases; empty means a random name.
	Owner string
	// LeaseTTL is how long a replica may go silent before its jobs are
	// rescued (default 30s); leases are renewed every LeaseTTL/3.
	LeaseTTL time.Duration
	// PollInterval is the shortest wait between two status reads of a
	// running job (default 1s); PollMaxInterval the longest (default ten
	// times PollInterval). See poll.go.
	PollInterval, PollMaxInterval time.Duration
	// PollExpect is the table of how long jobs are expected to take,
	// which times a job's first status read until this replica has seen
	// jobs of its kind end (nil: no expectation until then).
	PollExpect Expectations
	// After returns a channel that receives once d has passed; it times
	// the waits between status reads (nil: time.After). Tests pass one
	// that moves a fake clock instead of waiting.
	After func(d time.Duration) <-chan time.Time
	// WakeInterval is the polling fallback should a notification be lost
	// (default 1s).
	WakeInterval time.Duration
	// RetryBase and RetryMax shape the exponential backoff of retries
	// after transient failures (defaults 2s and 5m; ±25% jitter).
	RetryBase, RetryMax time.Duration
	// Quarantine is how long a rate-limited account rests when the
	// upstream does not say (default 30m).
	Quarantine time.Duration
	// QueueTimeout is a job's default queueTimeout (default 1h).
	QueueTimeout time.Duration
	// JobTimeout bounds how long a job may run upstream (default 1h).
	JobTimeout time.Duration
	// MaxQueued is how many queued jobs a tenant may have (default 10000).
	MaxQueued int
	// Batch is how many jobs one placement transaction places at most
	// (default 64).
	Batch int
	// OnFinish, if set, runs inside the transaction that ends jobs (the
	// webhook outbox hooks in here).
	OnFinish FinishHook
	// OnStarted, if set, runs inside each placement transaction with the
	// attempts it starts; OnRetried inside the transaction that puts a
	// failed attempt's job back in the queue (usage counts hook in here).
	OnStarted, OnRetried AttemptHook
	// Listener is the replica's shared notification connection; the
	// scheduler subscribes to it in New, and the caller starts it. If nil,
	// the scheduler runs its own, opened with Listen.
	Listener *pubsub.Listener
	// Listen opens the connection notifications arrive on when Listener
	// is nil. It must be a direct connection (not through PgBouncer in
	// transaction mode); nil takes one out of Pool for good.
	Listen func(ctx context.Context) (*pgx.Conn, error)
	// NotifyInterval is how often at most this replica notifies the others
	// (default 10ms): wake-ups are coalesced to one per interval.
	NotifyInterval time.Duration
	// DispatchCooldown is how long a woken dispatcher waits for more
	// wake-ups before placing (default 2ms; negative: none).
	DispatchCooldown time.Duration
	// JobRetention is how long finished jobs are kept (default
	// DefaultJobRetention); past it, GET of a job id answers 410.
	JobRetention time.Duration
	// DispatchOff disables placement, rescue and execution: the replica
	// only serves the API (used by tests that need a quiet queue).
	DispatchOff bool
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.LeaseTTL, 30*time.Second)
	def(&c.PollInterval, time.Second)
	def(&c.PollMaxInterval, 10*c.PollInterval)
	c.PollMaxInterval = max(c.PollMaxInterval, c.PollInterval)
	if c.After == nil {
		c.After = time.After
	}
	def(&c.WakeInterval, time.Second)
	def(&c.RetryBase, 2*time.Second)
	def(&c.RetryMax, 5*time.Minute)
	def(&c.Quarantine, 30*time.Minute)
	def(&c.QueueTimeout, time.Hour)
	def(&c.JobTimeout, time.Hour)
	def(&c.NotifyInterval, 10*time.Millisecond)
	if c.DispatchCooldown == 0 {
		c.DispatchCooldown = 2 * time.Millisecond
	}
	def(&c.JobRetention, DefaultJobRetention)
	if c.MaxQueued <= 0 {
		c.MaxQueued = 10000
	}
	if c.Batch <= 0 {
		c.Batch = 64
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Owner == "" {
		c.Owner = "replica-" + rand.Text()[:10]
	}
	if c.Listen == nil {
		pool := c.Pool
		c.Listen = func(ctx context.Context) (*pgx.Conn, error) {
			conn, err := pool.Acquire(ctx)
			if err != nil {
				return nil, err
			}
			// The connection leaves the pool for good: a LISTENing
			// connection must not be handed to anyone else.
			return conn.Hijack(), nil
		}
	}
}

// Scheduler is the job queue and this replica's share of running it.
type Scheduler struct {
	cfg     Config
	log     *slog.Logger
	metrics *Metrics
	waiters *waiters
	expect  *expectations // how long jobs take, for polling
	wake    chan struct{}
	done    *completer
	signals *signals
	insert  *inserter

	ownListener *pubsub.Listener // the listener this scheduler started, if any

	mu        sync.Mutex
	inflight  map[string]*execution // by job id: jobs this replica follows
	cancel    context.CancelFunc    // stops the loops
	runCtx    context.Context       // executions' context; ends after the grace period
	stopRun   context.CancelFunc
	stopRenew context.CancelFunc // stops the renewer, once no execution is left
	stopTail  context.CancelFunc // stops the notifier, last
	tail      sync.WaitGroup     // completer, notifier
	loops     sync.WaitGroup
	renewer   sync.WaitGroup
	execs     sync.WaitGroup
	started   bool
}

// New returns a scheduler; Start runs its share of the work.
func New(cfg Config) *Scheduler {
	cfg.defaults()
	if cfg.Provider != nil && cfg.Providers[provider.NameLTXStudio] == nil {
		set := maps.Clone(cfg.Providers)
		if set == nil {
			set = provider.Set{}
		}
		set[provider.NameLTXStudio] = cfg.Provider
		cfg.Providers = set
	}
	s := &Scheduler{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "scheduler", "owner", cfg.Owner),
		metrics:  cfg.Metrics,
		waiters:  newWaiters(),
		expect:   newExpectations(cfg.PollExpect),
		wake:     make(chan struct{}, 1),
		inflight: make(map[string]*execution),
	}
	if s.cfg.Listener == nil {
		s.ownListener = pubsub.New(s.cfg.Listen, s.log)
		s.cfg.Listener = s.ownListener
	}
	s.subscribe(s.cfg.Listener)
	s.done = newCompleter(s)
	s.signals = newSignals(s, cfg.NotifyInterval)
	s.insert = newInserter(s)
	return s
}

func (s *Scheduler) now() time.Time { return s.cfg.Now().UTC().Truncate(time.Microsecond) }

// Start runs the listener and, unless DispatchOff, the dispatcher, renewer
// and rescuer, until Stop.
func (s *Scheduler) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return nil
	}
	s.started = true
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.runCtx, s.stopRun = context.WithCancel(context.WithoutCancel(ctx))
	// The renewer has its own context: Stop ends it only after the jobs in
	// flight, or their leases would lapse during the grace period and
	// another replica would rescue jobs this one still follows.
	renewCtx, stopRenew := context.WithCancel(context.WithoutCancel(ctx))
	s.stopRenew = stopRenew
	// The completer and the notifier outlive the loops: executions and
	// API calls use them until Stop has waited for those.
	s.tail.Add(2)
	go func() { defer s.tail.Done(); s.done.run() }()
	tailCtx, stopTail := context.WithCancel(context.WithoutCancel(ctx))
	s.stopTail = stopTail
	go func() { defer s.tail.Done(); s.signals.run(tailCtx) }()
	if s.ownListener != nil {
		if err := s.ownListener.Start(ctx); err != nil {
			return err
		}
	}
	if s.cfg.DispatchOff {
		return nil
	}
	s.goLoop(func() { s.dispatchLoop(loopCtx) })
	s.goLoop(func() { s.rescueLoop(loopCtx) })
	s.renewer.Add(1)
	go func() {
		defer s.renewer.Done()
		s.renewLoop(renewCtx)
	}()
	return nil
}

func (s *Scheduler) goLoop(f func()) {
	s.loops.Add(1)
	go func() {
		defer s.loops.Done()
		f()
	}()
}

// Stop stops taking jobs and gives the jobs in flight until ctx ends to
// end, renewing their leases meanwhile. Whatever is still running then is
// handed over: its lease is expired at once so another replica rescues it
// without waiting out the TTL.
func (s *Scheduler) Stop(ctx context.Context) {
	s.mu.Lock()
	if !s.started {
		s.mu.Unlock()
		s.insert.stop() // an API-only scheduler that was never started may have batched inserts
		return
	}
	s.cancel()
	s.mu.Unlock()
	// Once the dispatcher and rescuer have returned, no execution starts
	// (follow is only called from them), so the waits below are final.
	s.loops.Wait()

	done := make(chan struct{})
	go func() { s.execs.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	s.stopRun()
	s.execs.Wait()
	s.done.stop() // what the executions learned is written before the hand-over
	s.stopRenew()
	s.renewer.Wait()
	s.handOver()
	s.insert.stop()
	s.stopTail()
	s.tail.Wait()
	if s.ownListener != nil {
		s.ownListener.Stop(context.Background())
	}
}

// Wake nudges the dispatcher to look at the queue now.
func (s *Scheduler) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// sleep waits d or until ctx ends; it reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func isShutdown(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}
