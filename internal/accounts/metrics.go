package accounts

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	statusDesc  = prometheus.NewDesc("poolgate_accounts", "Accounts by status.", []string{"status"}, nil)
	runningDesc = prometheus.NewDesc("poolgate_account_running_jobs", "Jobs holding a slot, per account.",
		[]string{"tenant", "mode", "email"}, nil)
	maxJobsDesc = prometheus.NewDesc("poolgate_account_max_jobs", "Concurrent job limit, per account.",
		[]string{"tenant", "mode", "email"}, nil)
)

// SlotCollector reports each account's running jobs and maxJobs, read from
// Postgres at scrape time, so every replica reports the same true numbers.
func SlotCollector(pool *pgxpool.Pool) prometheus.Collector { return slotCollector{pool} }

type slotCollector struct{ pool *pgxpool.Pool }

func (slotCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- runningDesc
	ch <- maxJobsDesc
}

const accountSlotsAll = `SELECT t.name, a.mode, a.email, a.running, a.max_jobs FROM accounts a
JOIN tenants t ON t.id = a.tenant_id`

func (c slotCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := c.pool.Query(ctx, accountSlotsAll)
	if err != nil {
		return
	}
	defer rows.Close()
	for rows.Next() {
		var name, mode, email string
		var running, maxJobs float64
		if rows.Scan(&name, &mode, &email, &running, &maxJobs) == nil {
			ch <- prometheus.MustNewConstMetric(runningDesc, prometheus.GaugeValue, running, name, mode, email)
			ch <- prometheus.MustNewConstMetric(maxJobsDesc, prometheus.GaugeValue, maxJobs, name, mode, email)
		}
	}
}

// StatusCollector reports how many accounts are in each status, read from
// Postgres at scrape time and judged by deriveStatus with the store's clock
// and lifecycle: the very rule the API shows.
func (s *Store) StatusCollector() prometheus.Collector { return statusCollector{s} }

type statusCollector struct{ s *Store }

func (statusCollector) Describe(ch chan<- *prometheus.Desc) { ch <- statusDesc }

const accountStatusFacts = `SELECT enabled, status, token_expires_at, refresh_token_expires_at FROM accounts`

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := c.s.pool.Query(ctx, accountStatusFacts)
	if err != nil {
		return
	}
	defer rows.Close()
	counts := map[Status]int{}
	now := c.s.now()
	for rows.Next() {
		var (
			a      Account
			stored string
		)
		if rows.Scan(&a.Enabled, &stored, &a.TokenExpiresAt, &a.RefreshTokenExpiresAt) != nil {
			return
		}
		st, _ := deriveStatus(a, stored, nil, now, c.s.life)
		counts[st]++
	}
	if rows.Err() != nil {
		return
	}
	for _, st := range []Status{StatusActive, StatusExpiring, StatusRefreshing, StatusExpired, StatusError, StatusDisabled} {
		ch <- prometheus.MustNewConstMetric(statusDesc, prometheus.GaugeValue, float64(counts[st]), string(st))
	}
}
