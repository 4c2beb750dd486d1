-- Admission (POOLGATE_MAX_QUEUED) reads a pool's queue depth in O(1)
-- instead of counting its queued jobs. Two counters per pool: jobs that
-- entered the queue ('in': created or sent back for a retry) and jobs that
-- left it ('out': placed, canceled or expired); the depth is in - out. They
-- are separate rows so that inserting and placing never wait on each other.
-- The scheduler changes them in the same transaction as the jobs.
CREATE TABLE queue_depth (
    tenant_id bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    mode      text NOT NULL CHECK (mode IN ('live', 'test')),
    side      text NOT NULL CHECK (side IN ('in', 'out')),
    n         bigint NOT NULL,
    PRIMARY KEY (tenant_id, mode, side)
);

INSERT INTO queue_depth (tenant_id, mode, side, n)
SELECT tenant_id, mode, 'in', count(*) FROM jobs WHERE state = 'queued' GROUP BY 1, 2;
