package webhooks

import (
	"context"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// TestDeliveriesVerifyWithTheOfficialLibrary: receivers could not verify
// deliveries (the secret was never shown, and the scheme was poolgate's
// own). Real deliveries must verify with the Standard Webhooks library,
// and across a rotation with grace, under the old and the new secret.
func TestDeliveriesVerifyWithTheOfficialLibrary(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	rc := newReceiver(t, nil)
	startDeliverer(t, e, DelivererConfig{AllowPrivate: true})

	verifies := func(secret string, r receipt) bool {
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatalf("the official library refuses secret %q: %v", secret, err)
		}
		return wh.Verify(r.body, r.header) == nil
	}
	deliver := func() receipt {
		n := len(rc.got())
		enqueue(t, e, rc.URL+"/hook", map[string]any{"n": n}, time.Now())
		waitFor(t, 10*time.Second, "a delivery", func() bool { return len(rc.got()) > n })
		return rc.got()[n]
	}

	old, err := e.secrets.Get(ctx, e.tenant)
	if err != nil {
		t.Fatal(err)
	}
	r := deliver()
	if !verifies(old, r) {
		t.Fatalf("delivery does not verify with the official library: %v", r.header)
	}
	if r.header.Get(HeaderID) != r.header.Get(HeaderDelivery) {
		t.Errorf("webhook-id %q differs from %s %q", r.header.Get(HeaderID), HeaderDelivery, r.header.Get(HeaderDelivery))
	}

	info, err := e.secrets.Rotate(ctx, e.tenant, time.Hour)
	if err != nil || info.Secret == old || info.PreviousExpiresAt == nil {
		t.Fatalf("rotate: %+v, %v", info, err)
	}
	r = deliver() // the deliverer shares e.secrets, whose cache Rotate cleared
	if !verifies(info.Secret, r) || !verifies(old, r) {
		t.Errorf("during the grace both secrets must verify: %v", r.header)
	}

	if _, err := e.secrets.Rotate(ctx, e.tenant, 0); err != nil {
		t.Fatal(err)
	}
	newest, _ := e.secrets.Get(ctx, e.tenant)
	r = deliver()
	if !verifies(newest, r) || verifies(info.Secret, r) || verifies(old, r) {
		t.Errorf("after a rotation without grace only the newest secret may verify: %v", r.header)
	}
}

func TestRotateRefusesLongGrace(t *testing.T) {
	t.Parallel()
	e := setup(t)
	if _, err := e.secrets.Rotate(context.Background(), e.tenant, MaxRotationGrace+time.Second); err == nil {
		t.Error("rotation with a grace over the maximum was accepted")
	}
}
