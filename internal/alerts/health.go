package alerts

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/ids"
)

// Kinds of alert raised by health transitions (besides KindError and
// KindExpired, which the credential scan raises too).
const (
	KindQuarantined = "quarantined" // the account rests until a probe succeeds
	KindRecovered   = "recovered"   // a probe succeeded; the account is back in rotation
)

const alertsResolveHealth = `
UPDATE alerts SET resolved_at = $3
WHERE tenant_id = $1 AND account_id = $2 AND resolved_at IS NULL AND kind IN ('quarantined', 'error')`

// OnHealth is an accounts.HealthHook: it raises one alert per health
// transition, in the transaction that records it, and delivers it to the
// alert destinations through the outbox; it logs and counts the alert once
// that transaction has committed. The transition is recorded once
// (under the account's row lock), so the alert is raised once whichever
// replica saw it. An error or expiry alert uses the dedupe key of the
// credential scan, so the scan does not raise it a second time.
func (s *Service) OnHealth(ctx context.Context, tx pgx.Tx, ev accounts.Event) error {
	now := ev.At.UTC()
	a := Alert{TenantID: ev.Scope.TenantID, Mode: string(ev.Scope.Mode), AccountID: ev.AccountID, Email: ev.Email,
		ID: ids.New("alr", now), Message: ev.Message}
	switch ev.Kind {
	case accounts.EventError:
		a.Kind, a.dedupe = KindError, "error:"+unix(now)
		a.Message = "account is out of rotation: " + ev.Message
	case accounts.EventExpired:
		a.Kind, a.ExpiresAt, a.dedupe = KindExpired, ev.Until, "expired:"+unix(*ev.Until)
	case accounts.EventQuarantined:
		a.Kind, a.ExpiresAt, a.dedupe = KindQuarantined, ev.Until, "health:"+strconv.FormatInt(ev.ID, 10)
	case accounts.EventRecovered:
		a.Kind, a.dedupe = KindRecovered, "health:"+strconv.FormatInt(ev.ID, 10)
		if _, err := tx.Exec(ctx, alertsResolveHealth, ev.Scope.TenantID, ev.AccountID, now); err != nil {
			return err
		}
	default:
		return nil
	}
	raised, err := s.raise(ctx, tx, &a, now)
	if err != nil || !raised {
		return err
	}
	if a.Kind == KindRecovered { // news, not a problem to acknowledge
		if _, err := tx.Exec(ctx, alertsResolveIDs, []int64{a.TenantID}, []string{a.ID}, now); err != nil {
			return err
		}
	}
	if err := accounts.AfterCommit(tx, func() { s.announce([]Alert{a}) }); err != nil {
		return err
	}
	if s.cfg.Wake != nil {
		// The deliverer may look before this commits; its own polling
		// then finds the delivery.
		time.AfterFunc(50*time.Millisecond, s.cfg.Wake)
	}
	return nil
}
