package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/errs"
)

// Delivery is one webhook in the outbox, as the operator console shows it.
type Delivery struct {
	ID          string
	Event       string
	State       string // pending, delivered or failed
	Attempts    int
	LastStatus  *int
	LastError   *string
	CreatedAt   time.Time
	DeliveredAt *time.Time
}

// DeliveryLog reads the outbox for the console.
type DeliveryLog struct{ db dbx.DBTX }

// NewDeliveryLog returns a DeliveryLog reading from db.
func NewDeliveryLog(db dbx.DBTX) *DeliveryLog { return &DeliveryLog{db: db} }

// deliveriesForJob finds a job's deliveries by its reply URL and the id at
// the head of the exact payload that was sent.
const deliveriesForJob = `
SELECT id, event, state, attempts, last_status, last_error, created_at, delivered_at
FROM webhook_deliveries
WHERE tenant_id = $1 AND url = $2 AND position($3 IN payload) > 0
ORDER BY created_at, id LIMIT 20`

// ForJob lists the webhook deliveries of the job jobID of tenantID, which
// were sent to replyURL.
func (l *DeliveryLog) ForJob(ctx context.Context, tenantID int64, replyURL, jobID string) ([]Delivery, error) {
	idField, _ := json.Marshal(map[string]string{"id": jobID})
	needle := string(idField[1 : len(idField)-1]) // "id":"job_…"
	rows, err := l.db.Query(ctx, deliveriesForJob, tenantID, replyURL, needle)
	if err != nil {
		return nil, errs.Unavailable(fmt.Errorf("read job deliveries: %w", err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delivery, error) {
		var d Delivery
		err := r.Scan(&d.ID, &d.Event, &d.State, &d.Attempts, &d.LastStatus, &d.LastError, &d.CreatedAt, &d.DeliveredAt)
		return d, err
	})
	if err != nil {
		return nil, errs.Unavailable(fmt.Errorf("read job deliveries: %w", err))
	}
	return out, nil
}
