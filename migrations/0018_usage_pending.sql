-- Usage is written ahead, one row per pool and transaction, and rolled up
-- into usage_hourly later. Every placement, completion and retry batch
-- upserted one usage_hourly row per (hour, account, key) it touched, with
-- a histogram-array merge per row (~18 µs each): in a pool of 10,000
-- accounts that is two upserts per job, in any pool the largest cost on
-- the hot path after the job rows themselves. A batch now inserts its
-- folded counts as one row here, in its own transaction (so nothing is
-- counted twice or lost, as before); a roll-up on every replica moves
-- pending rows into usage_hourly about once a second, in one transaction
-- per batch of rows. Readers add both tables, so figures are exact at
-- once, as before.
--
-- rows is the batch's folded buckets: [{"hour", "account_email",
-- "key_id", "started", "succeeded", "failed", "canceled", "retried",
-- "failed_by", "gen_hist"}, ...].
--
-- Upgrading: older replicas still write usage_hourly directly, which
-- readers add as before; nothing needs stopping.
CREATE TABLE usage_pending (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id bigint NOT NULL,
    mode      text NOT NULL CHECK (mode IN ('live', 'test')),
    rows      jsonb NOT NULL
);
CREATE INDEX usage_pending_pool_idx ON usage_pending (tenant_id, mode);
