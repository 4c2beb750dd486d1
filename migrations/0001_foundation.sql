-- Tenants own everything; every other table leads with tenant_id so the
-- schema can later be distributed by tenant (Citus) without rewriting queries.
CREATE TABLE tenants (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (name <> '' AND length(name) <= 100),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- API keys are stored only as SHA-256 hashes of the full secret; "start" is
-- the prefix and first characters, kept so operators can recognise a key.
CREATE TABLE api_keys (
    tenant_id  bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id         text NOT NULL,
    name       text NOT NULL,
    hash       bytea NOT NULL,
    start      text NOT NULL,
    mode       text NOT NULL CHECK (mode IN ('live', 'test')),
    scopes     text[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX api_keys_hash_idx ON api_keys (hash);

-- Accounts of the upstream service. cookie holds the AES-256-GCM sealed
-- cookie string; its associated data is the row's (tenant_id, mode, email),
-- so a ciphertext moved to another row does not open. Test-mode and
-- live-mode accounts are separate pools.
CREATE TABLE accounts (
    tenant_id                bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                       bigint GENERATED ALWAYS AS IDENTITY,
    mode                     text NOT NULL CHECK (mode IN ('live', 'test')),
    email                    text NOT NULL CHECK (email <> '' AND email = lower(email)),
    cookie                   bytea NOT NULL,
    max_jobs                 integer NOT NULL CHECK (max_jobs BETWEEN 1 AND 100),
    running                  integer NOT NULL DEFAULT 0 CHECK (running >= 0),
    enabled                  boolean NOT NULL DEFAULT true,
    status                   text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'error')),
    status_reason            text,
    token_expires_at         timestamptz,
    refresh_token_expires_at timestamptz,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, mode, email)
);
