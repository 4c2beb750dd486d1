package scheduler

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/errs"
)

// Defaults are a tenant's defaults for the jobs it creates.
type Defaults struct {
	// ResubmitUnknown applies to jobs that do not say (NewJob.ResubmitUnknown nil).
	ResubmitUnknown bool
}

const (
	tenantDefaultsRead   = `SELECT resubmit_unknown FROM tenants WHERE id = $1`
	tenantDefaultsUpdate = `UPDATE tenants SET resubmit_unknown = $2 WHERE id = $1 RETURNING resubmit_unknown`
)

// JobDefaults returns the tenant's job defaults (live and test alike).
func (s *Scheduler) JobDefaults(ctx context.Context, tenantID int64) (Defaults, error) {
	var d Defaults
	err := s.cfg.Pool.QueryRow(ctx, tenantDefaultsRead, tenantID).Scan(&d.ResubmitUnknown)
	return d, defaultsError(err)
}

// SetJobDefaults replaces the tenant's job defaults; jobs created from then
// on follow them.
func (s *Scheduler) SetJobDefaults(ctx context.Context, tenantID int64, d Defaults) (Defaults, error) {
	err := s.cfg.Pool.QueryRow(ctx, tenantDefaultsUpdate, tenantID, d.ResubmitUnknown).Scan(&d.ResubmitUnknown)
	return d, defaultsError(err)
}

func defaultsError(err error) error {
	if errors.Is(err, pgx.ErrNoRows) { // a key outlived its tenant
		return errs.NotFound("route_not_found", "no such tenant")
	}
	return asDomain(err)
}
