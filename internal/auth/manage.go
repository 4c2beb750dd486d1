package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/tenant"
)

// KeysChannel is the Postgres NOTIFY channel on which a key's id is sent
// when it is revoked or rolled, so every replica's Cache drops it.
const KeysChannel = "poolgate_keys"

// MaxRollGrace is the longest a rolled key may keep working.
const MaxRollGrace = 7 * 24 * time.Hour

// ErrKeyNotFound answers ids that do not exist, belong to another tenant, or
// are live keys asked about by a test key.
var ErrKeyNotFound = errs.NotFound("key_not_found", "no such API key")

var errModeNotAllowed = &errs.Error{
	Kind:    errs.KindForbidden,
	Code:    "mode_not_allowed",
	Message: "a test-mode key can only manage test-mode keys",
}

// Status is a key's state at an instant: active, rolled (replaced, working
// until RevokedAt), revoked or expired.
func (k Key) Status(now time.Time) string {
	switch {
	case k.RevokedAt != nil && !k.RevokedAt.After(now):
		return "revoked"
	case k.ExpiresAt != nil && !k.ExpiresAt.After(now):
		return "expired"
	case k.RevokedAt != nil:
		return "rolled"
	}
	return "active"
}

// keyModes are the modes of keys p may see: a test key sees test keys only;
// a live key sees both, since it may issue test keys.
func (p Principal) keyModes() []string {
	if p.Mode == tenant.Live {
		return []string{string(tenant.Live), string(tenant.Test)}
	}
	return []string{string(p.Mode)}
}

// mayIssue returns a 403 unless p may hold a key of mode with scopes itself:
// a key never gives out more than it has.
func (p Principal) mayIssue(mode tenant.Mode, scopes []string) error {
	if p.Mode != tenant.Live && mode != p.Mode {
		return errModeNotAllowed
	}
	for _, s := range scopes {
		if err := p.Require(s); err != nil {
			return err
		}
	}
	return nil
}

// capChild holds a key p is about to issue to p's own lifetime and rate,
// as mayIssue holds it to p's scopes: left unset, they are the caller's;
// set beyond the caller's, they are a 403. def is the server's default
// limit, which is the caller's when it has none of its own (nil: unknown).
func (caller Principal) capChild(p *KeyParams, def *RateLimit) error {
	if end := caller.ExpiresAt; end != nil {
		switch {
		case p.ExpiresAt == nil:
			p.ExpiresAt = end
		case p.ExpiresAt.After(*end):
			return exceedsCaller("expiresAt", "must not be later than the calling key's own end, "+end.UTC().Format(time.RFC3339))
		}
	}
	own := caller.RateLimit
	if own == nil {
		own = def
	}
	if own == nil || own.Off() {
		return nil
	}
	switch {
	case p.RateLimit == nil && caller.RateLimit != nil:
		p.RateLimit = caller.RateLimit
	case p.RateLimit != nil && p.RateLimit.exceeds(*own):
		return exceedsCaller("rateLimit", "must not allow more than the calling key's own limit, "+own.String())
	}
	return nil
}

func exceedsCaller(field, msg string) error {
	return &errs.Error{Kind: errs.KindForbidden, Code: "exceeds_caller_key",
		Message: "a key cannot issue a key that outlives or out-rates itself: " + field + " " + msg,
		Details: []errs.FieldError{{Field: field, Message: msg}}}
}

// Create issues a key in caller's tenant. Mode defaults to the caller's and
// scopes to the caller's scopes; neither may exceed the caller's.
func (s *Store) Create(ctx context.Context, caller Principal, p KeyParams) (Key, string, error) {
	if p.Mode == "" {
		p.Mode = caller.Mode
	}
	if !p.Mode.Valid() {
		return Key{}, "", errs.Invalid("invalid_mode", "mode must be live or test")
	}
	if len(p.Scopes) == 0 {
		p.Scopes = caller.Scopes
	}
	scopes, err := ValidateScopes(p.Scopes)
	if err != nil {
		return Key{}, "", err
	}
	if err := caller.mayIssue(p.Mode, scopes); err != nil {
		return Key{}, "", err
	}
	if p.ExpiresAt != nil && !p.ExpiresAt.After(s.now()) {
		return Key{}, "", errs.Fields(errs.FieldError{Field: "expiresAt", Message: "must be in the future"})
	}
	if err := caller.capChild(&p, s.defaultLimit); err != nil {
		return Key{}, "", err
	}
	p.Scopes = scopes
	return s.insert(ctx, s.pool, caller.TenantID, p)
}

// keyColumns read a Key (scanKey's order); lastUsed is the usage subquery
// or NULL.
const keyColumns = `k.id, k.name, k.start, k.mode, k.scopes, k.created_at, k.expires_at, k.revoked_at,
       k.rate_limit_requests, k.rate_limit_per_ms, coalesce(k.replaced_by, '')`

const lastUsed = `(SELECT max(u.last_used_at) FROM api_key_usage u WHERE u.tenant_id = k.tenant_id AND u.key_id = k.id)`

const keyList = `SELECT ` + keyColumns + `, ` + lastUsed + `
FROM api_keys k WHERE k.tenant_id = $1 AND k.mode = ANY($2)
ORDER BY k.created_at DESC, k.id DESC`

const keyGet = `SELECT ` + keyColumns + `, ` + lastUsed + `
FROM api_keys k WHERE k.tenant_id = $1 AND k.mode = ANY($2) AND k.id = $3`

const keyGetForUpdate = `SELECT ` + keyColumns + `, NULL::timestamptz
FROM api_keys k WHERE k.tenant_id = $1 AND k.mode = ANY($2) AND k.id = $3
FOR UPDATE`

func scanKey(row pgx.Row) (Key, error) {
	var (
		k             Key
		requests, per *int64
	)
	err := row.Scan(&k.ID, &k.Name, &k.Start, &k.Mode, &k.Scopes, &k.CreatedAt, &k.ExpiresAt, &k.RevokedAt,
		&requests, &per, &k.ReplacedBy, &k.LastUsedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Key{}, ErrKeyNotFound
	}
	if err != nil {
		return Key{}, fmt.Errorf("read api key: %w", err)
	}
	k.RateLimit = rateLimitOf(requests, per)
	return k, nil
}

// List returns the keys caller may see, newest first, revoked ones included.
func (s *Store) List(ctx context.Context, caller Principal) ([]Key, error) {
	rows, err := s.pool.Query(ctx, keyList, caller.TenantID, caller.keyModes())
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	defer rows.Close()
	var out []Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// Get returns one key caller may see.
func (s *Store) Get(ctx context.Context, caller Principal, id string) (Key, error) {
	return scanKey(s.pool.QueryRow(ctx, keyGet, caller.TenantID, caller.keyModes(), id))
}

// Revoke ends key id now (or keeps an earlier revocation). The caller must
// hold every scope of the key, so a lesser key cannot lock out a greater
// one. Revoking twice is not an error.
func (s *Store) Revoke(ctx context.Context, caller Principal, id string) error {
	return dbx.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		k, err := scanKey(tx.QueryRow(ctx, keyGetForUpdate, caller.TenantID, caller.keyModes(), id))
		if err != nil {
			return err
		}
		if err := caller.mayIssue(k.Mode, k.Scopes); err != nil {
			return err
		}
		return s.retire(ctx, tx, caller.TenantID, id, s.now(), "")
	})
}

const keyRetire = `
UPDATE api_keys SET revoked_at = LEAST(coalesce(revoked_at, $3), $3),
                    replaced_by = coalesce(replaced_by, nullif($4, ''))
WHERE tenant_id = $1 AND id = $2`

// retire sets a key's revocation time and tells every replica's cache, in
// the same transaction: NOTIFY is delivered at commit, or never.
func (s *Store) retire(ctx context.Context, tx pgx.Tx, tenantID int64, id string, at time.Time, replacedBy string) error {
	if _, err := tx.Exec(ctx, keyRetire, tenantID, id, at, replacedBy); err != nil {
		return fmt.Errorf("revoke api key: %w", err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, KeysChannel, id); err != nil {
		return fmt.Errorf("notify key revocation: %w", err)
	}
	return nil
}

// Roll issues a replacement for key id with the same name, mode, scopes,
// rate limit and lifetime, and lets the old key work until the new one's
// CreatedAt + grace (grace 0: it stops now). Only an active key can be rolled.
func (s *Store) Roll(ctx context.Context, caller Principal, id string, grace time.Duration) (Key, string, error) {
	if grace < 0 || grace > MaxRollGrace {
		return Key{}, "", errs.Fields(errs.FieldError{Field: "expireOldIn", Message: "must be a duration from 0 to 168h"})
	}
	var (
		fresh  Key
		secret string
	)
	err := dbx.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		old, err := scanKey(tx.QueryRow(ctx, keyGetForUpdate, caller.TenantID, caller.keyModes(), id))
		if err != nil {
			return err
		}
		if err := caller.mayIssue(old.Mode, old.Scopes); err != nil {
			return err
		}
		now := s.now()
		switch old.Status(now) {
		case "rolled":
			return errs.Conflict("key_already_rolled", "this key was already rolled; roll its replacement %s instead", old.ReplacedBy)
		case "revoked":
			return errs.Conflict("key_revoked", "a revoked key cannot be rolled")
		case "expired":
			return errs.Conflict("key_expired", "an expired key cannot be rolled; create a new one")
		}
		p := KeyParams{Name: old.Name, Mode: old.Mode, Scopes: old.Scopes, RateLimit: old.RateLimit}
		if old.ExpiresAt != nil {
			exp := now.Add(old.ExpiresAt.Sub(old.CreatedAt))
			p.ExpiresAt = &exp
		}
		if err := caller.capChild(&p, s.defaultLimit); err != nil {
			return err
		}
		if fresh, secret, err = s.insert(ctx, tx, caller.TenantID, p); err != nil {
			return err
		}
		// Timed from the new key's creation, so callers can tell when the
		// old one stops: CreatedAt + grace.
		return s.retire(ctx, tx, caller.TenantID, id, fresh.CreatedAt.Add(grace), fresh.ID)
	})
	return fresh, secret, err
}

// DayUsage is one key's usage on one UTC day.
type DayUsage struct {
	Day            time.Time // midnight UTC
	Requests, Jobs int64
}

// UsageReport is a key's recorded usage, as of the last flush of every
// replica.
type UsageReport struct {
	LastUsedAt     *time.Time
	Requests, Jobs int64      // since the key was made
	Days           []DayUsage // the last days with any use, newest first
}

const usageByKey = `
SELECT day, requests, jobs, last_used_at FROM api_key_usage
WHERE tenant_id = $1 AND key_id = $2
ORDER BY day DESC`

// UsageReport returns key id's usage, listing days within the last `days`
// (today included). The caller should have found the key with Get first.
func (s *Store) UsageReport(ctx context.Context, caller Principal, id string, days int) (UsageReport, error) {
	rows, err := s.pool.Query(ctx, usageByKey, caller.TenantID, id)
	if err != nil {
		return UsageReport{}, fmt.Errorf("read key usage: %w", err)
	}
	defer rows.Close()
	since := dayOf(s.now()).AddDate(0, 0, -days)
	var (
		r    UsageReport
		d    DayUsage
		last time.Time
	)
	for rows.Next() {
		if err := rows.Scan(&d.Day, &d.Requests, &d.Jobs, &last); err != nil {
			return UsageReport{}, fmt.Errorf("read key usage: %w", err)
		}
		r.Requests += d.Requests
		r.Jobs += d.Jobs
		if r.LastUsedAt == nil || last.After(*r.LastUsedAt) {
			at := last
			r.LastUsedAt = &at
		}
		if d.Day.After(since) {
			r.Days = append(r.Days, d)
		}
	}
	return r, rows.Err()
}

// dayOf is t's UTC day, as midnight UTC.
func dayOf(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
