package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/poolgate/poolgate/internal/alerts"
	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/retention"
	"github.com/poolgate/poolgate/internal/scheduler"
	"github.com/poolgate/poolgate/internal/secret"
	"github.com/poolgate/poolgate/internal/webhooks"
)

// config is serve's configuration, read once from the environment. Only
// this package sees it whole; components get the fields they need.
type config struct {
	DatabaseURL string
	// DatabaseListenURL is a direct connection (never through PgBouncer in
	// transaction mode) for LISTEN and the migrations' session lock.
	DatabaseListenURL string
	Addr              string
	SecretKey         []byte
	LogLevel          slog.Level
	ShutdownTimeout   time.Duration

	UpstreamURL         string
	ReplicaID           string
	MaxQueued           int
	QueueTimeout        time.Duration
	JobTimeout          time.Duration
	LeaseTTL            time.Duration
	PollInterval        time.Duration
	Quarantine          time.Duration
	WebhookAllowPrivate bool

	RefreshLead     time.Duration
	RefreshInterval time.Duration
	AlertSchedule   string
	AlertThresholds []alerts.Threshold
	AlertWebhookURL string
	AlertFormat     string

	MetricsAddr         string // where GET /metrics is served; "off": nowhere
	MetricsAccountLabel string // email or hash

	// keys
	KeyRateLimit       auth.RateLimit
	KeyCacheTTL        time.Duration
	KeyUsageFlushEvery time.Duration

	Retention retentionConfig
	Polite    politeConfig
	Health    healthConfig
	Results   resultsConfig

	LTXAPI ltxAPIConfig
}

// env reads one variable with its default.
type env func(string) string

func (e env) get(name, def string) string {
	if v := strings.TrimSpace(e(name)); v != "" {
		return v
	}
	return def
}

func (e env) duration(name, def string, errs *[]error) time.Duration {
	v := e.get(name, def)
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		*errs = append(*errs, fmt.Errorf("%s=%q is not a duration like 30s or 5m", name, v))
	}
	return d
}

func (e env) integer(name string, def int, errs *[]error) int {
	v := e.get(name, strconv.Itoa(def))
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		*errs = append(*errs, fmt.Errorf("%s=%q is not a positive integer", name, v))
	}
	return n
}

func (e env) boolean(name string, errs *[]error) bool {
	v := e.get(name, "false")
	b, err := strconv.ParseBool(v)
	if err != nil {
		*errs = append(*errs, fmt.Errorf("%s=%q must be true or false", name, v))
	}
	return b
}

func databaseURL(getenv func(string) string) (string, error) {
	u := env(getenv).get("DATABASE_URL", "")
	if u == "" {
		return "", errors.New("DATABASE_URL is not set (make run starts a local database and sets it for you)")
	}
	return u, nil
}

// listenURL is DATABASE_LISTEN_URL, a direct connection for LISTEN and
// migrations, which defaults to url.
func listenURL(getenv func(string) string, url string) string {
	return env(getenv).get("DATABASE_LISTEN_URL", url)
}

func loadConfig(getenv func(string) string) (config, error) {
	e := env(getenv)
	var problems []error
	c := config{
		Addr:            e.get("POOLGATE_ADDR", "127.0.0.1:8080"),
		ShutdownTimeout: e.duration("POOLGATE_SHUTDOWN_TIMEOUT", "30s", &problems),

		UpstreamURL:         e.get("POOLGATE_UPSTREAM_URL", "http://127.0.0.1:8090"),
		ReplicaID:           e.get("POOLGATE_REPLICA_ID", ""),
		MaxQueued:           e.integer("POOLGATE_MAX_QUEUED", 10000, &problems),
		QueueTimeout:        e.duration("POOLGATE_QUEUE_TIMEOUT", "1h", &problems),
		JobTimeout:          e.duration("POOLGATE_JOB_TIMEOUT", "1h", &problems),
		LeaseTTL:            e.duration("POOLGATE_LEASE_TTL", "30s", &problems),
		PollInterval:        e.duration("POOLGATE_POLL_INTERVAL", "1s", &problems),
		Quarantine:          e.duration("POOLGATE_QUARANTINE", "30m", &problems),
		WebhookAllowPrivate: e.boolean("POOLGATE_WEBHOOK_ALLOW_PRIVATE", &problems),
	}
	c.RefreshLead = e.duration("POOLGATE_REFRESH_LEAD", "10m", &problems)
	c.RefreshInterval = e.duration("POOLGATE_REFRESH_INTERVAL", "30s", &problems)
	c.AlertSchedule = e.get("POOLGATE_ALERT_SCHEDULE", "*/15 * * * *")
	if _, err := alerts.ParseSchedule(c.AlertSchedule); err != nil {
		problems = append(problems, fmt.Errorf("POOLGATE_ALERT_SCHEDULE: %w (use five cron fields like */15 * * * * or a descriptor like @every 1h)", err))
	}
	var err error
	if c.AlertThresholds, err = alerts.ParseThresholds(e.get("POOLGATE_ALERT_THRESHOLDS", "7d,3d,1d")); err != nil {
		problems = append(problems, fmt.Errorf("POOLGATE_ALERT_THRESHOLDS: %w", err))
	}
	c.AlertWebhookURL = e.get("POOLGATE_ALERT_WEBHOOK_URL", "")
	c.AlertFormat = e.get("POOLGATE_ALERT_FORMAT", alerts.FormatJSON)
	if c.AlertFormat != alerts.FormatJSON && c.AlertFormat != alerts.FormatSlack {
		problems = append(problems, errors.New("POOLGATE_ALERT_FORMAT must be json or slack"))
	}
	if c.AlertWebhookURL != "" {
		if err := webhooks.CheckURL(c.AlertWebhookURL, c.WebhookAllowPrivate); err != nil {
			problems = append(problems, fmt.Errorf("POOLGATE_ALERT_WEBHOOK_URL: %s", errs.As(err).Message))
		}
	}
	if u, err := url.Parse(c.UpstreamURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		problems = append(problems, fmt.Errorf("POOLGATE_UPSTREAM_URL=%q is not an http(s) URL", c.UpstreamURL))
	}
	if c.LeaseTTL < 3*time.Second {
		problems = append(problems, errors.New("POOLGATE_LEASE_TTL must be at least 3s"))
	}
	loadKeyConfig(e, &c, &problems)
	loadRetentionConfig(e, &c, &problems)
	loadPoliteConfig(e, &c, &problems)
	loadResultsConfig(e, &c, &problems)
	loadLTXAPIConfig(e, &c, &problems)
	loadMetricsConfig(e, &c, &problems)
	loadHealthConfig(e, &c, &problems)
	if c.DatabaseURL, err = databaseURL(getenv); err != nil {
		problems = append(problems, err)
	}
	c.DatabaseListenURL = listenURL(getenv, c.DatabaseURL)
	if err := c.LogLevel.UnmarshalText([]byte(e.get("POOLGATE_LOG_LEVEL", "info"))); err != nil {
		problems = append(problems, fmt.Errorf("POOLGATE_LOG_LEVEL must be debug, info, warn or error"))
	}
	switch raw := e.get("POOLGATE_SECRET_KEY", ""); {
	case raw == "":
		problems = append(problems, errors.New("POOLGATE_SECRET_KEY is not set: it encrypts account cookies; create one with `openssl rand -base64 32` and keep it (make run makes a local one)"))
	default:
		if c.SecretKey, err = secret.ParseKey(raw); err != nil {
			problems = append(problems, fmt.Errorf("POOLGATE_SECRET_KEY: %w", err))
		}
	}
	return c, errors.Join(problems...)
}

// loadKeyConfig reads the API key settings: the default rate limit, how
// long verifications are cached, how often usage counts are written.
func loadKeyConfig(e env, c *config, problems *[]error) {
	var err error
	if c.KeyRateLimit, err = auth.ParseRateLimit(e.get("POOLGATE_KEY_RATE_LIMIT", "100/1s")); err != nil {
		*problems = append(*problems, fmt.Errorf("POOLGATE_KEY_RATE_LIMIT: %w", err))
	}
	c.KeyCacheTTL = e.duration("POOLGATE_KEY_CACHE_TTL", "30s", problems)
	c.KeyUsageFlushEvery = e.duration("POOLGATE_KEY_USAGE_FLUSH_INTERVAL", "5s", problems)
	if c.KeyUsageFlushEvery <= 0 {
		*problems = append(*problems, errors.New("POOLGATE_KEY_USAGE_FLUSH_INTERVAL must be above 0"))
	}
}

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

// retentionConfig is how long finished rows are kept and how the cleanup
// runs (POOLGATE_*_RETENTION, POOLGATE_RETENTION_*).
type retentionConfig struct {
	Jobs, Idempotency, Webhooks, Alerts, CronRuns, Usage time.Duration

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
	r.Usage = e.period("POOLGATE_USAGE_RETENTION", "90d", problems)
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
