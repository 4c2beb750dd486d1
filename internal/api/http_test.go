package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/tenant"
)

func TestAuthErrors(t *testing.T) {
	t.Parallel()
	e := setup(t)
	good := e.key("acme")
	forged := auth.NewSecret(tenant.Live) // well-formed, never stored
	typo := good[:len(good)-1] + "a"
	if typo == good {
		typo = good[:len(good)-1] + "b"
	}

	past := time.Now().Add(-time.Minute)
	_, expired, err := auth.NewStore(e.pool, time.Now).Bootstrap(context.Background(), "acme",
		auth.KeyParams{Name: "old", ExpiresAt: &past})
	if err != nil {
		t.Fatal(err)
	}
	_, revoked, _ := auth.NewStore(e.pool, time.Now).Bootstrap(context.Background(), "acme", auth.KeyParams{Name: "gone"})
	e.pool.Exec(context.Background(), `UPDATE api_keys SET revoked_at = now() WHERE name = 'gone'`)

	cases := []struct {
		name, header, code string
	}{
		{"no header", "", "missing_api_key"},
		{"colon after scheme", "Bearer: " + good, "malformed_authorization_header"},
		{"other scheme", "Basic " + good, "malformed_authorization_header"},
		{"double space", "Bearer  " + good, "malformed_authorization_header"},
		{"trailing space inside", "Bearer " + good + " x", "malformed_authorization_header"},
		{"no key", "Bearer", "malformed_authorization_header"},
		{"unknown key", "Bearer " + forged, "invalid_api_key"},
		{"bad checksum", "Bearer " + typo, "invalid_api_key"},
		{"garbage", "Bearer hunter2", "invalid_api_key"},
		{"revoked", "Bearer " + revoked, "invalid_api_key"},
		{"expired", "Bearer " + expired, "expired_api_key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := req{method: "GET", path: "/v1/accounts", header: map[string]string{}}
			if c.header != "" {
				r.header["Authorization"] = c.header
			}
			resp := expect(t, e.do(r), 401)
			if got := resp.errorCode(t); got != c.code {
				t.Errorf("code %s, want %s", got, c.code)
			}
			if resp.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			for _, k := range []string{good, forged, expired, revoked} {
				if strings.Contains(string(resp.body), k) {
					t.Error("error body quotes a key")
				}
			}
		})
	}
	expect(t, e.do(req{method: "GET", path: "/v1/accounts", header: map[string]string{"Authorization": "bearer " + good}}), 200)
	for _, k := range []string{good, expired, revoked, forged} {
		if strings.Contains(e.logs.String(), k) {
			t.Error("a key appears in the logs")
		}
	}
}

func TestEnvelopeEverywhere(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	big := `{"cookie":"` + strings.Repeat("a", 1<<20) + `"}`
	cases := []struct {
		name   string
		r      req
		status int
		code   string
	}{
		{"unknown route", req{method: "GET", path: "/nope"}, 404, "route_not_found"},
		{"unknown v1 route", req{method: "GET", path: "/v1/nope", key: key}, 404, "route_not_found"},
		{"wrong method", req{method: "PUT", path: "/v1/accounts", key: key}, 405, "method_not_allowed"},
		{"oversized body", req{method: "POST", path: "/v1/accounts", key: key, body: big}, 413, "request_too_large"},
		{"oversized chunked body", req{method: "POST", path: "/v1/accounts", key: key, body: strings.NewReader(big)}, 413, "request_too_large"},
		{"wrong media type", req{method: "POST", path: "/v1/accounts", key: key, body: "x",
			header: map[string]string{"Content-Type": "text/plain"}}, 400, "unsupported_media_type"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := expect(t, e.do(c.r), c.status)
			if got := r.errorCode(t); got != c.code {
				t.Errorf("code %s, want %s", got, c.code)
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	e := setup(t)
	r := e.do(req{method: "GET", path: "/healthz", header: map[string]string{"X-Request-Id": "trace-123.abc"}})
	if got := r.header.Get("X-Request-Id"); got != "trace-123.abc" {
		t.Errorf("sane incoming id not honoured: %q", got)
	}
	for _, bad := range []string{"has space", strings.Repeat("x", 200), "new\\nline"} {
		r := e.do(req{method: "GET", path: "/healthz", header: map[string]string{"X-Request-Id": bad}})
		if got := r.header.Get("X-Request-Id"); got == bad || !strings.HasPrefix(got, "req_") {
			t.Errorf("insane id %q answered with %q; want a fresh req_ id", bad, got)
		}
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	e := setup(t)
	expect(t, e.do(req{method: "GET", path: "/healthz"}), 200)
	expect(t, e.do(req{method: "GET", path: "/readyz"}), 200)
	r := expect(t, e.do(req{method: "GET", path: "/openapi.yaml"}), 200)
	if !strings.HasPrefix(string(r.body), "openapi: 3.1") {
		t.Errorf("openapi.yaml starts with %q", r.body[:20])
	}
}
