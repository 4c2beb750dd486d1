package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/poolgate/poolgate/internal/provider/budget"
	"github.com/poolgate/poolgate/internal/scheduler"
)

// politeConfig is how gently poolgate treats the upstream: how running
// jobs are polled, and each account's request budget (per replica).
type politeConfig struct {
	PollMaxInterval time.Duration
	PollExpect      scheduler.Expectations
	Budget          budget.Config
}

// loadPoliteConfig reads POOLGATE_POLL_MAX_INTERVAL, POOLGATE_POLL_EXPECTED,
// POOLGATE_UPSTREAM_RPS and POOLGATE_UPSTREAM_BURST.
func loadPoliteConfig(e env, c *config, problems *[]error) {
	p := &c.Polite
	p.PollMaxInterval = e.duration("POOLGATE_POLL_MAX_INTERVAL", "10s", problems)
	if p.PollMaxInterval < c.PollInterval {
		*problems = append(*problems, errors.New("POOLGATE_POLL_MAX_INTERVAL must not be below POOLGATE_POLL_INTERVAL"))
	}
	var err error
	if p.PollExpect, err = scheduler.ParseExpectations(e.get("POOLGATE_POLL_EXPECTED", scheduler.DefaultExpectations().String())); err != nil {
		*problems = append(*problems, fmt.Errorf("POOLGATE_POLL_EXPECTED: %w", err))
	}
	v := e.get("POOLGATE_UPSTREAM_RPS", "5")
	if p.Budget.Rate, err = strconv.ParseFloat(v, 64); err != nil || p.Budget.Rate < 0 || math.IsInf(p.Budget.Rate, 0) {
		*problems = append(*problems, fmt.Errorf("POOLGATE_UPSTREAM_RPS=%q is not a rate like 5 or 0.5 (0 turns the budget off)", v))
	}
	p.Budget.Burst = e.integer("POOLGATE_UPSTREAM_BURST", 20, problems)
}
