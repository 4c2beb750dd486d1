package usage

import (
	"context"
	"time"

	"github.com/poolgate/poolgate/internal/dbx"
)

// DefaultRetention is how long hourly buckets are kept by default.
const DefaultRetention = 90 * 24 * time.Hour

const usageDeleteOld = `
DELETE FROM usage_hourly WHERE ctid = ANY (ARRAY (
	SELECT ctid FROM usage_hourly WHERE hour < $1 ORDER BY hour LIMIT $2))`

// DeleteOld deletes up to limit buckets whose hour began before before
// (a retention.DeleteFunc).
func DeleteOld(ctx context.Context, db dbx.DBTX, before time.Time, limit int) (int64, error) {
	tag, err := db.Exec(ctx, usageDeleteOld, before, limit)
	return tag.RowsAffected(), err
}
