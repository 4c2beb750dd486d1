package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPoliteConfig(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		c := config{PollInterval: time.Second}
		var problems []error
		loadPoliteConfig(env(envOf(nil)), &c, &problems)
		p := c.Polite
		if len(problems) > 0 || p.PollMaxInterval != 10*time.Second || p.Budget.Rate != 5 || p.Budget.Burst != 20 ||
			p.PollExpect.String() != "image=10s,video=20s+5s/s" {
			t.Errorf("defaults = %+v (table %s), %v", p, p.PollExpect, problems)
		}
	})
	t.Run("set", func(t *testing.T) {
		c := config{PollInterval: time.Second}
		var problems []error
		loadPoliteConfig(env(envOf(map[string]string{"POOLGATE_POLL_MAX_INTERVAL": "30s", "POOLGATE_POLL_EXPECTED": "none",
			"POOLGATE_UPSTREAM_RPS": "0.5", "POOLGATE_UPSTREAM_BURST": "3"})), &c, &problems)
		p := c.Polite
		if len(problems) > 0 || p.PollMaxInterval != 30*time.Second || len(p.PollExpect) != 0 || p.Budget.Rate != 0.5 || p.Budget.Burst != 3 {
			t.Errorf("got %+v, %v", p, problems)
		}
	})
	t.Run("every problem at once", func(t *testing.T) {
		c := config{PollInterval: time.Minute}
		var problems []error
		loadPoliteConfig(env(envOf(map[string]string{"POOLGATE_POLL_MAX_INTERVAL": "30s", "POOLGATE_POLL_EXPECTED": "video=soon",
			"POOLGATE_UPSTREAM_RPS": "-1", "POOLGATE_UPSTREAM_BURST": "0"})), &c, &problems)
		msg := errors.Join(problems...).Error()
		for _, name := range []string{"POOLGATE_POLL_MAX_INTERVAL", "POOLGATE_POLL_EXPECTED", "POOLGATE_UPSTREAM_RPS", "POOLGATE_UPSTREAM_BURST"} {
			if !strings.Contains(msg, name) {
				t.Errorf("problems do not mention %s: %s", name, msg)
			}
		}
	})
}
