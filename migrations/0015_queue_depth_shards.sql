-- The queue depth counters were one row per side and pool: every placement
-- of every replica added to the same 'out' row and held its lock through
-- its commit, so placements of different replicas queued behind each other
-- on it (pg_stat_statements: 0.84 ms per single-row upsert, most of it
-- waiting). Each side is now spread over 16 rows; a writer adds to one at
-- random and a reader sums them, which is still O(1).
ALTER TABLE queue_depth ADD COLUMN shard smallint NOT NULL DEFAULT 0 CHECK (shard BETWEEN 0 AND 15);
ALTER TABLE queue_depth DROP CONSTRAINT queue_depth_pkey;
ALTER TABLE queue_depth ADD PRIMARY KEY (tenant_id, mode, side, shard);
