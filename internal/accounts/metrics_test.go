package accounts

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/poolgate/poolgate/internal/pgtest"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/secret"
	"github.com/poolgate/poolgate/internal/tenant"
)

func gather(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			key := mf.GetName()
			for _, l := range m.Label {
				key += "/" + l.GetValue()
			}
			out[key] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

// TestStatusCollector: poolgate_accounts had no expiring status (its SQL
// kept its own copy of the status rules), and a failed read hid the series
// without a trace.
func TestStatusCollector(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	key := make([]byte, secret.KeySize)
	rand.Read(key)
	box, _ := secret.NewBox(key)
	s := NewStore(pool, box, time.Now)
	var id int64
	if err := pool.QueryRow(context.Background(), `INSERT INTO tenants (name) VALUES ('acme') RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	scope := tenant.Scope{TenantID: id, Mode: tenant.Live}
	for email, refreshIn := range map[string]time.Duration{"soon@x.io": 48 * time.Hour, "later@x.io": 90 * 24 * time.Hour} {
		cookie := sim.Cookie(email, time.Now().Add(time.Hour), time.Now().Add(refreshIn))
		if _, err := s.Register(context.Background(), scope, Registration{Cookie: cookie}); err != nil {
			t.Fatal(err)
		}
	}
	got := gather(t, s.StatusCollector())
	for k, want := range map[string]float64{"poolgate_accounts/expiring": 1, "poolgate_accounts/active": 1,
		"poolgate_accounts/error": 0, "poolgate_metrics_collect_errors_total/accounts": 0} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], want, got)
		}
	}

	broken, err := pgxpool.New(context.Background(), pgtest.NewURL(t))
	if err != nil {
		t.Fatal(err)
	}
	broken.Close() // every query fails
	c := NewStore(broken, box, time.Now).StatusCollector()
	gather(t, c)
	got = gather(t, c)
	if got["poolgate_metrics_collect_errors_total/accounts"] != 2 {
		t.Errorf("failed reads counted %v, want 2", got["poolgate_metrics_collect_errors_total/accounts"])
	}
	if _, ok := got["poolgate_accounts/active"]; ok {
		t.Error("a failed read still reported account counts")
	}
}
