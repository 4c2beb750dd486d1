-- Slot releases that could not take their account's row lock at once.
-- A placement holds the rows of the accounts it places on until it
-- commits; a completer that waited for those locks stalled every job it
-- was finishing behind them. Now the completer frees a slot on the account
-- row when it can lock it at once, and otherwise records the release here,
-- in the transaction that ends the job. Whoever next holds the account's
-- lock (a placement, or the dispatcher's fold) deletes the rows and
-- subtracts what it deleted. Rows are only ever inserted by completers and
-- deleted by a holder of the account's lock, so each release counts once.
CREATE TABLE account_slot_releases (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  bigint NOT NULL,
    account_id bigint NOT NULL,
    n          integer NOT NULL CHECK (n > 0)
);
CREATE INDEX account_slot_releases_account_idx ON account_slot_releases (tenant_id, account_id);

-- The slots an account holds: its running count less its pending releases.
CREATE VIEW account_slots AS
SELECT a.tenant_id, a.id, a.mode, a.email, a.max_jobs,
       a.running - coalesce((SELECT sum(r.n) FROM account_slot_releases r
                             WHERE r.tenant_id = a.tenant_id AND r.account_id = a.id), 0)::integer AS held
FROM accounts a;
