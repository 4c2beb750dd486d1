package accounts

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

var statusDesc = prometheus.NewDesc("poolgate_accounts", "Accounts by status.", []string{"status"}, nil)

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
