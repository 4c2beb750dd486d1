-- Stored results (internal/results) of jobs that retention deleted, waiting
-- to be deleted from the result store. A row is written in the transaction
-- that deletes its job, and removed only after the store deleted the
-- object, so a crash between the two leaves the row for the next pass: no
-- object outlives its job for good, and no retained job points at a
-- deleted object.
CREATE TABLE result_deletions (
    tenant_id  bigint NOT NULL,
    key        text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
