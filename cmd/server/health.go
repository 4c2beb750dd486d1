package main

import (
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/alerts"
	"github.com/poolgate/poolgate/internal/provider"
)

// healthConfig is the circuit breaker's and the prober's settings
// (POOLGATE_BREAKER_*, POOLGATE_PROBE_*).
type healthConfig struct {
	accounts.HealthConfig
	ProbeInterval time.Duration
}

// loadHealthConfig reads the breaker and probe settings.
func loadHealthConfig(e env, c *config, problems *[]error) {
	h := &c.Health
	h.BreakerFailures = e.integer("POOLGATE_BREAKER_FAILURES", 5, problems)
	h.BreakerQuarantine = e.duration("POOLGATE_BREAKER_QUARANTINE", "1m", problems)
	h.BreakerQuarantineMax = e.duration("POOLGATE_BREAKER_QUARANTINE_MAX", "1h", problems)
	h.ProbeInterval = e.duration("POOLGATE_PROBE_INTERVAL", "5s", problems)
	h.ProbeBase = e.duration("POOLGATE_PROBE_BACKOFF", "1m", problems)
	h.ProbeMax = e.duration("POOLGATE_PROBE_BACKOFF_MAX", "1h", problems)
	if h.BreakerQuarantine <= 0 || h.ProbeInterval <= 0 || h.ProbeBase <= 0 {
		*problems = append(*problems, errors.New("POOLGATE_BREAKER_QUARANTINE, POOLGATE_PROBE_INTERVAL and POOLGATE_PROBE_BACKOFF must be above 0"))
	}
	if h.BreakerQuarantineMax < h.BreakerQuarantine {
		*problems = append(*problems, errors.New("POOLGATE_BREAKER_QUARANTINE_MAX must be at least POOLGATE_BREAKER_QUARANTINE"))
	}
	if h.ProbeMax < h.ProbeBase {
		*problems = append(*problems, errors.New("POOLGATE_PROBE_BACKOFF_MAX must be at least POOLGATE_PROBE_BACKOFF"))
	}
}

// healthMetrics count health events and probes.
type healthMetrics struct {
	events, probes *prometheus.CounterVec
}

func newHealthMetrics(reg prometheus.Registerer) healthMetrics {
	m := healthMetrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "poolgate_account_health_events_total",
			Help: "Account health transitions, by kind (quarantined, error, recovered, expired) and reason."},
			[]string{"kind", "reason"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "poolgate_account_probes_total", Help: "Account probes, by outcome."}, []string{"outcome"}),
	}
	reg.MustRegister(m.events, m.probes)
	return m
}

func (m healthMetrics) probed(outcome string) { m.probes.WithLabelValues(outcome).Inc() }

// healthHooks are the effects of a health event outside accounts: it is
// raised as an alert in the transaction that records it, and counted once
// that transaction has committed (a rolled-back one is not counted).
func healthHooks(m healthMetrics, alerter *alerts.Service) (inTx []accounts.HealthHook, committed []func(accounts.Event)) {
	return []accounts.HealthHook{alerter.OnHealth}, []func(accounts.Event){m.counted}
}

func (m healthMetrics) counted(ev accounts.Event) {
	m.events.WithLabelValues(string(ev.Kind), ev.Reason).Inc()
}

// newProber returns the service that probes accounts back into rotation.
func newProber(store *accounts.Store, upstream provider.Provider, c config, m healthMetrics, logger *slog.Logger) *accounts.Prober {
	return accounts.NewProber(accounts.ProberConfig{
		Store: store, Provider: upstream, Logger: logger, Interval: c.Health.ProbeInterval,
		Quarantine: c.Quarantine, OnOutcome: m.probed,
	})
}
