package usage

import (
	"context"
	"time"

	"github.com/poolgate/poolgate/internal/dbx"
)

// DefaultRetention is how long hourly buckets are kept by default.
const DefaultRetention = 90 * 24 * time.Hour

// usageDeleteOld takes only buckets whose hour has ended: the current
// hour's are still being added to by the roll-ups (and, before migration
// 0018, by placements and completers), and a delete that took their rows
// in another order than those batched upserts deadlocked with them (seen in the soak, whose retention is seconds).
const usageDeleteOld = `
DELETE FROM usage_hourly WHERE ctid = ANY (ARRAY (
	SELECT ctid FROM usage_hourly WHERE hour <= $1::timestamptz - interval '1 hour' ORDER BY hour LIMIT $2))`

// DeleteOld deletes up to limit buckets whose hour ended at or before
// before (a retention.DeleteFunc).
func DeleteOld(ctx context.Context, db dbx.DBTX, before time.Time, limit int) (int64, error) {
	tag, err := db.Exec(ctx, usageDeleteOld, before, limit)
	return tag.RowsAffected(), err
}
