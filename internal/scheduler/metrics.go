package scheduler

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the scheduler's Prometheus series. A nil *Metrics records
// nothing, so tests and tools need not set one up.
type Metrics struct {
	placements prometheus.Counter
	created    prometheus.Counter
	outcomes   *prometheus.CounterVec
	retries    *prometheus.CounterVec
	rescues    prometheus.Counter
	waitToRun  prometheus.Histogram
}

// NewMetrics registers the scheduler's series on reg. Gauges (queued jobs,
// running jobs per account) are read from Postgres at scrape time, so every
// replica reports the same, true numbers.
func NewMetrics(reg prometheus.Registerer, pool *pgxpool.Pool) *Metrics {
	m := &Metrics{
		placements: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "poolgate_placements_total", Help: "Jobs placed on an account (each attempt counts)."}),
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "poolgate_jobs_created_total", Help: "Jobs accepted."}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "poolgate_job_outcomes_total", Help: "Jobs ended, by final state and reason."},
			[]string{"state", "reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "poolgate_job_retries_total", Help: "Attempts sent back to the queue, by reason."},
			[]string{"reason"}),
		rescues: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "poolgate_job_rescues_total", Help: "Jobs taken over after their replica's lease lapsed."}),
		waitToRun: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "poolgate_job_wait_seconds", Help: "Time from a job's submission to its first placement.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 20)}), // 5 ms .. 50 h, past the longest queueTimeout (24 h)
	}
	reg.MustRegister(m.placements, m.created, m.outcomes, m.retries, m.rescues, m.waitToRun, &gauges{pool: pool})
	return m
}

func (m *Metrics) placed(e *execution) {
	if m == nil {
		return
	}
	m.placements.Inc()
	if e.attempt == 1 {
		m.waitToRun.Observe(e.startedAt.Sub(e.createdAt).Seconds())
	}
}

func (m *Metrics) finished(j Job, _ time.Time) {
	if m == nil {
		return
	}
	reason := ""
	if j.Error != nil {
		reason = j.Error.Code
	}
	m.outcomes.WithLabelValues(string(j.State), reason).Inc()
}

func (m *Metrics) retried(reason string) {
	if m != nil {
		m.retries.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) rescued() {
	if m != nil {
		m.rescues.Inc()
	}
}

func (m *Metrics) createdJob() {
	if m != nil {
		m.created.Inc()
	}
}

// gauges reads the queues' depths from Postgres on each scrape (the O(1)
// counters admission uses). Every replica reports the same database-wide
// numbers; accounts' slots are the accounts package's (SlotCollector).
type gauges struct {
	pool   *pgxpool.Pool
	errors atomic.Int64 // scrapes whose reads failed
}

var (
	queuedDesc = prometheus.NewDesc("poolgate_jobs_queued", "Jobs waiting for a slot, per tenant and mode.",
		[]string{"tenant", "mode"}, nil)
	collectErrorsDesc = prometheus.NewDesc("poolgate_metrics_collect_errors_total",
		"Scrapes whose database read failed, by collector (the collector's series are missing from those scrapes).",
		nil, prometheus.Labels{"collector": "scheduler"})
)

func (g *gauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- queuedDesc
	ch <- collectErrorsDesc
}

// queueDepthAll is every tenant's depth in both modes, zero included: an
// empty queue is a value, not a missing series.
const queueDepthAll = `
SELECT t.name, m.mode, coalesce(sum(CASE q.side WHEN 'in' THEN q.n ELSE -q.n END), 0)
FROM tenants t
CROSS JOIN (VALUES ('live'), ('test')) m (mode)
LEFT JOIN queue_depth q ON q.tenant_id = t.id AND q.mode = m.mode
GROUP BY 1, 2`

func (g *gauges) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.collect(ctx, ch); err != nil {
		g.errors.Add(1)
	}
	ch <- prometheus.MustNewConstMetric(collectErrorsDesc, prometheus.CounterValue, float64(g.errors.Load()))
}

func (g *gauges) collect(ctx context.Context, ch chan<- prometheus.Metric) error {
	rows, err := g.pool.Query(ctx, queueDepthAll)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var name, mode string
		var n float64
		if err := rows.Scan(&name, &mode, &n); err != nil {
			return err
		}
		ch <- prometheus.MustNewConstMetric(queuedDesc, prometheus.GaugeValue, n, name, mode)
	}
	return rows.Err()
}
