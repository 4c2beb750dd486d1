package accounts_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/provider/sim"
)

// TestStatusMetricUsesTheAPIsRule: poolgate_accounts counts accounts by the
// status the API shows them with, expiring included.
func TestStatusMetricUsesTheAPIsRule(t *testing.T) {
	t.Parallel()
	w := newRefreshWorld(t)
	ctx := context.Background()
	now := time.Now()
	register := func(email string, refreshExpiry time.Time) {
		t.Helper()
		if _, err := w.store.Register(ctx, w.scope, accounts.Registration{Cookie: sim.Cookie(email, now.Add(time.Hour), refreshExpiry)}); err != nil {
			t.Fatal(err)
		}
	}
	register("active@x.io", now.Add(90*24*time.Hour))
	register("expiring@x.io", now.Add(2*24*time.Hour)) // within the default 7d
	register("disabled@x.io", now.Add(90*24*time.Hour))
	off := false
	if _, err := w.store.Update(ctx, w.scope, "disabled@x.io", accounts.Patch{Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(w.store.StatusCollector())
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{"active": 1, "expiring": 1, "disabled": 1, "error": 0, "expired": 0, "refreshing": 0}
	for status, n := range want {
		if v, ok := got[status]; !ok || v != n {
			t.Errorf("poolgate_accounts{status=%q} = %v (present %v), want %v", status, v, ok, n)
		}
	}
	list, err := w.store.List(ctx, w.scope)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range list {
		if !strings.HasPrefix(a.Email, string(a.Status)) {
			t.Errorf("the API shows %s as %s", a.Email, a.Status)
		}
	}
}
