package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRetentionConfig(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		var c config
		var problems []error
		loadRetentionConfig(env(envOf(nil)), &c, &problems)
		want := retentionConfig{Jobs: 7 * 24 * time.Hour, Idempotency: 24 * time.Hour, Webhooks: 7 * 24 * time.Hour,
			Alerts: 30 * 24 * time.Hour, CronRuns: 7 * 24 * time.Hour, Usage: 90 * 24 * time.Hour, Interval: 5 * time.Minute, Batch: 1000, Pause: 100 * time.Millisecond}
		if len(problems) > 0 || c.Retention != want {
			t.Errorf("defaults = %+v, %v; want %+v", c.Retention, problems, want)
		}
	})
	t.Run("days and durations", func(t *testing.T) {
		var c config
		var problems []error
		loadRetentionConfig(env(envOf(map[string]string{"POOLGATE_JOB_RETENTION": "1.5d", "POOLGATE_ALERT_RETENTION": "90m"})), &c, &problems)
		if len(problems) > 0 || c.Retention.Jobs != 36*time.Hour || c.Retention.Alerts != 90*time.Minute {
			t.Errorf("got %+v, %v", c.Retention, problems)
		}
	})
	t.Run("every problem at once", func(t *testing.T) {
		var c config
		var problems []error
		loadRetentionConfig(env(envOf(map[string]string{
			"POOLGATE_JOB_RETENTION": "0", "POOLGATE_WEBHOOK_RETENTION": "a week",
			"POOLGATE_IDEMPOTENCY_RETENTION": "1h", "POOLGATE_RETENTION_BATCH": "0",
		})), &c, &problems)
		msg := errors.Join(problems...).Error()
		for _, name := range []string{"POOLGATE_JOB_RETENTION", "POOLGATE_WEBHOOK_RETENTION", "POOLGATE_IDEMPOTENCY_RETENTION", "POOLGATE_RETENTION_BATCH"} {
			if !strings.Contains(msg, name) {
				t.Errorf("problems do not mention %s: %s", name, msg)
			}
		}
	})
}
