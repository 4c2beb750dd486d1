package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/ids"
	"github.com/poolgate/poolgate/internal/tenant"
)

// Key is an API key as stored: everything but the secret.
type Key struct {
	ID        string
	Name      string
	Start     string
	Mode      tenant.Mode
	Scopes    []string
	CreatedAt time.Time
	ExpiresAt *time.Time
	RevokedAt *time.Time
}

// KeyParams are the settings of a new key.
type KeyParams struct {
	Name      string
	Mode      tenant.Mode // "" means live
	Scopes    []string    // empty means ScopeAll
	ExpiresAt *time.Time
}

// Store keeps API keys and tenants.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

// NewStore returns a Store; now is the clock expiry is judged by.
func NewStore(pool *pgxpool.Pool, now func() time.Time) *Store {
	return &Store{pool: pool, now: now}
}

const tenantUpsert = `
INSERT INTO tenants (name) VALUES ($1)
ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
RETURNING id`

// Bootstrap creates the tenant called tenantName if it does not exist and
// issues a key in it. It is the operator's way in (the keys CLI); the
// returned secret is never retrievable again.
func (s *Store) Bootstrap(ctx context.Context, tenantName string, p KeyParams) (Key, string, error) {
	if tenantName == "" || len(tenantName) > 100 {
		return Key{}, "", errs.Invalid("invalid_tenant", "tenant name must be 1 to 100 characters")
	}
	var key Key
	var secret string
	err := dbx.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		var tenantID int64
		if err := tx.QueryRow(ctx, tenantUpsert, tenantName).Scan(&tenantID); err != nil {
			return fmt.Errorf("upsert tenant: %w", err)
		}
		var err error
		key, secret, err = s.insert(ctx, tx, tenantID, p)
		return err
	})
	return key, secret, err
}

const keyInsert = `
INSERT INTO api_keys (tenant_id, id, name, hash, start, mode, scopes, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`

func (s *Store) insert(ctx context.Context, db dbx.DBTX, tenantID int64, p KeyParams) (Key, string, error) {
	if p.Mode == "" {
		p.Mode = tenant.Live
	}
	if !p.Mode.Valid() {
		return Key{}, "", errs.Invalid("invalid_mode", "mode must be live or test")
	}
	if p.Name == "" || len(p.Name) > 100 {
		return Key{}, "", errs.Invalid("invalid_name", "key name must be 1 to 100 characters")
	}
	scopes, err := ValidateScopes(p.Scopes)
	if err != nil {
		return Key{}, "", err
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	secret := NewSecret(p.Mode)
	k := Key{
		ID: ids.New("key", now), Name: p.Name, Start: Start(secret), Mode: p.Mode,
		Scopes: scopes, CreatedAt: now, ExpiresAt: p.ExpiresAt,
	}
	_, err = db.Exec(ctx, keyInsert, tenantID, k.ID, k.Name, Hash(secret), k.Start, k.Mode, k.Scopes, k.CreatedAt, k.ExpiresAt)
	if err != nil {
		return Key{}, "", fmt.Errorf("insert api key: %w", err)
	}
	return k, secret, nil
}

const keyByHash = `
SELECT tenant_id, id, mode, scopes, expires_at, revoked_at
FROM api_keys WHERE hash = $1`

// Verify returns the principal a presented key speaks for, or one of the
// 401 errors. A key that fails the offline checksum never reaches the
// database.
func (s *Store) Verify(ctx context.Context, secret string) (Principal, error) {
	if _, ok := ParseSecret(secret); !ok {
		return Principal{}, ErrInvalidKey
	}
	var (
		p                Principal
		expires, revoked *time.Time
	)
	err := s.pool.QueryRow(ctx, keyByHash, Hash(secret)).
		Scan(&p.TenantID, &p.KeyID, &p.Mode, &p.Scopes, &expires, &revoked)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Principal{}, ErrInvalidKey
	case err != nil:
		return Principal{}, errs.Unavailable(fmt.Errorf("verify api key: %w", err))
	case revoked != nil && !revoked.After(s.now()):
		return Principal{}, ErrInvalidKey
	case expires != nil && !expires.After(s.now()):
		return Principal{}, ErrExpiredKey
	}
	return p, nil
}
