-- A slot release carries its account's mode, and its index leads with
-- the pool (tenant, mode). Every placement round lists the pools with
-- pending releases: it skipped through the releases one account at a time
-- and probed each account's capacity row for its mode, ~100 index probes
-- a round in a busy pool of 100 accounts (8 µs of Postgres time per job,
-- pg_stat_statements, bench throughput); now it skips one pool at a time.
-- A placement's window reads its own pool's releases only.
--
-- An account's mode never changes, so the copy cannot go stale. Releases
-- of accounts that no longer exist are dropped here: no placement could
-- ever fold them, and the periodic fold would drop them anyway.
--
-- Upgrading: every replica must run a binary that knows this migration;
-- an older one would insert releases without a mode.
ALTER TABLE account_slot_releases ADD COLUMN mode text;
UPDATE account_slot_releases r SET mode = c.mode
FROM account_capacity c WHERE c.tenant_id = r.tenant_id AND c.id = r.account_id;
DELETE FROM account_slot_releases WHERE mode IS NULL;
ALTER TABLE account_slot_releases ALTER COLUMN mode SET NOT NULL;
DROP INDEX account_slot_releases_account_idx;
CREATE INDEX account_slot_releases_pool_idx ON account_slot_releases (tenant_id, mode, account_id);

-- The slots an account holds: its running count less its pending releases.
CREATE OR REPLACE VIEW account_slots AS
SELECT a.tenant_id, a.id, a.mode, a.email, a.max_jobs,
       c.running - coalesce((SELECT sum(r.n) FROM account_slot_releases r
                             WHERE r.tenant_id = c.tenant_id AND r.mode = c.mode AND r.account_id = c.id), 0)::integer AS held
FROM accounts a JOIN account_capacity c ON c.tenant_id = a.tenant_id AND c.id = a.id;
