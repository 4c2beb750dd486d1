package accounts

import (
	"context"
	"fmt"

	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/tenant"
)

const accountOverview = `SELECT id, email, max_jobs, enabled, status, status_reason, ` + heldSlots + `,
	updated_at, token_expires_at, refresh_token_expires_at, last_refresh_at, ` + healthColumns + `
FROM accounts WHERE tenant_id = $1 AND mode = $2 ORDER BY email`

// Overview returns every account of the scope like List, but without
// its cookie (Cookie is nil): it opens no sealed value, so the operator
// console can show 10,000 accounts quickly.
func (s *Store) Overview(ctx context.Context, scope tenant.Scope) ([]Account, error) {
	rows, err := s.pool.Query(ctx, accountOverview, scope.TenantID, scope.Mode)
	if err != nil {
		return nil, errs.Unavailable(fmt.Errorf("account overview: %w", err))
	}
	defer rows.Close()
	var out []Account
	for rows.Next() {
		var (
			a      Account
			status string
			reason *string
		)
		if err := rows.Scan(&a.ID, &a.Email, &a.MaxJobs, &a.Enabled, &status, &reason, &a.Running,
			&a.UpdatedAt, &a.TokenExpiresAt, &a.RefreshTokenExpiresAt, &a.LastRefreshAt,
			&a.QuarantinedUntil, &a.QuarantineReason, &a.Since, &a.Probe, &a.NextProbeAt); err != nil {
			return nil, errs.Unavailable(fmt.Errorf("account overview: %w", err))
		}
		s.derive(&a, status, reason)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.Unavailable(fmt.Errorf("account overview: %w", err))
	}
	return out, nil
}
