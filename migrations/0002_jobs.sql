-- Scheduler state. A job holds a slot of its account exactly while it is
-- 'dispatching' or 'running'; accounts.running counts those jobs and both
-- change in the same transaction.

-- rkey lets a placement choose a random free account in one index range
-- read: it reads up to 64 free accounts after a random point on [0,1)
-- (wrapping), picks one of them uniformly, and gives it a fresh rkey. Pools
-- with fewer free accounts are read whole (exactly uniform); larger ones are
-- fair in the long run (see scheduler.pickAccount).
ALTER TABLE accounts
    ADD COLUMN rkey              double precision NOT NULL DEFAULT random(),
    ADD COLUMN quarantined_until timestamptz;

CREATE INDEX accounts_free_idx ON accounts (tenant_id, mode, rkey)
    WHERE enabled AND status = 'active' AND running < max_jobs;

ALTER TABLE tenants ADD COLUMN webhook_secret bytea; -- sealed; made on first use

CREATE TABLE jobs (
    tenant_id        bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id               text NOT NULL,
    mode             text NOT NULL CHECK (mode IN ('live', 'test')),
    type             text NOT NULL,
    params           jsonb NOT NULL,
    state            text NOT NULL CHECK (state IN ('queued', 'dispatching', 'running', 'succeeded', 'failed', 'canceled')),
    priority         integer NOT NULL DEFAULT 0,
    pinned_email     text,
    -- account_id is set while the job holds a slot and kept afterwards for
    -- the record; no foreign key, so deleting an account never touches jobs.
    account_id       bigint,
    account_email    text,
    attempt          integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL CHECK (max_attempts BETWEEN 1 AND 10),
    run_after        timestamptz NOT NULL,
    queue_deadline   timestamptz NOT NULL,
    lease_owner      text,
    lease_expires_at timestamptz,
    upstream_id      text,
    cancel_requested boolean NOT NULL DEFAULT false,
    result           jsonb,
    error_code       text,
    error_message    text,
    warning          text,
    reply_url        text,
    reply_ref        text,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    PRIMARY KEY (tenant_id, id),
    CHECK ((state IN ('dispatching', 'running')) = (lease_owner IS NOT NULL AND account_id IS NOT NULL))
);

-- The queue: FIFO within priority, per tenant and mode.
CREATE INDEX jobs_queue_idx ON jobs (tenant_id, mode, priority DESC, created_at, id)
    WHERE state = 'queued' AND pinned_email IS NULL;
CREATE INDEX jobs_pinned_idx ON jobs (tenant_id, mode, pinned_email, priority DESC, created_at, id)
    WHERE state = 'queued' AND pinned_email IS NOT NULL;
CREATE INDEX jobs_deadline_idx ON jobs (queue_deadline) WHERE state = 'queued';
CREATE INDEX jobs_inflight_idx ON jobs (lease_expires_at) WHERE state IN ('dispatching', 'running');
CREATE INDEX jobs_list_idx ON jobs (tenant_id, mode, id DESC);

-- Idempotency-Key on job creation: the same key and body within 24 h return
-- the original job.
CREATE TABLE job_idempotency (
    tenant_id    bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    mode         text NOT NULL,
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    job_id       text NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, mode, key)
);

-- The webhook outbox: rows are written in the same transaction as the
-- event they report, then delivered at least once.
CREATE TABLE webhook_deliveries (
    id              text PRIMARY KEY,
    tenant_id       bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url             text NOT NULL,
    event           text NOT NULL,
    payload         text NOT NULL, -- the exact bytes sent and signed (jsonb would reorder keys)
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    give_up_at      timestamptz NOT NULL,
    last_error      text,
    last_status     integer,
    created_at      timestamptz NOT NULL,
    delivered_at    timestamptz
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
