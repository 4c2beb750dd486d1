-- API key lifecycle: a key's own rate limit (both columns or neither; none
-- means the server default), and the key that replaced it when rolled. A
-- rolled key keeps working until revoked_at, which may lie in the future.
ALTER TABLE api_keys
    ADD COLUMN rate_limit_requests integer CHECK (rate_limit_requests > 0),
    ADD COLUMN rate_limit_per_ms   bigint CHECK (rate_limit_per_ms > 0),
    ADD COLUMN replaced_by         text,
    ADD CONSTRAINT api_keys_rate_limit_whole
        CHECK ((rate_limit_requests IS NULL) = (rate_limit_per_ms IS NULL));

-- Usage per key and UTC day. Replicas count in memory and add their counts
-- every few seconds with one upsert, so no request waits on a write here.
-- last_used_at lives here rather than on api_keys so that the hot key table,
-- read on every uncached verification, is never rewritten by usage.
CREATE TABLE api_key_usage (
    tenant_id    bigint NOT NULL,
    key_id       text NOT NULL,
    day          date NOT NULL,
    requests     bigint NOT NULL DEFAULT 0 CHECK (requests >= 0),
    jobs         bigint NOT NULL DEFAULT 0 CHECK (jobs >= 0),
    last_used_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, key_id, day),
    FOREIGN KEY (tenant_id, key_id) REFERENCES api_keys (tenant_id, id) ON DELETE CASCADE
);
