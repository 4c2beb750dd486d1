package accounts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/dbx"
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
const accountCookieByID = `SELECT email, cookie, mode = $2 FROM accounts WHERE tenant_id = $1 AND id = $3`

// Credentials opens the cookie of account id so a call can run as it. The
// result is a credential: never log it.
func (s *Store) Credentials(ctx context.Context, scope tenant.Scope, id int64) (provider.Account, error) {
	var (
		email    string
		sealed   []byte
		sameMode bool
	)
	err := s.pool.QueryRow(ctx, accountCookieByID, scope.TenantID, scope.Mode, id).Scan(&email, &sealed, &sameMode)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && !sameMode) {
		return provider.Account{}, ErrGone
	}
	if err != nil {
		return provider.Account{}, fmt.Errorf("read account %d: %w", id, err)
	}
	plain, err := s.box.Open(sealed, cookieAAD(scope, email))
	if err != nil {
		return provider.Account{}, ErrUnreadable
	}
	return provider.Account{Email: email, Cookie: string(plain)}, nil
}

const accountMarkError = `
UPDATE accounts SET status = 'error', status_reason = $4, updated_at = $5
WHERE tenant_id = $1 AND mode = $2 AND id = $3`

// MarkError takes an account out of rotation because the upstream refused
// its credentials; registering fresh cookies puts it back. It runs on db so
// callers can make it part of the job transition that discovered it.
func MarkError(ctx context.Context, db dbx.DBTX, scope tenant.Scope, id int64, reason string, now time.Time) error {
	_, err := db.Exec(ctx, accountMarkError, scope.TenantID, scope.Mode, id, reason, now)
	return err
}
