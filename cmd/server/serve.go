package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/alerts"
	"github.com/poolgate/poolgate/internal/api"
	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/console"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/budget"
	"github.com/poolgate/poolgate/internal/pubsub"
	"github.com/poolgate/poolgate/internal/results"
	"github.com/poolgate/poolgate/internal/retention"
	"github.com/poolgate/poolgate/internal/scheduler"
	"github.com/poolgate/poolgate/internal/secret"
	usagestats "github.com/poolgate/poolgate/internal/usage"
	"github.com/poolgate/poolgate/internal/webhooks"
	"github.com/poolgate/poolgate/migrations"
)

// serve runs the API until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: serve takes no arguments", errUsage)
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	logger := newLogger(stderr, cfg.LogLevel)

	pool, err := openDB(ctx, cfg.DatabaseURL, cfg.DatabaseListenURL, logger)
	if err != nil {
		return err
	}
	defer pool.Close()

	box, err := secret.NewBox(cfg.SecretKey)
	if err != nil {
		return err
	}
	accountStore := accounts.NewStore(pool, box, time.Now).WithLifecycle(accounts.Lifecycle{
		RefreshLead: cfg.RefreshLead, ExpiringWithin: cfg.AlertThresholds[0].Before,
	}).WithHealth(cfg.Health.HealthConfig)
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// One Provider for every component: each call goes to the provider of
	// the account it runs as, and every caller (scheduler, refresher,
	// probes) shares one request budget per account.
	resultStore, err := newResultStore(ctx, cfg.Results, logger)
	if err != nil {
		return err
	}
	upstreamBudget := cfg.Polite.Budget
	upstreamBudget.Observe = newUpstreamMetrics(registry).observe
	upstream := provider.Set{}
	for name, p := range upstreams(cfg, resultStore) {
		upstream[name] = budget.New(p, upstreamBudget)
	}
	deliveries := newDeliveryMetrics(registry)
	webhookSecrets := webhooks.NewSecrets(pool, box)
	deliverer := webhooks.NewDeliverer(webhooks.DelivererConfig{
		Pool: pool, Secrets: webhookSecrets, Logger: logger,
		AllowPrivate: cfg.WebhookAllowPrivate, OnResult: deliveries.observe,
	})
	// One LISTEN connection for the replica, on a direct connection.
	listener := pubsub.New(pubsub.Dial(cfg.DatabaseListenURL, "poolgate-listener"), logger)
	var usageHooks usagestats.Hooks
	usageRoller := usagestats.NewRoller(pool, logger, cfg.ReplicaID, usagestats.RollupInterval)
	sched := scheduler.New(scheduler.Config{
		Listener: listener,
		Pool:     pool, Accounts: accountStore, Providers: upstream, Logger: logger,
		Metrics: scheduler.NewMetrics(registry, pool), Owner: cfg.ReplicaID,
		LeaseTTL: cfg.LeaseTTL, PollInterval: cfg.PollInterval, Quarantine: cfg.Quarantine,
		PollMaxInterval: cfg.Polite.PollMaxInterval, PollExpect: cfg.Polite.PollExpect,
		QueueTimeout: cfg.QueueTimeout, JobTimeout: cfg.JobTimeout, MaxQueued: cfg.MaxQueued,
		OnFinish:  scheduler.FinishHooks(api.JobWebhook(deliverer.Wake), usageHooks.Finished),
		OnStarted: usageHooks.Started, OnRetried: usageHooks.Retried,
		JobRetention: cfg.Retention.Jobs,
	})
	// keys
	keyStore := auth.NewStore(pool, time.Now).WithDefaultRateLimit(cfg.KeyRateLimit)
	keyCache := auth.NewCache(keyStore, logger, cfg.KeyCacheTTL)
	keyCache.Listen(listener)
	keyUsage := auth.NewUsage(pool, logger, time.Now, cfg.KeyUsageFlushEvery)

	credMetrics := newCredentialMetrics(registry, accountStore.StatusCollector(), accountStore.SlotCollector())
	refresher := accounts.NewRefresher(accounts.RefresherConfig{
		Store: accountStore, Provider: upstream, Logger: logger,
		Lead: cfg.RefreshLead, Interval: cfg.RefreshInterval, OnOutcome: credMetrics.refreshed,
	})
	alerter, err := alerts.New(alerts.Config{
		Pool: pool, Logger: logger, Schedule: cfg.AlertSchedule, Thresholds: cfg.AlertThresholds,
		URL: cfg.AlertWebhookURL, Format: cfg.AlertFormat, Wake: deliverer.Wake, OnRaised: credMetrics.raised,
	})
	if err != nil {
		return err
	}
	healthM := newHealthMetrics(registry)
	onHealth, afterHealth := healthHooks(healthM, alerter)
	accountStore.WithHooks(accounts.Hooks{
		OnRegister: []accounts.RegisterHook{scheduler.AdoptJobs, alerts.ResolveAccount},
		OnHealth:   onHealth, AfterHealth: afterHealth,
	})
	prober := newProber(accountStore, upstream, cfg, healthM, logger)
	cleaner, err := newRetention(pool, logger, cfg.Retention, resultStore)
	if err != nil {
		return err
	}
	alertStore := alerts.NewStore(pool, time.Now, cfg.WebhookAllowPrivate)
	usageStore := usagestats.NewStore(pool)
	handler := api.New(api.Deps{
		Logger:               logger,
		DB:                   pool,
		Keys:                 keyStore,
		Verifier:             keyCache,
		Limits:               auth.NewLimiter(cfg.KeyRateLimit, time.Now),
		Usage:                keyUsage,
		Accounts:             accountStore,
		Jobs:                 sched,
		Alerts:               alertStore,
		UsageStats:           usageStore,
		Secrets:              webhookSecrets,
		AllowPrivateWebhooks: cfg.WebhookAllowPrivate,
		OnJobCreated:         keyUsage.JobSubmitted,
		Results:              resultStore,
		Console: console.New(console.Deps{
			Logger: logger, Verifier: keyCache, Accounts: accountStore, Jobs: sched, Alerts: alertStore, Keys: keyStore,
			Stats: scheduler.NewStats(pool), Sessions: auth.NewSessionStore(pool, box, time.Now, console.DefaultTimeouts),
			Deliveries: webhooks.NewDeliveryLog(pool), Usage: usageStore,
			ExpiringWithin: cfg.AlertThresholds[0].Before,
		}),
	})

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on POOLGATE_ADDR=%s: %w", cfg.Addr, err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      2 * time.Minute, // above the longest ?wait= long-poll
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("listening", "addr", ln.Addr().String(), "upstream", cfg.UpstreamURL, "ltxapi", cfg.LTXAPI.URL)
	stopMetrics, err := startMetrics(cfg.MetricsAddr, cfg.MetricsAccountLabel, registry, logger)
	if err != nil {
		return err
	}
	defer stopMetrics()
	// Every background loop, in start order; they stop in reverse, so the
	// listener outlives its subscribers and key usage is written after the
	// last request was served.
	services := []service{listener, keyCache, keyUsage, usageRoller, deliverer, sched, refresher, prober, alerter, cleaner}
	for i, s := range services {
		if err := s.Start(ctx); err != nil {
			stopAll(services[:i], nil)
			return err
		}
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	shutdownErr := srv.Shutdown(sctx)
	// Jobs in flight get what is left of the timeout to end; the rest are
	// handed over to other replicas. The other services get a moment of
	// their own, so the last usage counts are written even when the jobs
	// used the whole timeout.
	stopAll(services, map[service]context.Context{sched: sctx})
	if shutdownErr != nil {
		return fmt.Errorf("shutdown: %w", shutdownErr)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Info("stopped")
	return nil
}

// service is the one shape of poolgate's background loops.
type service interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context)
}

// stopAll stops services in reverse order, each with the context ctxs
// gives it or else 10 seconds of its own.
func stopAll(services []service, ctxs map[service]context.Context) {
	for i := len(services) - 1; i >= 0; i-- {
		s := services[i]
		ctx, ok := ctxs[s]
		if !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
		}
		s.Stop(ctx)
	}
}

// deliveryMetrics counts webhook delivery attempts by outcome.
type deliveryMetrics struct{ c *prometheus.CounterVec }

func newDeliveryMetrics(reg prometheus.Registerer) deliveryMetrics {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "poolgate_webhook_deliveries_total", Help: "Webhook delivery attempts, by outcome."}, []string{"outcome"})
	reg.MustRegister(c)
	return deliveryMetrics{c}
}

func (m deliveryMetrics) observe(outcome string) { m.c.WithLabelValues(outcome).Inc() }

// openDB connects and brings the schema up to date; it refuses a schema
// newer than this binary knows, since it could misread its tables.
// Migrations hold a session lock, so they run on directURL, which is url
// unless queries go through a pooler in transaction mode.
func openDB(ctx context.Context, url, directURL string, logger *slog.Logger) (*pgxpool.Pool, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("database unreachable: %w", err)
	}
	direct := pool
	if directURL != url {
		if direct, err = pgxpool.New(ctx, directURL); err != nil {
			pool.Close()
			return nil, fmt.Errorf("DATABASE_LISTEN_URL: %w", err)
		}
		defer direct.Close()
	}
	n, err := migrations.Apply(ctx, direct)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	logger.Info("database ready", "migrations_applied", n)
	return pool, nil
}

// migrate applies migrations and exits.
func migrate(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) error {
	url, err := databaseURL(getenv)
	if err != nil {
		return err
	}
	pool, err := openDB(ctx, url, listenURL(getenv, url), newLogger(stderr, slog.LevelWarn))
	if err != nil {
		return err
	}
	pool.Close()
	fmt.Fprintln(stdout, "schema is up to date")
	return nil
}

// credentialMetrics count token refreshes and alerts, and report accounts
// by status (read from Postgres at scrape time).
type credentialMetrics struct {
	refreshes, alerts *prometheus.CounterVec
}

func newCredentialMetrics(reg prometheus.Registerer, accountCollectors ...prometheus.Collector) credentialMetrics {
	m := credentialMetrics{
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "poolgate_token_refreshes_total", Help: "Token refreshes, by outcome."}, []string{"outcome"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "poolgate_alerts_raised_total", Help: "Credential alerts raised, by kind."}, []string{"kind"}),
	}
	reg.MustRegister(m.refreshes, m.alerts)
	reg.MustRegister(accountCollectors...)
	return m
}

func (m credentialMetrics) refreshed(outcome string) { m.refreshes.WithLabelValues(outcome).Inc() }
func (m credentialMetrics) raised(kind string)       { m.alerts.WithLabelValues(kind).Inc() }

// newRetention wires each table's owner's delete function into the one
// cleanup service.
func newRetention(pool *pgxpool.Pool, logger *slog.Logger, r retentionConfig, store results.Store) (*retention.Service, error) {
	pause := r.Pause
	if pause == 0 {
		pause = -1 // the operator asked for none; the service reads 0 as its default
	}
	return retention.New(retention.Config{
		DB: pool, Logger: logger, Now: time.Now, Interval: r.Interval, Batch: r.Batch, Pause: pause,
		Cleanups: cleanups(r, store),
	})
}

// cleanups lists each table's owner's delete function with its period
// (the bench's soak runs the same list).
// Deleted jobs schedule their stored results for deletion in the same
// transaction; job_results then deletes them from store, right after in
// the same pass.
func cleanups(r retentionConfig, store results.Store) []retention.Cleanup {
	return []retention.Cleanup{
		{Name: "jobs", Retention: r.Jobs, Delete: scheduler.DeleteFinishedJobsWith(forgetResults)},
		// Rows are due as soon as they exist; the retention is unused.
		{Name: "job_results", Retention: time.Nanosecond, Delete: results.DeleteScheduled(store)},
		{Name: "job_idempotency", Retention: max(r.Idempotency, scheduler.IdempotencyWindow), Delete: scheduler.DeleteExpiredIdempotencyKeys},
		{Name: "webhook_deliveries", Retention: r.Webhooks, Delete: webhooks.DeleteDoneDeliveries},
		{Name: "alerts", Retention: r.Alerts, Delete: alerts.DeleteResolvedAlerts},
		{Name: "cron_runs", Retention: r.CronRuns, Delete: alerts.DeleteStaleCronRuns},
		{Name: "usage_hourly", Retention: r.Usage, Delete: usagestats.DeleteOld},
		// Releases of deleted accounts are due at once, like job_results.
		{Name: "account_slot_releases", Retention: time.Nanosecond, Delete: accounts.DeleteOrphanReleases},
	}
}
