-- An account's slot count and rotation key move out of the accounts row
-- into a narrow row of their own. Every placement and every fold updates
-- them, and both sit in the free-account index (running in its predicate,
-- rkey in its key), so no such update can be HOT: on accounts each one
-- wrote a new copy of a wide row (the sealed cookie, tokens, health) and a
-- new entry in every one of its eight indexes. Here it writes ~60 bytes
-- and two index entries.
--
-- The other columns are copies of what a placement reads of an account
-- (active is enabled AND status = 'active'; cookie_version names the
-- current sealed cookie by its nonce), kept equal by the triggers below in
-- the transaction that changes them, so that a placement finds, checks
-- and locks free accounts in this table alone (internal/accounts
-- slots.go). This row's lock is the slot lock.
--
-- Upgrading: every replica must run a binary that knows this migration;
-- an older one would still count slots on accounts.running, which is gone.
CREATE TABLE account_capacity (
    tenant_id bigint NOT NULL,
    id        bigint NOT NULL,
    mode      text NOT NULL,
    email     text NOT NULL,
    provider  text NOT NULL,
    cookie_version text NOT NULL,
    active    boolean NOT NULL,
    max_jobs  integer NOT NULL,
    quarantined_until        timestamptz,
    probe_enabled            boolean NOT NULL,
    token_expires_at         timestamptz,
    refresh_token_expires_at timestamptz,
    running   integer NOT NULL DEFAULT 0 CHECK (running >= 0),
    rkey      double precision NOT NULL DEFAULT random(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, id) REFERENCES accounts (tenant_id, id) ON DELETE CASCADE
) WITH (fillfactor = 10);
-- A narrow row packs ~120 to a page, and every placement and fold of every
-- replica would lock that one page's buffer: few rows a page (the rest is
-- room for their updated versions, which stay on their page) spread them.

-- rkey lets a placement choose a random free account in one index range
-- read (see 0002_jobs.sql and accounts.FreeWindow).
CREATE INDEX account_capacity_free_idx ON account_capacity (tenant_id, mode, rkey)
    WHERE active AND running < max_jobs;

INSERT INTO account_capacity (tenant_id, id, mode, email, provider, cookie_version, active, max_jobs,
    quarantined_until, probe_enabled, token_expires_at, refresh_token_expires_at, running, rkey)
SELECT tenant_id, id, mode, email, provider, encode(substring(cookie FROM 2 FOR 12), 'hex'),
    enabled AND status = 'active', max_jobs, quarantined_until, probe_enabled, token_expires_at,
    refresh_token_expires_at, running, rkey
FROM accounts;

-- Both triggers write the same copy: the insert adds the row, an update
-- refreshes the copied columns (running and rkey are never copied).
CREATE FUNCTION account_capacity_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO account_capacity (tenant_id, id, mode, email, provider, cookie_version, active, max_jobs,
        quarantined_until, probe_enabled, token_expires_at, refresh_token_expires_at)
    VALUES (NEW.tenant_id, NEW.id, NEW.mode, NEW.email, NEW.provider,
        encode(substring(NEW.cookie FROM 2 FOR 12), 'hex'), NEW.enabled AND NEW.status = 'active',
        NEW.max_jobs, NEW.quarantined_until, NEW.probe_enabled, NEW.token_expires_at,
        NEW.refresh_token_expires_at)
    ON CONFLICT (tenant_id, id) DO UPDATE SET cookie_version = EXCLUDED.cookie_version,
        active = EXCLUDED.active, max_jobs = EXCLUDED.max_jobs,
        quarantined_until = EXCLUDED.quarantined_until, probe_enabled = EXCLUDED.probe_enabled,
        token_expires_at = EXCLUDED.token_expires_at, refresh_token_expires_at = EXCLUDED.refresh_token_expires_at;
    RETURN NULL;
END
$$;

CREATE TRIGGER accounts_capacity_insert AFTER INSERT ON accounts
    FOR EACH ROW EXECUTE FUNCTION account_capacity_sync();
-- Only a real change touches (and so locks) the capacity row: most account
-- writes (health facts, probes' bookkeeping) leave these columns alone.
-- An account's email, mode and provider never change.
CREATE TRIGGER accounts_capacity_update
    AFTER UPDATE OF cookie, enabled, status, max_jobs, quarantined_until, probe_enabled, token_expires_at,
        refresh_token_expires_at ON accounts
    FOR EACH ROW
    WHEN ((OLD.cookie, OLD.enabled AND OLD.status = 'active', OLD.max_jobs, OLD.quarantined_until,
           OLD.probe_enabled, OLD.token_expires_at, OLD.refresh_token_expires_at)
          IS DISTINCT FROM
          (NEW.cookie, NEW.enabled AND NEW.status = 'active', NEW.max_jobs, NEW.quarantined_until,
           NEW.probe_enabled, NEW.token_expires_at, NEW.refresh_token_expires_at))
    EXECUTE FUNCTION account_capacity_sync();

-- The slots an account holds: its running count less its pending releases.
DROP VIEW account_slots;
CREATE VIEW account_slots AS
SELECT a.tenant_id, a.id, a.mode, a.email, a.max_jobs,
       c.running - coalesce((SELECT sum(r.n) FROM account_slot_releases r
                             WHERE r.tenant_id = c.tenant_id AND r.account_id = c.id), 0)::integer AS held
FROM accounts a JOIN account_capacity c ON c.tenant_id = a.tenant_id AND c.id = a.id;

ALTER TABLE accounts DROP COLUMN running, DROP COLUMN rkey; -- drops accounts_free_idx with them
