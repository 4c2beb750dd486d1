package accounts

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	statusDesc = prometheus.NewDesc("poolgate_accounts",
		"Accounts by status, read from the database at scrape time (every replica reports the same numbers).",
		[]string{"status"}, nil)
	// The name and help are shared with the scheduler's collector; the
	// collector label tells them apart (const, so both may register it).
	collectErrorsDesc = prometheus.NewDesc("poolgate_metrics_collect_errors_total",
		"Scrapes whose database read failed, by collector (the collector's series are missing from those scrapes).",
		nil, prometheus.Labels{"collector": "accounts"})
)

// allStatuses are reported on every scrape, zero or not, so a status's
// series does not vanish when its last account leaves it.
var allStatuses = []Status{StatusActive, StatusExpiring, StatusRefreshing, StatusQuarantined, StatusExpired, StatusError, StatusDisabled}

// StatusCollector reports how many accounts are in each status. It derives
// each status with deriveStatus, the rule the API shows, so the two cannot
// drift apart.
func (s *Store) StatusCollector() prometheus.Collector { return &statusCollector{store: s} }

type statusCollector struct {
	store  *Store
	errors atomic.Int64
}

func (*statusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- statusDesc
	ch <- collectErrorsDesc
}

const accountStatusFacts = `SELECT enabled, status, status_reason, token_expires_at, refresh_token_expires_at,
	quarantined_until, probe_enabled FROM accounts`

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	counts, err := c.count()
	if err != nil {
		c.errors.Add(1)
	} else {
		for _, st := range allStatuses {
			ch <- prometheus.MustNewConstMetric(statusDesc, prometheus.GaugeValue, float64(counts[st]), string(st))
		}
	}
	ch <- prometheus.MustNewConstMetric(collectErrorsDesc, prometheus.CounterValue, float64(c.errors.Load()))
}

func (c *statusCollector) count() (map[Status]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := c.store.pool.Query(ctx, accountStatusFacts)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	now := c.store.now()
	counts := make(map[Status]int, len(allStatuses))
	for rows.Next() {
		var (
			a      Account
			stored string
			reason *string
		)
		if err := rows.Scan(&a.Enabled, &stored, &reason, &a.TokenExpiresAt, &a.RefreshTokenExpiresAt,
			&a.QuarantinedUntil, &a.Probe); err != nil {
			return nil, err
		}
		counts[deriveStatus(a, stored, reason, now, c.store.life).status]++
	}
	return counts, rows.Err()
}

var (
	runningDesc = prometheus.NewDesc("poolgate_account_running_jobs", "Jobs holding a slot, per account.",
		[]string{"tenant", "mode", "email"}, nil)
	maxJobsDesc = prometheus.NewDesc("poolgate_account_max_jobs", "Concurrent job limit, per account.",
		[]string{"tenant", "mode", "email"}, nil)
	slotErrorsDesc = prometheus.NewDesc("poolgate_metrics_collect_errors_total",
		"Scrapes whose database read failed, by collector (the collector's series are missing from those scrapes).",
		nil, prometheus.Labels{"collector": "account_slots"})
)

// SlotCollector reports each account's running jobs and maxJobs, read from
// Postgres at scrape time, so every replica reports the same true numbers.
func (s *Store) SlotCollector() prometheus.Collector { return &slotCollector{store: s} }

type slotCollector struct {
	store  *Store
	errors atomic.Int64
}

func (*slotCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- runningDesc
	ch <- maxJobsDesc
	ch <- slotErrorsDesc
}

const accountSlotsAll = `SELECT t.name, a.mode, a.email, a.held, a.max_jobs FROM account_slots a
JOIN tenants t ON t.id = a.tenant_id`

func (c *slotCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.collect(ctx, ch); err != nil {
		c.errors.Add(1)
	}
	ch <- prometheus.MustNewConstMetric(slotErrorsDesc, prometheus.CounterValue, float64(c.errors.Load()))
}

func (c *slotCollector) collect(ctx context.Context, ch chan<- prometheus.Metric) error {
	rows, err := c.store.pool.Query(ctx, accountSlotsAll)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var name, mode, email string
		var running, maxJobs float64
		if err := rows.Scan(&name, &mode, &email, &running, &maxJobs); err != nil {
			return err
		}
		ch <- prometheus.MustNewConstMetric(runningDesc, prometheus.GaugeValue, running, name, mode, email)
		ch <- prometheus.MustNewConstMetric(maxJobsDesc, prometheus.GaugeValue, maxJobs, name, mode, email)
	}
	return rows.Err()
}
