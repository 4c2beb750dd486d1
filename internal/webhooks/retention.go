package webhooks

import (
	"context"
	"time"

	"github.com/poolgate/poolgate/internal/dbx"
)

// A failed (dead) delivery records no end time; give_up_at is when it was
// due to end at the latest, so using it never deletes a row early. The
// expression matches webhook_deliveries_done_idx, which holds only these
// rows: a batch reads what it deletes and not the pending outbox. Rows are
// locked with SKIP LOCKED, so racing cleaners share them, and deleted by
// ctid (a Tid Scan; a locked row cannot move before the statement ends).
const deliveriesDeleteDone = `
DELETE FROM webhook_deliveries WHERE ctid = ANY (ARRAY (
	SELECT ctid FROM webhook_deliveries
	WHERE state IN ('delivered', 'failed') AND coalesce(delivered_at, give_up_at) < $1
	ORDER BY coalesce(delivered_at, give_up_at) LIMIT $2
	FOR UPDATE SKIP LOCKED))`

// DeleteDoneDeliveries deletes up to limit deliveries that were delivered,
// or given up on, before before, oldest first, and reports how many.
// Pending deliveries are never touched, however old.
func DeleteDoneDeliveries(ctx context.Context, db dbx.DBTX, before time.Time, limit int) (int64, error) {
	tag, err := db.Exec(ctx, deliveriesDeleteDone, before, limit)
	return tag.RowsAffected(), err
}
