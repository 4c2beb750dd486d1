package webhooks

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/secret"
)

// SecretPrefix starts every signing secret.
const SecretPrefix = "whsec_"

// ErrUnknownTenant is returned by Secrets.Get for a tenant id with no row.
var ErrUnknownTenant = errors.New("webhooks: unknown tenant")

// Secrets hands out each tenant's webhook signing secret, creating it on
// first use. Secrets are stored sealed in tenants.webhook_secret and never
// change, so they are cached for the life of the process. Safe for
// concurrent use.
type Secrets struct {
	pool *pgxpool.Pool
	box  *secret.Box

	mu    sync.Mutex
	cache map[int64]string
}

// NewSecrets returns a Secrets sealing with box.
func NewSecrets(pool *pgxpool.Pool, box *secret.Box) *Secrets {
	return &Secrets{pool: pool, box: box, cache: make(map[int64]string)}
}

// Only the first writer wins; a racing replica's candidate is discarded and
// it reads the winner's value back.
const (
	tenantSecretSetIfNull = `UPDATE tenants SET webhook_secret = $2 WHERE id = $1 AND webhook_secret IS NULL`
	tenantSecretGet       = `SELECT webhook_secret FROM tenants WHERE id = $1`
)

// secretAAD binds a sealed secret to its tenant row.
func secretAAD(tenantID int64) []byte {
	return []byte("webhook-secret\x00" + strconv.FormatInt(tenantID, 10))
}

// Get returns the tenant's signing secret: "whsec_" followed by 32 random
// bytes in unpadded base64url. The HMAC key is the whole string as shown.
func (s *Secrets) Get(ctx context.Context, tenantID int64) (string, error) {
	s.mu.Lock()
	v, ok := s.cache[tenantID]
	s.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := s.load(ctx, tenantID)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.cache[tenantID] = v
	s.mu.Unlock()
	return v, nil
}

func (s *Secrets) load(ctx context.Context, tenantID int64) (string, error) {
	sealed, err := s.read(ctx, tenantID)
	if err != nil {
		return "", err
	}
	if sealed == nil {
		candidate := newSecret()
		if _, err := s.pool.Exec(ctx, tenantSecretSetIfNull, tenantID, s.box.Seal([]byte(candidate), secretAAD(tenantID))); err != nil {
			return "", fmt.Errorf("webhooks: store signing secret: %w", err)
		}
		if sealed, err = s.read(ctx, tenantID); err != nil {
			return "", err
		}
		if sealed == nil {
			return "", fmt.Errorf("webhooks: signing secret of tenant %d vanished", tenantID)
		}
	}
	plain, err := s.box.Open(sealed, secretAAD(tenantID))
	if err != nil {
		return "", fmt.Errorf("webhooks: open signing secret of tenant %d: %w", tenantID, err)
	}
	return string(plain), nil
}

// read returns the sealed secret, or nil when none was made yet.
func (s *Secrets) read(ctx context.Context, tenantID int64) ([]byte, error) {
	var sealed []byte
	err := s.pool.QueryRow(ctx, tenantSecretGet, tenantID).Scan(&sealed)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrUnknownTenant
	}
	if err != nil {
		return nil, fmt.Errorf("webhooks: read signing secret: %w", err)
	}
	return sealed, nil
}

func newSecret() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand contract since Go 1.24)
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}
