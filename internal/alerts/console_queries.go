package alerts

import (
	"context"
	"fmt"

	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/tenant"
	"github.com/poolgate/poolgate/internal/webhooks"
)

// errNoDestination answers a test alert for a tenant without a destination.
var errNoDestination = errs.Invalid("no_alert_destination", "set an alert destination URL first")

// SendTest queues a test alert to the tenant's destination through the
// signed webhook outbox, exactly as a real alert travels, so an operator
// can check the URL and format end to end. It returns the delivery id.
func (s *Store) SendTest(ctx context.Context, scope tenant.Scope) (string, error) {
	d, err := s.Destination(ctx, scope)
	if err != nil {
		return "", err
	}
	if d == nil {
		return "", errNoDestination
	}
	now := s.now().UTC()
	a := Alert{ID: "alr_test", Email: "test@example.com", Kind: "test", CreatedAt: now,
		Message: "test alert from the poolgate console; no action needed"}
	id, err := webhooks.Enqueue(ctx, s.pool, scope.TenantID, d.URL, "alert.test", payload(a, d.Format), now)
	if err != nil {
		return "", errs.Unavailable(fmt.Errorf("queue test alert: %w", err))
	}
	return id, nil
}
