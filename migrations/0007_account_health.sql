-- Account health (issue 13). An account out of rotation says why and since
-- when; a quarantine ends only with a probe, which one replica at a time
-- runs (probe_lock_until is its lease, like refresh_lock_until), or, for an
-- account whose probes are off, on the clock.
--
-- status stays 'active' | 'error' (the credentials were refused); a
-- quarantine is quarantined_until with its reason; disabled is enabled =
-- false, which only the operator changes; expired is read from the refresh
-- token's expiry. deriveStatus in internal/accounts combines them.
ALTER TABLE accounts
    ADD COLUMN quarantine_reason    text CHECK (quarantine_reason IN
        ('rate_limited', 'daily_quota', 'upstream_unavailable', 'consecutive_failures')),
    ADD COLUMN health_since         timestamptz,
    -- consecutive transient failures since the last success (the breaker)
    ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0,
    -- breaker quarantines since the last success: each one lasts longer
    ADD COLUMN breaker_trips        integer NOT NULL DEFAULT 0,
    -- false: the operator does not want this account probed
    ADD COLUMN probe_enabled        boolean NOT NULL DEFAULT true,
    -- when the next probe is due; NULL: none is planned
    ADD COLUMN probe_at             timestamptz,
    ADD COLUMN probe_failures       integer NOT NULL DEFAULT 0,
    ADD COLUMN probe_lock_until     timestamptz,
    -- the refresh token expiry an 'expired' event was recorded for
    ADD COLUMN expired_noted        timestamptz;

-- Until now a 429 set quarantined_until and nothing ever cleared it; the
-- old rule let the account back once it had passed. Under the new rule a
-- quarantine ends with a probe, so a past one is over already, and a
-- running one gets its probe planned for its end.
UPDATE accounts SET quarantined_until = NULL WHERE quarantined_until <= now();
UPDATE accounts SET quarantine_reason = 'rate_limited', probe_at = quarantined_until
WHERE quarantined_until IS NOT NULL;

-- The prober's due test is coalesce(probe_at, quarantined_until) <= now,
-- so a quarantined row without a planned probe is never missed.
CREATE INDEX accounts_probe_due_idx ON accounts ((coalesce(probe_at, quarantined_until)))
    WHERE probe_at IS NOT NULL OR quarantined_until IS NOT NULL;
-- Quarantines that end on the clock (probes off), for the prober's sweep.
CREATE INDEX accounts_quarantine_lapse_idx ON accounts (quarantined_until)
    WHERE quarantined_until IS NOT NULL AND NOT probe_enabled;
-- Accounts in error with a probe planned are refreshed too (a probe with
-- a lapsed lt_token could only fail).
CREATE INDEX accounts_refresh_probe_idx ON accounts (token_expires_at)
    WHERE enabled AND status = 'error' AND probe_at IS NOT NULL;

-- Breaker resets that successes left for later. A completer must never
-- hold or wait for an account's row lock (placements lock accounts with
-- SKIP LOCKED and would skip it), so when a job succeeds on an account
-- with failures counted it inserts a row here instead, like a slot
-- release; whoever next holds the account's lock to count a failure
-- folds it (no foreign key: its check would lock the account row; and no
-- unique key: two completers inserting the same account's reset would
-- wait on each other's commit, and the second would fail. A duplicate is
-- harmless: the fold deletes them all).
CREATE TABLE account_breaker_resets (
    tenant_id  bigint NOT NULL,
    account_id bigint NOT NULL
);
CREATE INDEX account_breaker_resets_account_idx ON account_breaker_resets (tenant_id, account_id);
CREATE INDEX accounts_expiry_idx ON accounts (refresh_token_expires_at) WHERE enabled;

-- Health transitions, newest last; the account view shows the last 20.
CREATE TABLE account_health_events (
    tenant_id  bigint NOT NULL,
    id         bigint GENERATED ALWAYS AS IDENTITY,
    account_id bigint NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('quarantined', 'error', 'recovered', 'expired')),
    reason     text NOT NULL,
    message    text NOT NULL,
    until      timestamptz,
    at         timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, account_id) REFERENCES accounts (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX account_health_events_account_idx ON account_health_events (tenant_id, account_id, id DESC);

-- Health transitions are alerts too, delivered through the same outbox.
ALTER TABLE alerts DROP CONSTRAINT alerts_kind_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_check
    CHECK (kind IN ('expiring', 'expired', 'error', 'quarantined', 'recovered'));
