package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/alerts"
	"github.com/poolgate/poolgate/internal/retention"
	"github.com/poolgate/poolgate/internal/scheduler"
	"github.com/poolgate/poolgate/internal/webhooks"
)

// retentionConfig is how long finished rows are kept and how the cleanup
// runs (POOLGATE_*_RETENTION, POOLGATE_RETENTION_*).
type retentionConfig struct {
	Jobs, Idempotency, Webhooks, Alerts, CronRuns time.Duration

	Interval time.Duration
	Batch    int
	Pause    time.Duration
}

// loadRetentionConfig reads the retention periods (days like 7d, or Go
// durations) and the cleanup's pace.
func loadRetentionConfig(e env, c *config, problems *[]error) {
	r := &c.Retention
	r.Jobs = e.period("POOLGATE_JOB_RETENTION", "7d", problems)
	r.Idempotency = e.period("POOLGATE_IDEMPOTENCY_RETENTION", "24h", problems)
	r.Webhooks = e.period("POOLGATE_WEBHOOK_RETENTION", "7d", problems)
	r.Alerts = e.period("POOLGATE_ALERT_RETENTION", "30d", problems)
	r.CronRuns = e.period("POOLGATE_CRON_RUN_RETENTION", "7d", problems)
	r.Interval = e.duration("POOLGATE_RETENTION_INTERVAL", "5m", problems)
	r.Batch = e.integer("POOLGATE_RETENTION_BATCH", retention.DefaultBatch, problems)
	r.Pause = e.duration("POOLGATE_RETENTION_PAUSE", "100ms", problems)
	if r.Idempotency < scheduler.IdempotencyWindow {
		*problems = append(*problems, fmt.Errorf("POOLGATE_IDEMPOTENCY_RETENTION must be at least %s, the window in which a key is honoured", scheduler.IdempotencyWindow))
	}
	if r.Interval <= 0 {
		*problems = append(*problems, errors.New("POOLGATE_RETENTION_INTERVAL must be above 0"))
	}
}

// period reads a positive retention period: whole or fractional days
// ("7d", "1.5d") or a Go duration ("36h", "90m").
func (e env) period(name, def string, problems *[]error) time.Duration {
	v := e.get(name, def)
	d, err := time.ParseDuration(v)
	if days, ok := strings.CutSuffix(v, "d"); ok {
		var n float64
		n, err = strconv.ParseFloat(days, 64)
		d = time.Duration(n * float64(24*time.Hour))
		if n > 36500 {
			err = errors.New("too long")
		}
	}
	if err != nil || d <= 0 {
		*problems = append(*problems, fmt.Errorf("%s=%q is not a positive period like 7d or 36h", name, v))
	}
	return d
}

// newRetention wires each table's owner's delete function into the one
// cleanup service.
func newRetention(pool *pgxpool.Pool, logger *slog.Logger, r retentionConfig) (*retention.Service, error) {
	pause := r.Pause
	if pause == 0 {
		pause = -1 // the operator asked for none; the service reads 0 as its default
	}
	return retention.New(retention.Config{
		DB: pool, Logger: logger, Now: time.Now, Interval: r.Interval, Batch: r.Batch, Pause: pause,
		Cleanups: []retention.Cleanup{
			{Name: "jobs", Retention: r.Jobs, Delete: scheduler.DeleteFinishedJobs},
			{Name: "job_idempotency", Retention: max(r.Idempotency, scheduler.IdempotencyWindow), Delete: scheduler.DeleteExpiredIdempotencyKeys},
			{Name: "webhook_deliveries", Retention: r.Webhooks, Delete: webhooks.DeleteDoneDeliveries},
			{Name: "alerts", Retention: r.Alerts, Delete: alerts.DeleteResolvedAlerts},
			{Name: "cron_runs", Retention: r.CronRuns, Delete: alerts.DeleteStaleCronRuns},
		},
	})
}
