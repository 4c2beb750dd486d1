package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/tenant"
)

// usageCounts is the wire form of a group's counts.
type usageCounts struct {
	Started         int64            `json:"started"`
	Succeeded       int64            `json:"succeeded"`
	Failed          int64            `json:"failed"`
	FailedByReason  map[string]int64 `json:"failedByReason"`
	Canceled        int64            `json:"canceled"`
	Retried         int64            `json:"retried"`
	GenerationP50Ms *int64           `json:"generationP50Ms"`
	GenerationP95Ms *int64           `json:"generationP95Ms"`
}

type usageReport struct {
	GroupBy string      `json:"groupBy"`
	Totals  usageCounts `json:"totals"`
	Data    []struct {
		Group *string `json:"group"`
		usageCounts
	} `json:"data"`
}

type accountStats struct {
	Email  string      `json:"email"`
	Totals usageCounts `json:"totals"`
	Hours  []struct {
		Hour string `json:"hour"`
		usageCounts
	} `json:"hours"`
}

func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

// After 1,000 jobs from two keys on four accounts, with the simulator
// refusing some submissions (503: retried elsewhere, or failed once
// attempts run out) and failing some generations, every account's stats
// and /v1/usage agree with what the simulator itself counted per account.
func TestUsageMatchesTheSimulatorsCounts(t *testing.T) {
	t.Parallel()
	e := setup(t)
	cfg := sim.DefaultConfig()
	cfg.JobDuration, cfg.Jitter = 30*time.Millisecond, 20*time.Millisecond
	cfg.TransientRate, cfg.FailureRate, cfg.Seed = 0.1, 0.1, 7
	e.sim.SetConfig(cfg)

	admin := e.key("acme")
	emails := []string{"u0@x.io", "u1@x.io", "u2@x.io", "u3@x.io"}
	for _, email := range emails {
		e.addSimAccount(admin, email, 10)
	}
	const perKey = 500
	keyIDs := map[string]bool{}
	for _, name := range []string{"producer-a", "producer-b"} {
		k := e.createKey(0, admin, map[string]any{"name": name})
		keyIDs[k["id"].(string)] = true
		jobs := make([]map[string]any, perKey)
		for i := range jobs {
			jobs[i] = map[string]any{"type": "video", "params": map[string]any{"prompt": fmt.Sprint(name, i)}}
		}
		expect(t, e.do(req{method: "POST", path: "/v1/jobs/batch", key: k["secret"].(string), body: map[string]any{"jobs": jobs}}), 200)
	}
	waitUntil(t, "every job to end", 2*time.Minute, func() bool {
		var open int
		e.pool.QueryRow(context.Background(), `SELECT count(*) FROM jobs WHERE state NOT IN ('succeeded', 'failed', 'canceled')`).Scan(&open)
		return open == 0
	})

	st := e.sim.Stats()
	var refused, failedUpstream int
	byAccount := decode[usageReport](t, expect(t, e.do(req{method: "GET", path: "/v1/usage?groupBy=account", key: admin}), 200))
	if len(byAccount.Data) != len(emails) {
		t.Fatalf("usage by account has %d groups, want %d: %+v", len(byAccount.Data), len(emails), byAccount.Data)
	}
	for i, email := range emails {
		sa := st.Accounts[email]
		refused += sa.Refused
		failedUpstream += sa.Failed
		got := decode[accountStats](t, expect(t, e.do(req{method: "GET", path: "/v1/accounts/" + email + "/stats", key: admin}), 200))
		c := got.Totals
		exhausted := c.FailedByReason["retries_exhausted"]
		if c.Started != int64(sa.Submitted+sa.Refused) || c.Succeeded != int64(sa.Succeeded) ||
			c.FailedByReason["upstream_failed"] != int64(sa.Failed) || c.Retried+exhausted != int64(sa.Refused) ||
			c.Failed != int64(sa.Failed)+exhausted || c.Canceled != 0 {
			t.Errorf("%s: stats %+v; the simulator saw %+v", email, c, sa)
		}
		if c.Succeeded > 0 && (c.GenerationP50Ms == nil || *c.GenerationP50Ms < 5 || *c.GenerationP95Ms < *c.GenerationP50Ms) {
			t.Errorf("%s: generation p50 %v, p95 %v; want at least the simulated 10ms+, p95 ≥ p50", email, c.GenerationP50Ms, c.GenerationP95Ms)
		}
		var hourly usageCounts
		for _, h := range got.Hours {
			hourly.Started += h.Started
			hourly.Succeeded += h.Succeeded
		}
		if hourly.Started != c.Started || hourly.Succeeded != c.Succeeded {
			t.Errorf("%s: the hours add up to %+v, the totals say %+v", email, hourly, c)
		}
		g := byAccount.Data[i]
		if g.Group == nil || *g.Group != email || !reflect.DeepEqual(g.usageCounts, c) {
			t.Errorf("/v1/usage group %d = %v %+v; the account's stats say %s %+v", i, g.Group, g.usageCounts, email, c)
		}
	}
	if refused == 0 || failedUpstream == 0 {
		t.Fatalf("the simulator injected %d refusals and %d failed generations; the test needs both", refused, failedUpstream)
	}
	tot := byAccount.Totals
	if tot.Succeeded+tot.Failed != 2*perKey || tot.Started != tot.Succeeded+tot.Failed+tot.Retried {
		t.Errorf("totals %+v: every job ends once, and every start ends or is retried", tot)
	}

	byKey := decode[usageReport](t, expect(t, e.do(req{method: "GET", path: "/v1/usage?groupBy=key", key: admin}), 200))
	if len(byKey.Data) != 2 || !reflect.DeepEqual(byKey.Totals, tot) {
		t.Fatalf("by key: %+v; want two keys adding up to %+v", byKey, tot)
	}
	for _, g := range byKey.Data {
		if g.Group == nil || !keyIDs[*g.Group] || g.Succeeded+g.Failed != perKey {
			t.Errorf("key group %v: %+v; want one of %v with %d jobs ended", g.Group, g.usageCounts, keyIDs, perKey)
		}
	}
	byDay := decode[usageReport](t, expect(t, e.do(req{method: "GET", path: "/v1/usage?groupBy=day", key: admin}), 200))
	if !reflect.DeepEqual(byDay.Totals, tot) {
		t.Errorf("by day totals %+v, by account %+v", byDay.Totals, tot)
	}
}

func TestUsageIsScopedToTheKeysPool(t *testing.T) {
	t.Parallel()
	e := setup(t)
	acme := e.key("acme")
	e.addSimAccount(acme, "mine@x.io", 2)
	expect(t, e.do(req{method: "GET", path: "/v1/jobs/" +
		expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: acme, body: `{"type":"video"}`}), 202).json(t)["id"].(string) +
		"?wait=20s", key: acme}), 200)
	mine := decode[usageReport](t, expect(t, e.do(req{method: "GET", path: "/v1/usage", key: acme}), 200))
	if mine.Totals.Succeeded != 1 {
		t.Fatalf("acme's own usage: %+v", mine)
	}
	for name, key := range map[string]string{"another tenant": e.key("globex"), "acme's test mode": e.keyMode("acme", tenant.Test)} {
		if c := expect(t, e.do(req{method: "GET", path: "/v1/accounts/mine@x.io/stats", key: key}), 404).errorCode(t); c != "account_not_found" {
			t.Errorf("%s reading acme's account stats: %s, want account_not_found", name, c)
		}
		for _, by := range []string{"account", "key", "day"} {
			got := decode[usageReport](t, expect(t, e.do(req{method: "GET", path: "/v1/usage?groupBy=" + by, key: key}), 200))
			if len(got.Data) != 0 || got.Totals.Started != 0 {
				t.Errorf("%s sees acme's usage by %s: %+v", name, by, got)
			}
		}
	}
}

func TestUsageRangesAreValidated(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	e.addSimAccount(key, "a@x.io", 1)
	q := func(v url.Values) string { return v.Encode() }
	for _, c := range []struct {
		name, query, code string
	}{
		{"from is not a time", q(url.Values{"from": {"yesterday"}}), "validation_failed"},
		{"to is a date without time", q(url.Values{"to": {"2026-01-02"}}), "validation_failed"},
		{"to before from", q(url.Values{"from": {"2026-01-02T00:00:00Z"}, "to": {"2026-01-01T00:00:00Z"}}), "invalid_range"},
		{"to equal to from", q(url.Values{"from": {"2026-01-02T00:00:00Z"}, "to": {"2026-01-02T00:00:00Z"}}), "invalid_range"},
		{"over 366 days", q(url.Values{"from": {"2024-01-01T00:00:00Z"}, "to": {"2026-01-01T00:00:00Z"}}), "invalid_range"},
		{"an unknown grouping", q(url.Values{"groupBy": {"hour"}}), "validation_failed"},
	} {
		for _, path := range []string{"/v1/usage?", "/v1/accounts/a@x.io/stats?"} {
			if c.name == "an unknown grouping" && path != "/v1/usage?" {
				continue
			}
			if got := expect(t, e.do(req{method: "GET", path: path + c.query, key: key}), 400).errorCode(t); got != c.code {
				t.Errorf("%s on %s: %s, want %s", c.name, path, got, c.code)
			}
		}
	}
	// The range's start is rounded down to its hour and said so; offsets are read.
	r := expect(t, e.do(req{method: "GET", path: "/v1/usage?" + q(url.Values{
		"from": {"2026-01-01T10:30:00+02:00"}, "to": {"2026-01-01T12:00:00Z"}}), key: key}), 200).json(t)
	if r["from"] != "2026-01-01T08:00:00.000Z" || r["to"] != "2026-01-01T12:00:00.000Z" || r["groupBy"] != "account" {
		t.Errorf("range echoed as %v .. %v by %v", r["from"], r["to"], r["groupBy"])
	}
}
