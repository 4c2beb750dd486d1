-- Retention: finished rows are deleted in small batches once they are older
-- than their retention period. Each index below covers exactly the rows a
-- cleanup may delete, ordered by the time it compares, so a batch reads
-- only the rows it deletes and never scans the live rows.

-- Finished jobs by finish time. Only terminal rows enter this index, so
-- queued and running jobs cost it nothing.
CREATE INDEX jobs_finished_idx ON jobs (finished_at)
    WHERE state IN ('succeeded', 'failed', 'canceled');

-- Idempotency keys by age (every row ages out of its 24 h window).
CREATE INDEX job_idempotency_created_idx ON job_idempotency (created_at);

-- Delivered and dead deliveries by when they ended. A dead (failed) row
-- has no end time of its own; give_up_at is a bound on it that is never
-- early.
CREATE INDEX webhook_deliveries_done_idx ON webhook_deliveries ((coalesce(delivered_at, give_up_at)))
    WHERE state IN ('delivered', 'failed');

-- Resolved alerts by resolution time.
CREATE INDEX alerts_resolved_idx ON alerts (resolved_at) WHERE resolved_at IS NOT NULL;
