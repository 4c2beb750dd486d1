package main

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// upstreamMetrics count the calls made upstream and how long each waited
// for its account's request budget.
type upstreamMetrics struct {
	calls *prometheus.CounterVec
	wait  *prometheus.HistogramVec
}

func newUpstreamMetrics(reg prometheus.Registerer) upstreamMetrics {
	m := upstreamMetrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "poolgate_upstream_requests_total",
			Help: "Requests made to the upstream, by call (submit, status, lookup, cancel, refresh, probe)."}, []string{"call"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "poolgate_upstream_budget_wait_seconds",
			Help:    "How long upstream calls waited for their account's request budget, by call.",
			Buckets: []float64{0.001, 0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60}}, []string{"call"}),
	}
	reg.MustRegister(m.calls, m.wait)
	return m
}

func (m upstreamMetrics) observe(call string, waited time.Duration) {
	m.calls.WithLabelValues(call).Inc()
	m.wait.WithLabelValues(call).Observe(waited.Seconds())
}
