-- Token refresh bookkeeping. refresh_lock_until is a short lease: the replica
-- that sets it is the only one refreshing that account until it passes.
ALTER TABLE accounts
    ADD COLUMN last_refresh_at    timestamptz,
    ADD COLUMN refresh_failures   integer NOT NULL DEFAULT 0,
    ADD COLUMN refresh_retry_at   timestamptz,
    ADD COLUMN refresh_lock_until timestamptz;

CREATE INDEX accounts_refresh_due_idx ON accounts (token_expires_at)
    WHERE enabled AND status = 'active';

-- Alerts about credentials. dedupe_key names the credential instance and the
-- threshold ("expiring:7d:<expiry>"), so an alert is raised once however many
-- replicas scan, while fresh cookies (a new expiry) can be warned about anew.
CREATE TABLE alerts (
    tenant_id     bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id            text NOT NULL,
    mode          text NOT NULL,
    account_id    bigint NOT NULL,
    account_email text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('expiring', 'expired', 'error')),
    threshold     text,
    dedupe_key    text NOT NULL,
    expires_at    timestamptz,
    message       text NOT NULL,
    created_at    timestamptz NOT NULL,
    delivery_ids  text[] NOT NULL DEFAULT '{}', -- its webhook_deliveries
    acked_at      timestamptz,
    resolved_at   timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, account_id, dedupe_key)
);
CREATE INDEX alerts_list_idx ON alerts (tenant_id, mode, id DESC);
CREATE INDEX alerts_open_idx ON alerts (tenant_id, account_id) WHERE resolved_at IS NULL;

-- Per-tenant alert destination, in addition to POOLGATE_ALERT_WEBHOOK_URL.
CREATE TABLE alert_config (
    tenant_id  bigint PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    url        text NOT NULL,
    format     text NOT NULL CHECK (format IN ('json', 'slack')),
    updated_at timestamptz NOT NULL
);

-- Cron bookkeeping: the last tick a replica ran, so each tick runs once.
CREATE TABLE cron_runs (
    name     text PRIMARY KEY,
    last_run timestamptz NOT NULL
);
