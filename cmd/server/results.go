package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/results"
	"github.com/poolgate/poolgate/internal/scheduler"
)

// resultsConfig says where job results are stored: a directory unless an
// S3 endpoint is set (POOLGATE_RESULTS_*).
type resultsConfig struct {
	Dir string
	S3  *results.S3Config // nil: the directory
}

func loadResultsConfig(e env, c *config, problems *[]error) {
	c.Results.Dir = e.get("POOLGATE_RESULTS_DIR", ".data/results")
	endpoint := e.get("POOLGATE_RESULTS_S3_ENDPOINT", "")
	if endpoint == "" {
		return
	}
	s3 := &results.S3Config{
		Endpoint: endpoint, Bucket: e.get("POOLGATE_RESULTS_S3_BUCKET", ""), Region: e.get("POOLGATE_RESULTS_S3_REGION", "us-east-1"),
		AccessKey: e.get("POOLGATE_RESULTS_S3_ACCESS_KEY", ""), SecretKey: e.get("POOLGATE_RESULTS_S3_SECRET_KEY", ""),
		Prefix:        e.get("POOLGATE_RESULTS_S3_PREFIX", ""),
		PartSize:      uint64(e.integer("POOLGATE_RESULTS_S3_PART_SIZE_MB", results.DefaultPartSize>>20, problems)) << 20,
		UploadBuffers: e.integer("POOLGATE_RESULTS_S3_UPLOAD_BUFFERS", results.DefaultUploadBuffers, problems),
	}
	if u, err := url.Parse(endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		*problems = append(*problems, fmt.Errorf("POOLGATE_RESULTS_S3_ENDPOINT=%q is not an http(s) URL like https://s3.eu-west-1.amazonaws.com", endpoint))
	}
	if s3.Bucket == "" {
		*problems = append(*problems, fmt.Errorf("POOLGATE_RESULTS_S3_BUCKET is not set (POOLGATE_RESULTS_S3_ENDPOINT is)"))
	}
	if s3.AccessKey == "" || s3.SecretKey == "" {
		*problems = append(*problems, fmt.Errorf("POOLGATE_RESULTS_S3_ACCESS_KEY and POOLGATE_RESULTS_S3_SECRET_KEY must both be set with POOLGATE_RESULTS_S3_ENDPOINT"))
	}
	if s3.PartSize > 0 && s3.PartSize < 5<<20 {
		*problems = append(*problems, fmt.Errorf("POOLGATE_RESULTS_S3_PART_SIZE_MB must be at least 5 (S3's smallest part)"))
	}
	c.Results.S3 = s3
}

// newResultStore opens the configured store; an S3 bucket that cannot be
// reached stops start-up rather than the first job.
func newResultStore(ctx context.Context, cfg resultsConfig, logger *slog.Logger) (results.Store, error) {
	if cfg.S3 == nil {
		d, err := results.NewDir(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("POOLGATE_RESULTS_DIR: %w", err)
		}
		logger.Info("results stored in a directory (single node: replicas must share it)", "dir", cfg.Dir)
		return d, nil
	}
	s, err := results.NewS3(*cfg.S3)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.Check(cctx); err != nil {
		return nil, fmt.Errorf("result store: %w", err)
	}
	logger.Info("results stored in S3", "endpoint", cfg.S3.Endpoint, "bucket", cfg.S3.Bucket, "prefix", cfg.S3.Prefix)
	return s, nil
}

// forgetResults is the jobs' retention hook: in the transaction that
// deletes jobs, it schedules their stored results for deletion. Jobs whose
// result is poolgate's file go, and so do jobs without a result (a failed
// attempt may have stored one before the job failed); LTX Studio results
// live upstream and are left alone.
func forgetResults(ctx context.Context, db dbx.DBTX, jobs []scheduler.DeletedJob) error {
	tenants, keys := make([]int64, 0, len(jobs)), make([]string, 0, len(jobs))
	for _, j := range jobs {
		if j.ResultURL == "" || j.ResultURL == results.URLPath(j.ID) {
			tenants, keys = append(tenants, j.TenantID), append(keys, j.ID)
		}
	}
	return results.ScheduleDeletion(ctx, db, tenants, keys)
}
