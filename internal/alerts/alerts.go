// Package alerts warns before credentials die. On a cron schedule, exactly
// one replica scans the accounts: refresh tokens that expire within a
// threshold, refresh tokens already expired, and accounts in status error
// each raise one alert per account, kind and threshold (never twice, across
// replicas and restarts), delivered through the webhook outbox and logged.
package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/robfig/cron/v3"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/ids"
	"github.com/poolgate/poolgate/internal/webhooks"
)

// Kinds of alert.
const (
	KindExpiring = "expiring" // the refresh token expires within a threshold
	KindExpired  = "expired"  // the refresh token has expired: the account is out of rotation
	KindError    = "error"    // the upstream refused the account's credentials
)

// Formats of alert webhooks.
const (
	FormatJSON  = "json"  // the alert model
	FormatSlack = "slack" // {"text": "..."} for Slack-compatible incoming webhooks
)

// Config configures the alert service.
type Config struct {
	Pool       *pgxpool.Pool
	Logger     *slog.Logger
	Now        func() time.Time // nil: time.Now
	Schedule   string           // cron spec or descriptor, e.g. "*/15 * * * *" or "@every 1h"
	Thresholds []Threshold
	// URL and Format are the operator-wide destination
	// (POOLGATE_ALERT_WEBHOOK_URL); tenants may add their own.
	URL, Format string
	// Wake nudges the webhook deliverer after alerts were queued.
	Wake func()
	// OnRaised, if set, counts raised alerts by kind.
	OnRaised func(kind string)
}

// Service runs the scans on schedule.
type Service struct {
	cfg      Config
	log      *slog.Logger
	schedule cron.Schedule
	cron     *cron.Cron
	mu       sync.Mutex
}

// ParseSchedule checks a schedule spec: five standard fields or a
// descriptor (@hourly, @every 1h, …).
func ParseSchedule(spec string) (cron.Schedule, error) {
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w", spec, err)
	}
	return s, nil
}

// New returns the service; it fails on a bad schedule so start-up does.
func New(cfg Config) (*Service, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Format == "" {
		cfg.Format = FormatJSON
	}
	sched, err := ParseSchedule(cfg.Schedule)
	if err != nil {
		return nil, err
	}
	if len(cfg.Thresholds) == 0 {
		return nil, errors.New("alerts: no thresholds")
	}
	return &Service{cfg: cfg, log: cfg.Logger.With("component", "alerts"), schedule: sched}, nil
}

// Start runs a scan on every tick of the schedule until Stop.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cron = cron.New(cron.WithLocation(time.UTC), cron.WithChain(cron.SkipIfStillRunning(cron.DiscardLogger)))
	s.cron.Schedule(s.schedule, cron.FuncJob(func() { s.tick(context.WithoutCancel(ctx)) }))
	s.cron.Start()
	return nil
}

// Stop stops the schedule and waits for a running tick, or for ctx.
func (s *Service) Stop(ctx context.Context) {
	s.mu.Lock()
	c := s.cron
	s.mu.Unlock()
	if c != nil {
		select {
		case <-c.Stop().Done():
		case <-ctx.Done():
		}
	}
}

// cronLock is the advisory lock that makes one replica run a tick.
const cronLock = 0x706f6f6c616c7274 // "poolalrt"

// tick runs one scheduled scan on exactly one replica: the advisory lock
// keeps replicas from scanning at once, and cron_runs from scanning the
// same tick twice (replicas' clocks fire a few ms apart). A tick missed
// while no replica ran is caught up by the next: the scan looks at the
// accounts' state, not at what changed since the last tick.
func (s *Service) tick(ctx context.Context) {
	now := s.cfg.Now().UTC()
	half := s.schedule.Next(now).Sub(now) / 2
	ran := false
	var raised []Alert
	err := pgx.BeginFunc(ctx, s.cfg.Pool, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, int64(cronLock)).Scan(&locked); err != nil || !locked {
			return err
		}
		tag, err := tx.Exec(ctx, `
			INSERT INTO cron_runs (name, last_run) VALUES ('alerts', $1)
			ON CONFLICT (name) DO UPDATE SET last_run = $1 WHERE cron_runs.last_run < $2`, now, now.Add(-half))
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		ran = true
		raised, err = s.scan(ctx, tx, now)
		return err
	})
	if err != nil {
		s.log.Error("alert scan failed", "err", err)
		return
	}
	s.announce(raised)
	if ran && s.cfg.Wake != nil {
		s.cfg.Wake()
	}
}

// Scan runs one scan now, outside the schedule (tests, tools), and
// returns the alerts it raised.
func (s *Service) Scan(ctx context.Context) ([]Alert, error) {
	var raised []Alert
	err := pgx.BeginFunc(ctx, s.cfg.Pool, func(tx pgx.Tx) error {
		var err error
		raised, err = s.scan(ctx, tx, s.cfg.Now().UTC())
		return err
	})
	if err != nil {
		return nil, err
	}
	s.announce(raised)
	if len(raised) > 0 && s.cfg.Wake != nil {
		s.cfg.Wake()
	}
	return raised, nil
}

// announce logs and counts alerts a scan raised, once its transaction has
// committed: a scan that rolls back raised nothing.
func (s *Service) announce(raised []Alert) {
	for _, c := range raised {
		s.log.Warn("credential alert", "alert", c.ID, "tenant", c.TenantID, "account", c.Email, "kind", c.Kind,
			"threshold", deref(c.Threshold), "message", c.Message)
		if s.cfg.OnRaised != nil {
			s.cfg.OnRaised(c.Kind)
		}
	}
}

// scan raises the alerts the accounts' state calls for and resolves those
// it no longer does.
func (s *Service) scan(ctx context.Context, tx pgx.Tx, now time.Time) ([]Alert, error) {
	if err := resolveStale(ctx, tx, now); err != nil {
		return nil, err
	}
	accts, err := accounts.AtRisk(ctx, tx, now.Add(s.cfg.Thresholds[0].Before))
	if err != nil {
		return nil, err
	}
	var raised []Alert
	seq := 0
	for _, a := range accts {
		for _, c := range s.due(a.Status, a.Reason, a.UpdatedAt, a.RefreshTokenExpiry, now) {
			c.TenantID, c.Mode, c.AccountID, c.Email = a.Scope.TenantID, string(a.Scope.Mode), a.ID, a.Email
			// Ids sort by their millisecond; spacing one scan's ids by 1ms
			// lists its alerts in the order they were raised.
			seq++
			c.ID = ids.New("alr", now.Add(time.Duration(seq)*time.Millisecond))
			ok, err := s.raise(ctx, tx, &c, now)
			if err != nil {
				return nil, err
			}
			if ok {
				raised = append(raised, c)
			}
		}
	}
	return raised, nil
}

// due lists the alerts an account's state calls for, in the order they
// should fire.
func (s *Service) due(status, why string, updatedAt time.Time, expiry *time.Time, now time.Time) []Alert {
	if status == "error" {
		return []Alert{{Kind: KindError, dedupe: "error:" + unix(updatedAt),
			Message: "account is out of rotation: " + why}}
	}
	if expiry == nil {
		return nil
	}
	if !expiry.After(now) {
		return []Alert{{Kind: KindExpired, ExpiresAt: expiry, dedupe: "expired:" + unix(*expiry),
			Message: "lt_refresh_token expired at " + expiry.Format(time.RFC3339) + "; the account is out of rotation until fresh cookies are registered"}}
	}
	var out []Alert
	for _, th := range s.cfg.Thresholds {
		if expiry.Sub(now) <= th.Before {
			name := th.Name
			out = append(out, Alert{Kind: KindExpiring, Threshold: &name, ExpiresAt: expiry,
				dedupe:  "expiring:" + th.Name + ":" + unix(*expiry),
				Message: "lt_refresh_token expires at " + expiry.Format(time.RFC3339) + " (within " + th.Name + "); register fresh cookies before then"})
		}
	}
	return out
}

func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

const (
	alertInsert = `
INSERT INTO alerts (tenant_id, id, mode, account_id, account_email, kind, threshold, dedupe_key,
                    expires_at, message, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (tenant_id, account_id, dedupe_key) DO NOTHING`

	alertSetDeliveries = `UPDATE alerts SET delivery_ids = $3 WHERE tenant_id = $1 AND id = $2`

	tenantAlertConfig = `SELECT url, format FROM alert_config WHERE tenant_id = $1 AND mode = $2`

	alertsOpen = `SELECT tenant_id, id, account_id, kind, expires_at FROM alerts WHERE resolved_at IS NULL`

	alertsResolveIDs = `
UPDATE alerts SET resolved_at = $3
WHERE resolved_at IS NULL AND (tenant_id, id) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))`
)

// resolveStale closes alerts whose cause is gone: the account has other
// credentials now, is healthy again, or no longer exists.
func resolveStale(ctx context.Context, tx pgx.Tx, now time.Time) error {
	type open struct {
		tenantID, accountID int64
		id, kind            string
		expiresAt           *time.Time
	}
	rows, err := tx.Query(ctx, alertsOpen)
	if err != nil {
		return err
	}
	alerts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (open, error) {
		var a open
		err := r.Scan(&a.tenantID, &a.id, &a.accountID, &a.kind, &a.expiresAt)
		return a, err
	})
	if err != nil || len(alerts) == 0 {
		return err
	}
	tenants, ids := make([]int64, len(alerts)), make([]int64, len(alerts))
	for i, a := range alerts {
		tenants[i], ids[i] = a.tenantID, a.accountID
	}
	creds, err := accounts.CredentialsOf(ctx, tx, tenants, ids)
	if err != nil {
		return err
	}
	type key struct{ tenantID, id int64 }
	byID := make(map[key]accounts.Credential, len(creds))
	for _, c := range creds {
		byID[key{c.Scope.TenantID, c.ID}] = c
	}
	var staleTenants []int64
	var staleIDs []string
	for _, a := range alerts {
		c, exists := byID[key{a.tenantID, a.accountID}]
		still := exists && (a.kind == string(KindError) && c.Status == "error" ||
			a.kind == KindQuarantined || // resolved by the account's recovery (OnHealth)
			(a.kind == KindExpiring || a.kind == KindExpired) && sameTime(c.RefreshTokenExpiry, a.expiresAt))
		if !still {
			staleTenants, staleIDs = append(staleTenants, a.tenantID), append(staleIDs, a.id)
		}
	}
	if len(staleIDs) == 0 {
		return nil
	}
	_, err = tx.Exec(ctx, alertsResolveIDs, staleTenants, staleIDs, now)
	return err
}

func sameTime(a, b *time.Time) bool {
	return a != nil && b != nil && a.Equal(*b)
}

// raise stores c unless it was raised before, then queues its deliveries
// and logs it. It reports whether c is new.
func (s *Service) raise(ctx context.Context, tx pgx.Tx, c *Alert, now time.Time) (bool, error) {
	c.CreatedAt = now
	tag, err := tx.Exec(ctx, alertInsert, c.TenantID, c.ID, c.Mode, c.AccountID, c.Email, c.Kind, c.Threshold,
		c.dedupe, c.ExpiresAt, c.Message, now)
	if err != nil || tag.RowsAffected() == 0 {
		return false, err
	}
	type dest struct{ url, format string }
	var dests []dest
	if s.cfg.URL != "" {
		dests = append(dests, dest{s.cfg.URL, s.cfg.Format})
	}
	var d dest
	err = tx.QueryRow(ctx, tenantAlertConfig, c.TenantID, c.Mode).Scan(&d.url, &d.format)
	switch {
	case err == nil:
		dests = append(dests, d)
	case !errors.Is(err, pgx.ErrNoRows):
		return false, err
	}
	var deliveries []string
	for _, d := range dests {
		id, err := webhooks.Enqueue(ctx, tx, c.TenantID, d.url, "alert."+c.Kind, payload(*c, d.format), now)
		if err != nil {
			return false, err
		}
		deliveries = append(deliveries, id)
	}
	if len(deliveries) > 0 {
		if _, err := tx.Exec(ctx, alertSetDeliveries, c.TenantID, c.ID, deliveries); err != nil {
			return false, err
		}
	}
	return true, nil
}

// payload is what an alert webhook carries.
func payload(a Alert, format string) any {
	if format == FormatSlack {
		return map[string]string{"text": fmt.Sprintf(":warning: poolgate: account %s — %s", a.Email, a.Message)}
	}
	b, _ := json.Marshal(a.view())
	return json.RawMessage(b)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
