package accounts

import (
	"context"
	"regexp"
	"strconv"
	"strings"

	"github.com/poolgate/poolgate/internal/cookies"
	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/tenant"
)

// DefaultAPIKeyMaxJobs is an API-key account's concurrency limit when
// registration does not name one: LTX-2 API plans allow few calls in
// flight per key.
const DefaultAPIKeyMaxJobs = 2

// KeyRegistration adds or updates an account by LTX-2 API key.
type KeyRegistration struct {
	APIKey string
	// Name is the account's identity in every route (where cookie accounts
	// have their email); "" names it by the key's fingerprint, so the same
	// key registered twice is the same account.
	Name    string
	MaxJobs *int // nil: DefaultAPIKeyMaxJobs for a new account, unchanged for an existing one
}

// names are lower-case so that routes find them as they find emails; no
// "@", so a name never meets an email.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// maxAPIKeyLen bounds a key; real ones are far shorter.
const maxAPIKeyLen = 512

// apiKeyAAD binds a sealed API key to its row, and apart from cookies: a
// sealed cookie copied into an API-key row fails to open, and vice versa.
func apiKeyAAD(scope tenant.Scope, name string) []byte {
	return []byte("account-apikey\x00" + strconv.FormatInt(scope.TenantID, 10) + "\x00" + string(scope.Mode) + "\x00" + name)
}

const accountUpsertAPIKey = `
INSERT INTO accounts (tenant_id, mode, email, cookie, max_jobs, provider, created_at, updated_at)
VALUES ($1, $2, $3, $4, coalesce($5::integer, $7::integer), '` + provider.NameLTXAPI + `', $6, $6)
ON CONFLICT (tenant_id, mode, email) DO UPDATE SET
	cookie = EXCLUDED.cookie,
	max_jobs = coalesce($5::integer, accounts.max_jobs),
	status = 'active',
	status_reason = NULL,
	probe_at = accounts.quarantined_until, -- as for cookies (see accountUpsert)
	probe_failures = 0,
	updated_at = EXCLUDED.updated_at
RETURNING ` + accountColumns

// RegisterAPIKey adds an LTX-2 API key as an account, or replaces the key
// of the account registered under that name (which also clears an error
// status: a new key is the fix for it). The key is sealed at rest and
// never shown again.
func (s *Store) RegisterAPIKey(ctx context.Context, scope tenant.Scope, r KeyRegistration) (Account, error) {
	key := strings.TrimSpace(r.APIKey)
	if key == "" || len(key) > maxAPIKeyLen || strings.ContainsFunc(key, func(c rune) bool { return c <= ' ' || c == 0x7f }) {
		return Account{}, errs.Fields(errs.FieldError{Field: "apiKey", Message: "must be the API key: printable, no spaces, at most 512 characters"})
	}
	name := strings.ToLower(strings.TrimSpace(r.Name))
	if name == "" {
		name = provider.KeyFingerprint(key)
	}
	if !namePattern.MatchString(name) {
		return Account{}, errs.Fields(errs.FieldError{Field: "name",
			Message: "must be 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"})
	}
	sealed := s.box.Seal([]byte(key), apiKeyAAD(scope, name))
	now := s.now().UTC()
	return s.upsert(ctx, scope, now, accountUpsertAPIKey, scope.TenantID, scope.Mode, name, sealed, r.MaxJobs, now, DefaultAPIKeyMaxJobs)
}

// scanAPIKeyAccount finishes reading an API-key account: its key is
// checked to open and shown as cookies.Secured.
func (s *Store) scanAPIKeyAccount(a Account, sealed []byte, scope tenant.Scope, status string, reason *string) Account {
	a.Cookie = map[string]string{}
	if _, err := s.box.Open(sealed, apiKeyAAD(scope, a.Email)); err != nil {
		a.Status, a.Reason = StatusError, unreadableKeyReason
		return a
	}
	a.APIKey = cookies.Secured
	s.derive(&a, status, reason)
	return a
}

const unreadableKeyReason = "the stored API key cannot be decrypted (another POOLGATE_SECRET_KEY or a tampered row); register the key again"

// openCredential opens an account's sealed credential as its provider
// stores it.
func (s *Store) openCredential(scope tenant.Scope, identity, prov string, sealed []byte) (provider.Account, error) {
	if prov == provider.NameLTXAPI {
		plain, err := s.box.Open(sealed, apiKeyAAD(scope, identity))
		if err != nil {
			return provider.Account{}, ErrUnreadable
		}
		return provider.Account{Email: identity, Provider: prov, APIKey: string(plain)}, nil
	}
	plain, err := s.box.Open(sealed, cookieAAD(scope, identity))
	if err != nil {
		return provider.Account{}, ErrUnreadable
	}
	return provider.Account{Email: identity, Provider: prov, Cookie: string(plain)}, nil
}
