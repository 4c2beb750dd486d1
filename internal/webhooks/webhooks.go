// Package webhooks is poolgate's durable, signed, at-least-once outbox.
//
// A caller records an event with Enqueue inside the same transaction as the
// state change it reports, so a delivery row exists exactly when the event
// happened. A Deliverer (one per replica; any number may share a database)
// claims due rows with FOR UPDATE SKIP LOCKED, pushes each claimed row's
// next_attempt_at forward by a lease, commits, and only then POSTs, so no
// transaction is held open across the network. A replica that dies between
// claim and result leaves the row to be claimed again when the lease lapses:
// receivers may see a delivery twice and must dedupe on Poolgate-Delivery,
// which stays the same across every attempt.
//
// Each request carries an HMAC-SHA256 signature made with the tenant's
// signing secret (see Secrets, Sign and Verify).
package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/ids"
)

// Headers every delivery carries besides the Standard Webhooks ones (see
// sign.go).
const (
	// HeaderDelivery is the delivery id, identical on every retry and equal
	// to webhook-id; receivers dedupe on it.
	HeaderDelivery = "Poolgate-Delivery"
	// HeaderEvent names the event, e.g. "job.succeeded".
	HeaderEvent = "Poolgate-Event"
	// UserAgent identifies poolgate to receivers.
	UserAgent = "poolgate-webhooks/1"
)

// DeliveryWindow is how long a delivery is retried before it is failed.
const DeliveryWindow = 24 * time.Hour

const deliveryInsert = `
INSERT INTO webhook_deliveries (id, tenant_id, url, event, payload, next_attempt_at, give_up_at, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $6)`

// Enqueue records a pending delivery of payload (JSON-encoded; a
// json.RawMessage or []byte is taken as JSON already) to url. Call it on the
// transaction that makes the event happen, so the delivery commits or rolls
// back with it, and nudge a Deliverer with Wake after the commit for prompt
// delivery. The URL is checked again at delivery time; validate it with
// CheckURL when it is first accepted from a user.
func Enqueue(ctx context.Context, db dbx.DBTX, tenantID int64, url, event string, payload any, now time.Time) (string, error) {
	if url == "" || event == "" {
		return "", errors.New("webhooks: enqueue needs a url and an event")
	}
	body, err := encodePayload(payload)
	if err != nil {
		return "", err
	}
	now = now.UTC()
	id := ids.New("dlv", now)
	if _, err := db.Exec(ctx, deliveryInsert, id, tenantID, url, event, string(body), now, now.Add(DeliveryWindow)); err != nil {
		return "", fmt.Errorf("webhooks: enqueue %s: %w", event, err)
	}
	return id, nil
}

func encodePayload(payload any) ([]byte, error) {
	var body []byte
	switch p := payload.(type) {
	case json.RawMessage:
		body = p
	case []byte:
		body = p
	default:
		b, err := json.Marshal(payload)
		if err != nil {
			return nil, fmt.Errorf("webhooks: encode payload: %w", err)
		}
		return b, nil
	}
	if !json.Valid(body) {
		return nil, errors.New("webhooks: payload is not valid JSON")
	}
	return body, nil
}
