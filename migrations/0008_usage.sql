-- Usage: which key created a job, and per-account, per-key counts in hourly
-- buckets (internal/usage owns usage_hourly).

-- The API key that created the job; NULL for jobs created before this
-- migration (they count under no key).
ALTER TABLE jobs ADD COLUMN key_id text;

-- One row per hour, account, key and writer. The writer (a replica's
-- placement, completer or retry path) is part of the key so that no two
-- replicas, and no two paths of one replica, ever wait on each other's row
-- lock: every batch adds to rows only its own path writes. Readers sum over
-- writers. account_email and key_id are '' for "none" (a job canceled or
-- timed out before it was placed; a job created without a key).
CREATE TABLE usage_hourly (
    tenant_id     bigint NOT NULL,
    mode          text NOT NULL CHECK (mode IN ('live', 'test')),
    hour          timestamptz NOT NULL,
    account_email text NOT NULL,
    key_id        text NOT NULL,
    writer        text NOT NULL,
    started       bigint NOT NULL DEFAULT 0,
    succeeded     bigint NOT NULL DEFAULT 0,
    failed        bigint NOT NULL DEFAULT 0,
    canceled      bigint NOT NULL DEFAULT 0,
    retried       bigint NOT NULL DEFAULT 0,
    -- failed jobs by error code: {"upstream_failed": 3, ...}
    failed_by     jsonb NOT NULL DEFAULT '{}',
    -- generation times of succeeded jobs as counts per log-scale bucket
    -- (internal/usage/histogram.go); trailing empty buckets are left off.
    gen_hist      integer[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, mode, hour, account_email, key_id, writer)
);
-- One account's stats over a range.
CREATE INDEX usage_hourly_account_idx ON usage_hourly (tenant_id, mode, account_email, hour);
-- Retention deletes the oldest hours first.
CREATE INDEX usage_hourly_hour_idx ON usage_hourly (hour);
