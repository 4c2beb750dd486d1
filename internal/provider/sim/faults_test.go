package sim_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/sim"
)

// TestFaults: per-account faults refuse that account's submissions (and
// probes) the way the real client classifies, and leave other accounts be.
func TestFaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("daily quota refusal carries its reset", func(t *testing.T) {
		t.Parallel()
		e := setup(t, testConfig())
		a, other := e.account("quota@example.com"), e.account("fine@example.com")
		reset := time.Now().Add(3 * time.Hour).Truncate(time.Second) // the client reads its own clock
		e.sim.SetFaults(a.Email, sim.Faults{Submit: sim.FaultDailyQuota, QuotaReset: reset})
		_, err := e.client.Submit(ctx, a, submission("job1", 1, ""))
		pe := wantClass(t, err, provider.ClassRateLimited)
		if !provider.DailyQuotaOf(err) {
			t.Errorf("refusal %v is not marked as a daily quota", err)
		}
		if got := time.Now().Add(pe.RetryAfter); got.Sub(reset) > 2*time.Second || reset.Sub(got) > 2*time.Second {
			t.Errorf("RetryAfter %s runs to %s, want the reset %s", pe.RetryAfter, got, reset)
		}
		e.submit(other, submission("job2", 1, ""))
		e.clock.Advance(reset.Sub(e.clock.Now()) + time.Second) // the simulator's clock passes the reset
		e.submit(e.account("quota@example.com"), submission("job3", 1, ""))
	})

	t.Run("rate limit, auth and outage refusals", func(t *testing.T) {
		t.Parallel()
		e := setup(t, testConfig())
		a := e.account("broken@example.com")
		for _, c := range []struct {
			fault string
			class provider.Class
			retry time.Duration
		}{
			{sim.FaultRateLimited, provider.ClassRateLimited, 90 * time.Second},
			{sim.FaultUnauthorized, provider.ClassAuth, 0},
			{sim.FaultUnavailable, provider.ClassTransient, 0},
		} {
			e.sim.SetFaults(a.Email, sim.Faults{Submit: c.fault, RetryAfter: c.retry})
			_, err := e.client.Submit(ctx, a, submission("job-"+c.fault, 1, ""))
			if pe := wantClass(t, err, c.class); pe.RetryAfter != c.retry || pe.DailyQuota {
				t.Errorf("%s: RetryAfter %s, daily quota %v; want %s and false", c.fault, pe.RetryAfter, pe.DailyQuota, c.retry)
			}
		}
		if st := accountStats(t, e.sim, a.Email); st.Submitted != 0 {
			t.Errorf("refused submissions created %d generations", st.Submitted)
		}
	})

	t.Run("probes fail on request and are counted", func(t *testing.T) {
		t.Parallel()
		e := setup(t, testConfig())
		a := e.account("probed@example.com")
		if err := e.client.Probe(ctx, a); err != nil {
			t.Fatalf("probe of a healthy account: %v", err)
		}
		code, _ := e.raw(http.MethodPut, "/_sim/accounts/probed@example.com/faults", "", nil, `{"probeFails": true}`)
		if code != http.StatusNoContent {
			t.Fatalf("PUT faults = %d, want 204", code)
		}
		wantClass(t, e.client.Probe(ctx, a), provider.ClassAuth)
		if st := accountStats(t, e.sim, a.Email); st.Probes != 2 {
			t.Errorf("probes counted %d, want 2", st.Probes)
		}
		wantClass(t, e.client.Probe(ctx, provider.Account{Email: a.Email, Cookie: "lt_token=nope"}), provider.ClassAuth)
	})
}
