package accounts

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/tenant"
)

// Credential is what the alert cron needs to know of an account's
// credentials.
type Credential struct {
	Scope              tenant.Scope
	ID                 int64
	Email              string
	Status             string // the stored status: "active" or "error"
	Reason             string
	UpdatedAt          time.Time
	RefreshTokenExpiry *time.Time
}

const (
	// accountsAtRisk lists the enabled accounts whose credentials were
	// refused or whose refresh token lapses by $1.
	accountsAtRisk = `
SELECT tenant_id, mode, id, email, status, coalesce(status_reason, ''), updated_at, refresh_token_expires_at
FROM accounts
WHERE enabled AND (status = 'error' OR refresh_token_expires_at <= $1)
ORDER BY tenant_id, id`

	// accountsCredentials reads the credentials of the given accounts.
	accountsCredentials = `
SELECT tenant_id, mode, id, email, status, coalesce(status_reason, ''), updated_at, refresh_token_expires_at
FROM accounts
WHERE (tenant_id, id) IN (SELECT * FROM unnest($1::bigint[], $2::bigint[]))`
)

// AtRisk lists enabled accounts whose credentials were refused or whose
// refresh token lapses by before, in (tenant, id) order.
func AtRisk(ctx context.Context, db dbx.DBTX, before time.Time) ([]Credential, error) {
	return collectCredentials(db.Query(ctx, accountsAtRisk, before))
}

// CredentialsOf returns the credentials of the accounts named by
// tenantIDs[i], ids[i] that still exist.
func CredentialsOf(ctx context.Context, db dbx.DBTX, tenantIDs, ids []int64) ([]Credential, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	return collectCredentials(db.Query(ctx, accountsCredentials, tenantIDs, ids))
}

func collectCredentials(rows pgx.Rows, err error) ([]Credential, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Credential, error) {
		var c Credential
		err := r.Scan(&c.Scope.TenantID, &c.Scope.Mode, &c.ID, &c.Email, &c.Status, &c.Reason, &c.UpdatedAt, &c.RefreshTokenExpiry)
		return c, err
	})
}
