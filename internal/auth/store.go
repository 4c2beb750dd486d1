package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

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
	// RevokedAt may lie in the future: a rolled key works until then.
	RevokedAt  *time.Time
	RateLimit  *RateLimit // nil: the server default
	ReplacedBy string     // the key that replaced it when rolled
	LastUsedAt *time.Time // as of the last usage flush
}

// KeyParams are the settings of a new key.
type KeyParams struct {
	Name      string
	Mode      tenant.Mode // "" means live
	Scopes    []string    // empty means ScopeAll
	ExpiresAt *time.Time
	RateLimit *RateLimit // nil: the server default
}

// Store keeps API keys and tenants.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time
	// defaultLimit is what keys without their own rate limit get; nil:
	// none known (then only keys with their own limit cap their children).
	defaultLimit *RateLimit
}

// WithDefaultRateLimit tells s the server's default rate limit
// (POOLGATE_KEY_RATE_LIMIT), which caps the keys a key without its own
// limit may create.
func (s *Store) WithDefaultRateLimit(r RateLimit) *Store {
	if !r.Off() {
		s.defaultLimit = &r
	}
	return s
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
INSERT INTO api_keys (tenant_id, id, name, hash, start, mode, scopes, created_at, expires_at,
                      rate_limit_requests, rate_limit_per_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`

func (s *Store) insert(ctx context.Context, db dbx.DBTX, tenantID int64, p KeyParams) (Key, string, error) {
	if p.Mode == "" {
		p.Mode = tenant.Live
	}
	if !p.Mode.Valid() {
		return Key{}, "", errs.Invalid("invalid_mode", "mode must be live or test")
	}
	if !ValidName(p.Name) {
		return Key{}, "", errs.Invalid("invalid_name", "key name must be 1 to %d characters of text without control characters", MaxNameLen)
	}
	scopes, err := ValidateScopes(p.Scopes)
	if err != nil {
		return Key{}, "", err
	}
	var limitRequests, limitPerMS *int64
	if p.RateLimit != nil {
		if err := p.RateLimit.validate(); err != nil {
			return Key{}, "", err
		}
		n, ms := int64(p.RateLimit.Requests), p.RateLimit.Per.Milliseconds()
		limitRequests, limitPerMS = &n, &ms
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	secret := NewSecret(p.Mode)
	k := Key{
		ID: ids.New("key", now), Name: p.Name, Start: Start(secret), Mode: p.Mode,
		Scopes: scopes, CreatedAt: now, ExpiresAt: p.ExpiresAt, RateLimit: p.RateLimit,
	}
	_, err = db.Exec(ctx, keyInsert, tenantID, k.ID, k.Name, Hash(secret), k.Start, k.Mode, k.Scopes,
		k.CreatedAt, k.ExpiresAt, limitRequests, limitPerMS)
	if err != nil {
		return Key{}, "", fmt.Errorf("insert api key: %w", err)
	}
	return k, secret, nil
}

const keyByHash = `
SELECT tenant_id, id, mode, scopes, expires_at, revoked_at, rate_limit_requests, rate_limit_per_ms
FROM api_keys WHERE hash = $1`

// keyRecord is what verification reads about a key: enough to judge it at
// any later instant, which is what the cache keeps.
type keyRecord struct {
	p                Principal
	expires, revoked *time.Time
}

// lookup reads the key stored under hash; ErrInvalidKey if there is none.
func (s *Store) lookup(ctx context.Context, hash []byte) (keyRecord, error) {
	var (
		r             keyRecord
		requests, per *int64
	)
	err := s.pool.QueryRow(ctx, keyByHash, hash).
		Scan(&r.p.TenantID, &r.p.KeyID, &r.p.Mode, &r.p.Scopes, &r.expires, &r.revoked, &requests, &per)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return keyRecord{}, ErrInvalidKey
	case err != nil:
		return keyRecord{}, dbx.Classify(fmt.Errorf("verify api key: %w", err))
	}
	r.p.RateLimit = rateLimitOf(requests, per)
	r.p.ExpiresAt = r.expires
	if r.revoked != nil && (r.expires == nil || r.revoked.Before(*r.expires)) {
		r.p.ExpiresAt = r.revoked // a rolled key works until its grace ends
	}
	return r, nil
}

func rateLimitOf(requests, perMS *int64) *RateLimit {
	if requests == nil || perMS == nil {
		return nil
	}
	return &RateLimit{Requests: int(*requests), Per: time.Duration(*perMS) * time.Millisecond}
}

// judge decides, at now, whether a stored key may be used. A revocation
// scheduled by a roll takes effect at its instant, cached or not.
func (r keyRecord) judge(now time.Time) (Principal, error) {
	switch {
	case r.revoked != nil && !r.revoked.After(now):
		return Principal{}, ErrInvalidKey
	case r.expires != nil && !r.expires.After(now):
		return Principal{}, ErrExpiredKey
	}
	return r.p, nil
}

// Verify returns the principal a presented key speaks for, or one of the
// 401 errors. A key that fails the offline checksum never reaches the
// database. It reads the database every time; Cache is the fast path.
func (s *Store) Verify(ctx context.Context, secret string) (Principal, error) {
	if _, ok := ParseSecret(secret); !ok {
		return Principal{}, ErrInvalidKey
	}
	r, err := s.lookup(ctx, Hash(secret))
	if err != nil {
		return Principal{}, err
	}
	return r.judge(s.now())
}

// MaxNameLen is the longest key name, in characters.
const MaxNameLen = 100

// ValidName reports whether name can name a key: UTF-8, not blank, at most
// MaxNameLen characters (not bytes), and free of control characters that
// would forge lines in a terminal or a log.
func ValidName(name string) bool {
	if !utf8.ValidString(name) || strings.TrimSpace(name) == "" || utf8.RuneCountInString(name) > MaxNameLen {
		return false
	}
	return !strings.ContainsFunc(name, unicode.IsControl)
}
