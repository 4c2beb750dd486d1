-- Operator console sessions. A browser signs in with an API key once; the
-- session it gets back is only a random token whose SHA-256 is stored here.
-- The key itself is kept sealed (AES-256-GCM, like account cookies) so that
-- every console request can re-verify it: a revoked or expired key ends its
-- sessions at once.
CREATE TABLE console_sessions (
    token_hash   bytea PRIMARY KEY,
    tenant_id    bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_id       text NOT NULL,
    key_sealed   bytea NOT NULL,
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL -- the absolute end, whatever the activity
);

CREATE INDEX console_sessions_expires_idx ON console_sessions (expires_at);
