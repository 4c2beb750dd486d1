package webhooks

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/secret"
)

// SecretPrefix starts every signing secret.
const SecretPrefix = "whsec_"

// MaxRotationGrace bounds how long a replaced secret keeps signing.
const MaxRotationGrace = 7 * 24 * time.Hour

// secretsTTL is how long a replica trusts its copy of a tenant's secrets:
// after a rotation on another replica, this one signs with the old secret
// alone for at most this long (the old one is still valid then).
const secretsTTL = 5 * time.Second

// ErrUnknownTenant is returned by Secrets.Get for a tenant id with no row.
var ErrUnknownTenant = errors.New("webhooks: unknown tenant")

// Secrets hands out each tenant's webhook signing secret, creating it on
// first use, and rotates it. Secrets are stored sealed in tenants and
// cached for secretsTTL. Safe for concurrent use.
type Secrets struct {
	pool *pgxpool.Pool
	box  *secret.Box
	now  func() time.Time

	mu    sync.Mutex
	cache map[int64]tenantSecrets
}

// tenantSecrets is what a tenant signs with.
type tenantSecrets struct {
	current   []byte
	previous  []byte     // nil when none is valid
	prevUntil *time.Time // when previous stops signing
	loaded    time.Time
}

// SecretInfo is a tenant's signing secret as its admins see it.
type SecretInfo struct {
	Secret string // "whsec_<base64>"
	// PreviousExpiresAt is when the secret this one replaced stops
	// signing; nil when it no longer does.
	PreviousExpiresAt *time.Time
}

// NewSecrets returns a Secrets sealing with box.
func NewSecrets(pool *pgxpool.Pool, box *secret.Box) *Secrets {
	return &Secrets{pool: pool, box: box, now: time.Now, cache: make(map[int64]tenantSecrets)}
}

// Only the first writer wins; a racing replica's candidate is discarded and
// it reads the winner's value back.
const (
	tenantSecretSetIfNull = `UPDATE tenants SET webhook_secret = $2 WHERE id = $1 AND webhook_secret IS NULL`
	tenantSecretGet       = `SELECT webhook_secret, webhook_secret_previous, webhook_secret_previous_until FROM tenants WHERE id = $1`
	// tenantSecretRotate replaces the secret only if it is still the one
	// read ($4), so two racing rotations cannot both demote the same one.
	tenantSecretRotate = `
UPDATE tenants SET webhook_secret_previous = CASE WHEN $3::timestamptz IS NULL THEN NULL ELSE webhook_secret END,
	webhook_secret_previous_until = $3, webhook_secret = $2
WHERE id = $1 AND webhook_secret = $4`
)

// secretAAD binds a sealed secret to its tenant row.
func secretAAD(tenantID int64) []byte {
	return []byte("webhook-secret\x00" + strconv.FormatInt(tenantID, 10))
}

// Get returns the tenant's current signing secret, "whsec_" and the
// standard base64 of 32 random bytes (the HMAC key).
func (s *Secrets) Get(ctx context.Context, tenantID int64) (string, error) {
	ts, err := s.secrets(ctx, tenantID)
	if err != nil {
		return "", err
	}
	return FormatSecret(ts.current), nil
}

// Info returns the tenant's current secret and until when the one it
// replaced still signs.
func (s *Secrets) Info(ctx context.Context, tenantID int64) (SecretInfo, error) {
	ts, err := s.secrets(ctx, tenantID)
	if err != nil {
		return SecretInfo{}, err
	}
	return SecretInfo{Secret: FormatSecret(ts.current), PreviousExpiresAt: ts.prevUntil}, nil
}

// SigningKeys returns the keys a delivery is signed with now: the current
// one first, then the replaced one while its grace lasts.
func (s *Secrets) SigningKeys(ctx context.Context, tenantID int64) ([][]byte, error) {
	ts, err := s.secrets(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	keys := [][]byte{ts.current}
	if ts.previous != nil && ts.prevUntil.After(s.now()) {
		keys = append(keys, ts.previous)
	}
	return keys, nil
}

// Rotate gives the tenant a new secret. The old one keeps signing next to
// it for grace (0: it stops at once), so receivers can move over.
func (s *Secrets) Rotate(ctx context.Context, tenantID int64, grace time.Duration) (SecretInfo, error) {
	if grace < 0 || grace > MaxRotationGrace {
		return SecretInfo{}, fmt.Errorf("webhooks: rotation grace %s is outside 0..%s", grace, MaxRotationGrace)
	}
	if _, err := s.load(ctx, tenantID); err != nil { // makes the first secret if needed
		return SecretInfo{}, err
	}
	for range 3 {
		sealed, _, _, err := s.read(ctx, tenantID)
		if err != nil {
			return SecretInfo{}, err
		}
		key := newKey()
		var until *time.Time
		if grace > 0 {
			t := s.now().Add(grace).UTC().Truncate(time.Microsecond)
			until = &t
		}
		tag, err := s.pool.Exec(ctx, tenantSecretRotate, tenantID, s.box.Seal([]byte(FormatSecret(key)), secretAAD(tenantID)), until, sealed)
		if err != nil {
			return SecretInfo{}, fmt.Errorf("webhooks: rotate signing secret: %w", err)
		}
		if tag.RowsAffected() == 1 {
			s.mu.Lock()
			delete(s.cache, tenantID)
			s.mu.Unlock()
			return SecretInfo{Secret: FormatSecret(key), PreviousExpiresAt: until}, nil
		}
	}
	return SecretInfo{}, errors.New("webhooks: rotate signing secret: too many concurrent rotations")
}

func (s *Secrets) secrets(ctx context.Context, tenantID int64) (tenantSecrets, error) {
	s.mu.Lock()
	ts, ok := s.cache[tenantID]
	s.mu.Unlock()
	if ok && s.now().Sub(ts.loaded) < secretsTTL {
		return ts, nil
	}
	ts, err := s.load(ctx, tenantID)
	if err != nil {
		return tenantSecrets{}, err
	}
	s.mu.Lock()
	s.cache[tenantID] = ts
	s.mu.Unlock()
	return ts, nil
}

func (s *Secrets) load(ctx context.Context, tenantID int64) (tenantSecrets, error) {
	sealed, prev, until, err := s.read(ctx, tenantID)
	if err != nil {
		return tenantSecrets{}, err
	}
	if sealed == nil {
		candidate := FormatSecret(newKey())
		if _, err := s.pool.Exec(ctx, tenantSecretSetIfNull, tenantID, s.box.Seal([]byte(candidate), secretAAD(tenantID))); err != nil {
			return tenantSecrets{}, fmt.Errorf("webhooks: store signing secret: %w", err)
		}
		if sealed, prev, until, err = s.read(ctx, tenantID); err != nil {
			return tenantSecrets{}, err
		}
		if sealed == nil {
			return tenantSecrets{}, fmt.Errorf("webhooks: signing secret of tenant %d vanished", tenantID)
		}
	}
	ts := tenantSecrets{loaded: s.now()}
	if ts.current, err = s.open(sealed, tenantID); err != nil {
		return tenantSecrets{}, err
	}
	if prev != nil && until != nil {
		if ts.previous, err = s.open(prev, tenantID); err != nil {
			return tenantSecrets{}, err
		}
		ts.prevUntil = until
	}
	return ts, nil
}

func (s *Secrets) open(sealed []byte, tenantID int64) ([]byte, error) {
	plain, err := s.box.Open(sealed, secretAAD(tenantID))
	if err != nil {
		return nil, fmt.Errorf("webhooks: open signing secret of tenant %d: %w", tenantID, err)
	}
	return KeyOf(string(plain))
}

// read returns the sealed secrets, with nil current when none was made yet.
func (s *Secrets) read(ctx context.Context, tenantID int64) (current, previous []byte, until *time.Time, err error) {
	err = s.pool.QueryRow(ctx, tenantSecretGet, tenantID).Scan(&current, &previous, &until)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, nil, ErrUnknownTenant
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("webhooks: read signing secret: %w", err)
	}
	return current, previous, until, nil
}

func newKey() []byte {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand contract since Go 1.24)
	return b
}
