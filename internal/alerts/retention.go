package alerts

import (
	"context"
	"time"

	"github.com/poolgate/poolgate/internal/dbx"
)

// Both deletes read their batch in retention order, lock it with SKIP
// LOCKED (racing cleaners share the rows) and delete it by ctid, a Tid
// Scan; a locked row cannot move before the statement ends.
const (
	alertsDeleteResolved = `
DELETE FROM alerts WHERE ctid = ANY (ARRAY (
	SELECT ctid FROM alerts
	WHERE resolved_at < $1
	ORDER BY resolved_at LIMIT $2
	FOR UPDATE SKIP LOCKED))`

	// cron_runs holds one row per job name; a row goes stale only when a
	// cron job is renamed or removed, so the table is tiny and read whole.
	cronRunsDeleteStale = `
DELETE FROM cron_runs WHERE ctid = ANY (ARRAY (
	SELECT ctid FROM cron_runs WHERE last_run < $1
	ORDER BY last_run LIMIT $2
	FOR UPDATE SKIP LOCKED))`
)

// DeleteResolvedAlerts deletes up to limit alerts resolved before before,
// oldest first, and reports how many. Open and acknowledged alerts stay.
// A deleted alert's dedupe key cannot come back: it names a credential
// instance (an expiry or an error's time) that resolution left behind.
func DeleteResolvedAlerts(ctx context.Context, db dbx.DBTX, before time.Time, limit int) (int64, error) {
	tag, err := db.Exec(ctx, alertsDeleteResolved, before, limit)
	return tag.RowsAffected(), err
}

// DeleteStaleCronRuns deletes up to limit cron bookkeeping rows whose last
// run was before before. A live schedule rewrites its row every tick, so
// only rows of schedules that no longer run get old; were a live one
// deleted anyway, its next tick would simply insert it again.
func DeleteStaleCronRuns(ctx context.Context, db dbx.DBTX, before time.Time, limit int) (int64, error) {
	tag, err := db.Exec(ctx, cronRunsDeleteStale, before, limit)
	return tag.RowsAffected(), err
}
