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

// gauges reads the queue's current shape from Postgres on each scrape.
// Every replica reports the same database-wide numbers.
type gauges struct {
	pool   *pgxpool.Pool
	errors atomic.Int64 // scrapes whose reads failed
}

var (
	queuedDesc = prometheus.NewDesc("poolgate_jobs_queued", "Jobs waiting for a slot, per tenant and mode.",
		[]string{"tenant", "mode"}, nil)
	runningDesc = prometheus.NewDesc("poolgate_account_running_jobs", "Jobs holding a slot, per account.",
		[]string{"tenant", "mode", "email"}, nil)
	maxJobsDesc = prometheus.NewDesc("poolgate_account_max_jobs", "Concurrent job limit, per account.",
		[]string{"tenant", "mode", "email"}, nil)
	collectErrorsDesc = prometheus.NewDesc("poolgate_metrics_collect_errors_total",
		"Scrapes whose database read failed, by collector (the collector's series are missing from those scrapes).",
		nil, prometheus.Labels{"collector": "scheduler"})
)

func (g *gauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- queuedDesc
	ch <- runningDesc
	ch <- maxJobsDesc
	ch <- collectErrorsDesc
}

func (g *gauges) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	failed := false
	// Every tenant and mode, zero included: an empty queue is a value.
	if rows, err := g.pool.Query(ctx, `SELECT t.name, m.mode, count(j.id) FROM tenants t
		CROSS JOIN (VALUES ('live'), ('test')) m (mode)
		LEFT JOIN jobs j ON j.tenant_id = t.id AND j.mode = m.mode AND j.state = 'queued'
		GROUP BY 1, 2`); err == nil {
		for rows.Next() {
			var name, mode string
			var n float64
			if rows.Scan(&name, &mode, &n) == nil {
				ch <- prometheus.MustNewConstMetric(queuedDesc, prometheus.GaugeValue, n, name, mode)
			}
		}
		rows.Close()
		failed = failed || rows.Err() != nil
	} else {
		failed = true
	}
	if rows, err := g.pool.Query(ctx, `SELECT t.name, a.mode, a.email, a.running, a.max_jobs FROM accounts a
		JOIN tenants t ON t.id = a.tenant_id`); err == nil {
		for rows.Next() {
			var name, mode, email string
			var running, maxJobs float64
			if rows.Scan(&name, &mode, &email, &running, &maxJobs) == nil {
				ch <- prometheus.MustNewConstMetric(runningDesc, prometheus.GaugeValue, running, name, mode, email)
				ch <- prometheus.MustNewConstMetric(maxJobsDesc, prometheus.GaugeValue, maxJobs, name, mode, email)
			}
		}
		rows.Close()
		failed = failed || rows.Err() != nil
	} else {
		failed = true
	}
	if failed {
		g.errors.Add(1)
	}
	ch <- prometheus.MustNewConstMetric(collectErrorsDesc, prometheus.CounterValue, float64(g.errors.Load()))
}
