package accounts

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/tenant"
)

// ErrGone is returned by Credentials for an account deleted since a job
// was placed on it.
var ErrGone = errors.New("account no longer exists")

// ErrUnreadable is returned by Credentials for an account whose stored
// cookie cannot be opened (another POOLGATE_SECRET_KEY, a tampered or
// swapped row): it cannot run anything until its cookies are registered
// again. Its text is safe to show as the account's error.
var ErrUnreadable = errors.New(unreadableReason)

const unreadableReason = "the stored cookie cannot be decrypted (another POOLGATE_SECRET_KEY or a tampered row); register the account's cookies again"

// accountCookieByID probes the primary key and checks the mode in the
// select list: with mode in the WHERE the planner may prefer the
// (tenant_id, mode, email) index and read the tenant's whole pool.
const accountCookieByID = `SELECT email, cookie, mode = $2, provider FROM accounts WHERE tenant_id = $1 AND id = $3`

// Credentials opens the cookie of account id so a call can run as it. The
// result is a credential: never log it.
func (s *Store) Credentials(ctx context.Context, scope tenant.Scope, id int64) (provider.Account, error) {
	var (
		email, prov string
		sealed      []byte
		sameMode    bool
	)
	err := s.pool.QueryRow(ctx, accountCookieByID, scope.TenantID, scope.Mode, id).Scan(&email, &sealed, &sameMode, &prov)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && !sameMode) {
		return provider.Account{}, ErrGone
	}
	if err != nil {
		return provider.Account{}, fmt.Errorf("read account %d: %w", id, err)
	}
	return s.openAndRemember(scope, id, email, prov, sealed)
}

// openAndRemember opens account id's sealed credential and keeps it in
// memory under the version it was sealed as, for CredentialsAt.
func (s *Store) openAndRemember(scope tenant.Scope, id int64, email, prov string, sealed []byte) (provider.Account, error) {
	acct, err := s.openCredential(scope, email, prov, sealed)
	if err != nil {
		return provider.Account{}, err
	}
	s.creds.put(scope, id, sealedVersion(sealed), acct)
	return acct, nil
}

// CredentialsAt is Credentials for a caller that read the account's
// cookie version (Free.Version) in the transaction that placed a job on
// it: while that version is the one last opened here, the cookie comes
// from memory instead of a query. A refresh or re-registration seals the
// cookie anew, which changes the version.
func (s *Store) CredentialsAt(ctx context.Context, scope tenant.Scope, id int64, version string) (provider.Account, error) {
	if acct, ok := s.creds.get(scope, id, version); ok {
		return acct, nil
	}
	return s.Credentials(ctx, scope, id)
}

// accountCookiesByID is accountCookieByID for several accounts: it probes
// the primary key once per id, whatever the pool's size.
const accountCookiesByID = `
SELECT t.id, a.email, a.cookie, a.mode = $2, a.provider FROM unnest($3::bigint[]) AS t (id),
LATERAL (SELECT email, cookie, mode, provider FROM accounts WHERE tenant_id = $1 AND id = t.id) a`

// Preload opens in one query the cookies of the accounts in versions
// (account id → cookie version, as Free.Version reads it) that are not
// open here at that version, so that CredentialsAt then serves them from
// memory. A placement batch calls it once instead of each of its jobs
// reading its account's cookie on its own: in a large pool nearly every
// job of a batch runs on a different account. An account it cannot open
// (deleted, moved to the other mode, unreadable) is left for
// CredentialsAt, which says why.
func (s *Store) Preload(ctx context.Context, scope tenant.Scope, versions map[int64]string) error {
	var ids []int64
	for id, v := range versions {
		if _, ok := s.creds.get(scope, id, v); !ok && v != "" {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	rows, err := s.pool.Query(ctx, accountCookiesByID, scope.TenantID, scope.Mode, ids)
	if err != nil {
		return fmt.Errorf("read %d accounts' cookies: %w", len(ids), err)
	}
	var (
		id          int64
		email, prov string
		sealed      []byte
		sameMode    bool
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &email, &sealed, &sameMode, &prov}, func() error {
		if sameMode {
			_, _ = s.openAndRemember(scope, id, email, prov, sealed) // CredentialsAt reports what does not open
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read %d accounts' cookies: %w", len(ids), err)
	}
	return nil
}

// sealedVersion is the hex of a sealed value's nonce, as Free.Version
// reads it in SQL.
func sealedVersion(sealed []byte) string {
	if len(sealed) < 13 {
		return ""
	}
	return hex.EncodeToString(sealed[1:13])
}

// credCache keeps opened cookies by account and version. It is bounded:
// when full it starts over, which costs one query per account.
type credCache struct {
	mu sync.Mutex
	m  map[credKey]credEntry
}

type credKey struct {
	scope tenant.Scope
	id    int64
}

type credEntry struct {
	version string
	acct    provider.Account
}

const credCacheMax = 20_000

func (c *credCache) get(scope tenant.Scope, id int64, version string) (provider.Account, bool) {
	if version == "" {
		return provider.Account{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[credKey{scope, id}]
	if !ok || e.version != version {
		return provider.Account{}, false
	}
	return e.acct, true
}

func (c *credCache) put(scope tenant.Scope, id int64, version string, acct provider.Account) {
	if version == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= credCacheMax {
		c.m = make(map[credKey]credEntry)
	}
	c.m[credKey{scope, id}] = credEntry{version, acct}
}
