package alerts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/tenant"
	"github.com/poolgate/poolgate/internal/timefmt"
	"github.com/poolgate/poolgate/internal/webhooks"
)

// Alert is one raised alert.
type Alert struct {
	ID          string
	TenantID    int64
	Mode        string
	AccountID   int64
	Email       string
	Kind        string
	Threshold   *string
	ExpiresAt   *time.Time
	Message     string
	CreatedAt   time.Time
	DeliveredAt *time.Time
	AckedAt     *time.Time
	ResolvedAt  *time.Time

	dedupe string
}

// State is where an alert stands: open, acked or resolved.
func (a Alert) State() string {
	switch {
	case a.ResolvedAt != nil:
		return "resolved"
	case a.AckedAt != nil:
		return "acked"
	default:
		return "open"
	}
}

// View is an alert as the API and webhooks show it.
type View struct {
	ID           string  `json:"id"`
	State        string  `json:"state"`
	Email        string  `json:"email"`
	Kind         string  `json:"kind"`
	Threshold    *string `json:"threshold"`
	ExpiresUTC   *string `json:"expiresUTC"`
	Message      string  `json:"message"`
	CreatedUTC   string  `json:"createdUTC"`
	DeliveredUTC *string `json:"deliveredUTC"`
	AckedUTC     *string `json:"ackedUTC"`
	ResolvedUTC  *string `json:"resolvedUTC"`
}

func (a Alert) view() View {
	return View{ID: a.ID, State: a.State(), Email: a.Email, Kind: a.Kind, Threshold: a.Threshold,
		ExpiresUTC: timefmt.UTCPtr(a.ExpiresAt), Message: a.Message, CreatedUTC: timefmt.UTC(a.CreatedAt),
		DeliveredUTC: timefmt.UTCPtr(a.DeliveredAt), AckedUTC: timefmt.UTCPtr(a.AckedAt), ResolvedUTC: timefmt.UTCPtr(a.ResolvedAt)}
}

// View returns the alert as users see it.
func (a Alert) View() View { return a.view() }

// Store reads and changes alerts for the API.
type Store struct {
	pool         *pgxpool.Pool
	now          func() time.Time
	allowPrivate bool
}

// NewStore returns a Store; allowPrivate is POOLGATE_WEBHOOK_ALLOW_PRIVATE.
func NewStore(pool *pgxpool.Pool, now func() time.Time, allowPrivate bool) *Store {
	return &Store{pool: pool, now: now, allowPrivate: allowPrivate}
}

// delivered is the first time any of an alert's deliveries succeeded.
const alertColumns = `a.id, a.tenant_id, a.mode, a.account_id, a.account_email, a.kind, a.threshold,
	a.expires_at, a.message, a.created_at, a.acked_at, a.resolved_at,
	(SELECT min(d.delivered_at) FROM webhook_deliveries d WHERE d.id = ANY(a.delivery_ids))`

func scanAlert(r pgx.Row) (Alert, error) {
	var a Alert
	err := r.Scan(&a.ID, &a.TenantID, &a.Mode, &a.AccountID, &a.Email, &a.Kind, &a.Threshold, &a.ExpiresAt,
		&a.Message, &a.CreatedAt, &a.AckedAt, &a.ResolvedAt, &a.DeliveredAt)
	return a, err
}

// Filter selects alerts, newest first.
type Filter struct {
	State  string // "", open, acked, resolved
	Limit  int
	Cursor string
}

const alertList = `SELECT ` + alertColumns + ` FROM alerts a
WHERE a.tenant_id = $1 AND a.mode = $2 AND ($4 = '' OR a.id < $4) AND (
	$3 = '' OR
	($3 = 'open' AND a.resolved_at IS NULL AND a.acked_at IS NULL) OR
	($3 = 'acked' AND a.resolved_at IS NULL AND a.acked_at IS NOT NULL) OR
	($3 = 'resolved' AND a.resolved_at IS NOT NULL))
ORDER BY a.id DESC LIMIT $5`

// List returns a page of the pool's alerts and the next page's cursor.
func (s *Store) List(ctx context.Context, scope tenant.Scope, f Filter) ([]Alert, string, error) {
	switch f.State {
	case "", "open", "acked", "resolved":
	default:
		return nil, "", errs.Invalid("invalid_state", "state must be open, acked or resolved")
	}
	rows, err := s.pool.Query(ctx, alertList, scope.TenantID, scope.Mode, f.State, f.Cursor, f.Limit+1)
	if err != nil {
		return nil, "", dbx.Classify(err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Alert, error) { return scanAlert(r) })
	if err != nil {
		return nil, "", dbx.Classify(err)
	}
	next := ""
	if len(list) > f.Limit {
		list = list[:f.Limit]
		next = list[len(list)-1].ID
	}
	return list, next, nil
}

const alertAck = `
WITH acked AS (
	UPDATE alerts SET acked_at = coalesce(acked_at, $4)
	WHERE tenant_id = $1 AND mode = $2 AND id = $3
	RETURNING *
)
SELECT ` + alertColumns + ` FROM acked a`

// Ack acknowledges an alert; acknowledging twice keeps the first time.
func (s *Store) Ack(ctx context.Context, scope tenant.Scope, id string) (Alert, error) {
	a, err := scanAlert(s.pool.QueryRow(ctx, alertAck, scope.TenantID, scope.Mode, id, s.now().UTC()))
	if errors.Is(err, pgx.ErrNoRows) {
		return Alert{}, errs.NotFound("alert_not_found", "no alert %q", id)
	}
	if err != nil {
		return Alert{}, dbx.Classify(err)
	}
	return a, nil
}

// Destination is where a tenant's alerts are POSTed.
type Destination struct {
	URL    string `json:"url"`
	Format string `json:"format"`
}

const alertConfigUpsert = `
INSERT INTO alert_config (tenant_id, mode, url, format, updated_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (tenant_id, mode) DO UPDATE SET url = EXCLUDED.url, format = EXCLUDED.format, updated_at = EXCLUDED.updated_at`

// SetDestination sets (or, with an empty URL, removes) the alert webhook of
// the scope's pool: live and test pools each have their own, so a test key
// never learns or redirects where live alerts go.
func (s *Store) SetDestination(ctx context.Context, scope tenant.Scope, d Destination) (Destination, error) {
	if d.URL == "" {
		_, err := s.pool.Exec(ctx, `DELETE FROM alert_config WHERE tenant_id = $1 AND mode = $2`, scope.TenantID, scope.Mode)
		return Destination{}, dbx.Classify(err)
	}
	if d.Format == "" {
		d.Format = FormatJSON
	}
	if d.Format != FormatJSON && d.Format != FormatSlack {
		return Destination{}, errs.Fields(errs.FieldError{Field: "format", Message: "must be one of: json, slack"})
	}
	if err := webhooks.CheckURL(d.URL, s.allowPrivate); err != nil {
		return Destination{}, errs.Fields(errs.FieldError{Field: "url", Message: errs.As(err).Message})
	}
	if _, err := s.pool.Exec(ctx, alertConfigUpsert, scope.TenantID, scope.Mode, d.URL, d.Format, s.now().UTC()); err != nil {
		return Destination{}, dbx.Classify(fmt.Errorf("set alert destination: %w", err))
	}
	return d, nil
}

// Destination returns the alert webhook of the scope's pool, if any.
func (s *Store) Destination(ctx context.Context, scope tenant.Scope) (*Destination, error) {
	var d Destination
	err := s.pool.QueryRow(ctx, tenantAlertConfig, scope.TenantID, scope.Mode).Scan(&d.URL, &d.Format)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, dbx.Classify(err)
	}
	return &d, nil
}

// alertsResolveAccount closes an account's open alerts.
const alertsResolveAccount = `UPDATE alerts SET resolved_at = $3 WHERE tenant_id = $1 AND account_id = $2 AND resolved_at IS NULL`

// ResolveAccount is an accounts.RegisterHook: fresh cookies answer every
// expiry and error alert about the old ones.
func ResolveAccount(ctx context.Context, tx pgx.Tx, scope tenant.Scope, id int64, _ string, now time.Time) error {
	_, err := tx.Exec(ctx, alertsResolveAccount, scope.TenantID, id, now)
	return err
}
