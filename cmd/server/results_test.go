package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/pgtest"
	"github.com/poolgate/poolgate/internal/results"
	"github.com/poolgate/poolgate/internal/results/resultstest"
)

// brokenDeletes is a store whose deletes fail, as an unreachable bucket's do.
type brokenDeletes struct{ results.Store }

func (brokenDeletes) Delete(context.Context, ...string) error {
	return errors.New("bucket unreachable")
}

// TestResultsExpireWithTheirJobs runs the retention service as serve wires
// it: a job's stored result goes once the job is deleted, even when the
// store fails at first, and never while the job is retained.
func TestResultsExpireWithTheirJobs(t *testing.T) {
	for _, kind := range []string{"dir", "s3"} {
		t.Run(kind, func(t *testing.T) {
			var store results.Store
			if kind == "s3" {
				store = resultstest.S3(t)
			} else {
				d, err := results.NewDir(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				store = d
			}
			ctx := context.Background()
			pool := pgtest.New(t)
			var tenant int64
			if err := pool.QueryRow(ctx, `INSERT INTO tenants (name) VALUES ('acme') RETURNING id`).Scan(&tenant); err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			job := func(id, state string, ended time.Time, resultURL string) {
				t.Helper()
				var result *string
				if resultURL != "" {
					r := fmt.Sprintf(`{"url":%q}`, resultURL)
					result = &r
				}
				if _, err := pool.Exec(ctx, `INSERT INTO jobs (tenant_id, id, mode, type, params, state, max_attempts, run_after,
					queue_deadline, created_at, finished_at, result) VALUES ($1, $2, 'live', 'video', '{}', $3, 3, $4, $4, $4, $4, $5)`,
					tenant, id, state, ended, result); err != nil {
					t.Fatal(err)
				}
			}
			put := func(key string) {
				t.Helper()
				if _, err := store.Put(ctx, key, strings.NewReader("mp4 of "+key), "video/mp4"); err != nil {
					t.Fatal(err)
				}
			}
			old, fresh := now.Add(-8*24*time.Hour), now.Add(-24*time.Hour)
			job("job_old_stored", "succeeded", old, results.URLPath("job_old_stored"))
			put("job_old_stored")
			job("job_old_failed", "failed", old, "") // an attempt stored a file, then the job failed
			put("job_old_failed")
			job("job_old_ltx", "succeeded", old, "https://cdn.ltx.studio/v/1.mp4")
			job("job_fresh_stored", "succeeded", fresh, results.URLPath("job_fresh_stored"))
			put("job_fresh_stored")
			put("job_orphan_kept") // no job ever pointed at it: not retention's

			cfg := retentionConfig{Jobs: 7 * 24 * time.Hour, Idempotency: 24 * time.Hour, Webhooks: time.Hour, Alerts: time.Hour,
				CronRuns: time.Hour, Usage: 90 * 24 * time.Hour, Interval: time.Hour, Batch: 1000}
			pass := func(s results.Store) error {
				svc, err := newRetention(pool, slog.New(slog.DiscardHandler), cfg, s)
				if err != nil {
					t.Fatal(err)
				}
				_, err = svc.RunOnce(ctx)
				return err
			}

			// The store fails: the jobs go, their files wait, scheduled.
			if err := pass(brokenDeletes{store}); err == nil || !strings.Contains(err.Error(), "bucket unreachable") {
				t.Fatalf("a pass whose store deletes fail reported %v", err)
			}
			if got := scheduled(t, pool); !slices.Equal(got, []string{"job_old_failed", "job_old_stored"}) {
				t.Errorf("scheduled for deletion: %v; want the old stored and failed jobs' keys", got)
			}
			for _, k := range []string{"job_old_stored", "job_old_failed", "job_fresh_stored"} {
				if !exists(t, store, k) {
					t.Errorf("%s was deleted although its deletion failed", k)
				}
			}

			// The next pass, with the store back, finishes the work.
			if err := pass(store); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"job_old_stored", "job_old_failed"} {
				if exists(t, store, k) {
					t.Errorf("%s outlived its job", k)
				}
			}
			for _, k := range []string{"job_fresh_stored", "job_orphan_kept"} {
				if !exists(t, store, k) {
					t.Errorf("%s was deleted while its job is retained (or it had none)", k)
				}
			}
			if got := scheduled(t, pool); len(got) != 0 {
				t.Errorf("still scheduled after a good pass: %v", got)
			}
			var jobs []string
			rows, _ := pool.Query(ctx, `SELECT id FROM jobs ORDER BY id`)
			for rows.Next() {
				var id string
				rows.Scan(&id)
				jobs = append(jobs, id)
			}
			if !slices.Equal(jobs, []string{"job_fresh_stored"}) {
				t.Errorf("jobs left: %v; want only the fresh one", jobs)
			}
		})
	}
}

func scheduled(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT key FROM result_deletions ORDER BY key`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	return keys
}

func exists(t *testing.T, s results.Store, key string) bool {
	t.Helper()
	obj, err := s.Open(context.Background(), key)
	if errors.Is(err, results.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	obj.Close()
	return true
}

func TestResultsConfig(t *testing.T) {
	load := func(vars map[string]string) (resultsConfig, string) {
		var c config
		var problems []error
		loadResultsConfig(env(envOf(vars)), &c, &problems)
		return c.Results, fmt.Sprint(errors.Join(problems...))
	}
	if c, problems := load(nil); c.Dir != ".data/results" || c.S3 != nil || problems != "<nil>" {
		t.Errorf("defaults: %+v, %s; want the .data/results directory", c, problems)
	}
	c, problems := load(map[string]string{"POOLGATE_RESULTS_S3_ENDPOINT": "https://s3.eu-west-1.amazonaws.com",
		"POOLGATE_RESULTS_S3_BUCKET": "videos", "POOLGATE_RESULTS_S3_ACCESS_KEY": "AKIA", "POOLGATE_RESULTS_S3_SECRET_KEY": "s3cr3t-value"})
	if problems != "<nil>" || c.S3 == nil || c.S3.Bucket != "videos" || c.S3.Region != "us-east-1" || c.S3.PartSize != 8<<20 {
		t.Errorf("S3: %+v, %s", c.S3, problems)
	}
	_, problems = load(map[string]string{"POOLGATE_RESULTS_S3_ENDPOINT": "s3.amazonaws.com", "POOLGATE_RESULTS_S3_SECRET_KEY": "s3cr3t-value",
		"POOLGATE_RESULTS_S3_PART_SIZE_MB": "1"})
	for _, name := range []string{"POOLGATE_RESULTS_S3_ENDPOINT", "POOLGATE_RESULTS_S3_BUCKET", "POOLGATE_RESULTS_S3_ACCESS_KEY", "POOLGATE_RESULTS_S3_PART_SIZE_MB"} {
		if !strings.Contains(problems, name) {
			t.Errorf("problems do not mention %s: %s", name, problems)
		}
	}
	if strings.Contains(problems, "s3cr3t-value") {
		t.Errorf("a problem shows the secret key: %s", problems)
	}
}
