package api_test

import (
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/provider/sim"
)

// TestAccountHealthView: an account the upstream refuses shows why, since
// when, its health events and its next probe; PATCH turns probes off.
func TestAccountHealthView(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	cookie := sim.Cookie("h@x.io", time.Now().Add(time.Hour), time.Now().Add(90*24*time.Hour))
	a := expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: key, body: map[string]any{"cookie": cookie}}), 200).json(t)
	if a["probe"] != true || a["statusReason"] != nil || a["quarantineReason"] != nil || len(a["health"].([]any)) != 0 {
		t.Fatalf("a fresh account's health fields: %v", a)
	}

	e.sim.SetFaults("h@x.io", sim.Faults{Submit: sim.FaultUnauthorized})
	expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key, body: `{"type":"video","email":"h@x.io"}`}), 202)
	deadline := time.Now().Add(10 * time.Second)
	for a["status"] != "error" {
		if time.Now().After(deadline) {
			t.Fatalf("account not in error after the upstream refused it: %v", a)
		}
		time.Sleep(20 * time.Millisecond)
		a = expect(t, e.do(req{method: "GET", path: "/v1/accounts/h@x.io", key: key}), 200).json(t)
	}
	if a["statusReason"] != "credentials_refused" || a["statusSinceUTC"] == nil || a["nextProbeUTC"] == nil {
		t.Errorf("account in error: statusReason %v, since %v, next probe %v", a["statusReason"], a["statusSinceUTC"], a["nextProbeUTC"])
	}
	health := a["health"].([]any)
	if len(health) != 1 {
		t.Fatalf("health = %v, want one event", health)
	}
	ev := health[0].(map[string]any)
	if ev["kind"] != "error" || ev["reason"] != "credentials_refused" || ev["atUTC"] != a["statusSinceUTC"] {
		t.Errorf("health event %v, want error/credentials_refused at statusSinceUTC %v", ev, a["statusSinceUTC"])
	}
	list := expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: key}), 200).json(t)
	if got := list["h@x.io"].(map[string]any)["health"].([]any); len(got) != 1 {
		t.Errorf("the list shows health %v, want the same event", got)
	}

	p := expect(t, e.do(req{method: "PATCH", path: "/v1/accounts/h@x.io", key: key, body: `{"probe":false}`}), 200).json(t)
	if p["probe"] != false || p["nextProbeUTC"] != nil || p["status"] != "error" {
		t.Errorf("after probe:false: probe %v, next probe %v, status %v", p["probe"], p["nextProbeUTC"], p["status"])
	}
	r := expect(t, e.do(req{method: "PATCH", path: "/v1/accounts/h@x.io", key: key, body: `{"probe":"no"}`}), 400)
	if r.errorCode(t) != "validation_failed" {
		t.Errorf(`PATCH {"probe":"no"}: code %s, want validation_failed`, r.errorCode(t))
	}
}
