-- A slot release carries its account's mode, so that the pools with
-- pending releases are found one (tenant, mode) at a time. Before, every
-- placement round skipped through the releases one account at a time and
-- probed each account's capacity row for its mode: with a busy pool of
-- 100 accounts that was ~100 index probes a round, 8 µs of Postgres time
-- per job (pg_stat_statements, bench throughput).
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
CREATE INDEX account_slot_releases_pool_idx ON account_slot_releases (tenant_id, mode);
