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
// Postgres at scrape time with the same rules the API uses.
func StatusCollector(pool *pgxpool.Pool) prometheus.Collector { return statusCollector{pool} }

type statusCollector struct{ pool *pgxpool.Pool }

func (statusCollector) Describe(ch chan<- *prometheus.Desc) { ch <- statusDesc }

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := c.pool.Query(ctx, `
		SELECT CASE
			WHEN NOT enabled THEN 'disabled'
			WHEN status = 'error' THEN 'error'
			WHEN refresh_token_expires_at <= now() THEN 'expired'
			WHEN token_expires_at <= now() THEN 'refreshing'
			ELSE 'active' END, count(*)
		FROM accounts GROUP BY 1`)
	if err != nil {
		return
	}
	defer rows.Close()
	for rows.Next() {
		var status string
		var n float64
		if rows.Scan(&status, &n) == nil {
			ch <- prometheus.MustNewConstMetric(statusDesc, prometheus.GaugeValue, n, status)
		}
	}
}
