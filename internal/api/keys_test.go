package api_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/api"
	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/tenant"
)

// replica is a server wired like cmd/server's: verification cached and
// invalidated by LISTEN/NOTIFY, rate limits, usage counting.
type replica struct {
	server int // index into env.urls
	cache  *auth.Cache
	usage  *auth.Usage
	limits *auth.Limiter
}

// addReplica starts such a server on the test's database with limit as the
// default rate limit, and waits until its cache listens.
func (e *env) addReplica(limit auth.RateLimit) replica {
	e.t.Helper()
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store := auth.NewStore(e.pool, time.Now)
	r := replica{
		server: len(e.urls),
		cache:  auth.NewCache(store, logger, 30*time.Second),
		usage:  auth.NewUsage(e.pool, logger, time.Now, time.Hour), // tests flush by hand
		limits: auth.NewLimiter(limit, time.Now),
	}
	ctx := context.Background()
	if err := r.cache.Start(ctx); err != nil {
		e.t.Fatal(err)
	}
	if err := r.usage.Start(ctx); err != nil {
		e.t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Deps{
		Logger: logger, DB: e.pool, Keys: store,
		Accounts: accounts.NewStore(e.pool, e.box, time.Now),
		Verifier: r.cache, Limits: r.limits, Usage: r.usage,
	}))
	e.t.Cleanup(func() {
		srv.Close()
		r.usage.Stop(context.Background())
		r.cache.Stop(context.Background())
	})
	e.urls = append(e.urls, srv.URL)
	waitUntil(e.t, "the key cache to listen", 5*time.Second, func() bool { return r.cache.Stats().Listening })
	return r
}

// waitUntil polls cond and returns how long it took to hold.
func waitUntil(t *testing.T, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s did not happen within %s", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// createKey makes a key through the API and returns the answer.
func (e *env) createKey(server int, admin string, body map[string]any) map[string]any {
	e.t.Helper()
	return expect(e.t, e.do(req{method: "POST", path: "/v1/keys", key: admin, server: server, body: body}), 201).json(e.t)
}

var noLimit = auth.RateLimit{}

// TestEveryRouteHasAScopeRule walks routes.go: every route is public by
// name or requires a known scope, and that scope is enforced. A new route
// is covered the moment it is added.
func TestEveryRouteHasAScopeRule(t *testing.T) {
	t.Parallel()
	e := setup(t)
	publicRoutes := []string{"GET /healthz", "GET /readyz", "GET /openapi.yaml"}
	scopes := slices.DeleteFunc(slices.Clone(auth.AllScopes), func(s string) bool { return s == auth.ScopeAll })
	only := map[string]string{}
	allBut := map[string]string{}
	for _, s := range scopes {
		only[s] = e.key("acme", s)
		allBut[s] = e.key("acme", slices.DeleteFunc(slices.Clone(scopes), func(o string) bool { return o == s })...)
	}
	param := regexp.MustCompile(`:\w+`)
	for _, r := range api.RouteScopes() {
		name := r.Method + " " + r.Path
		t.Run(name, func(t *testing.T) {
			if r.Scope == "" {
				if !slices.Contains(publicRoutes, name) {
					t.Fatalf("%s has no scope rule and is not a known public route", name)
				}
				return
			}
			if !slices.Contains(scopes, r.Scope) {
				t.Fatalf("%s requires %q, which is not a scope a key can hold", name, r.Scope)
			}
			path := param.ReplaceAllString(r.Path, "x")

			useapi := strings.HasPrefix(r.Path, "/v1/ltxstudio/") // errors in useapi.net's shape
			resp := expect(t, e.do(req{method: r.Method, path: path}), 401)
			if useapi {
				exactBody(t, resp, `{"error":"Unauthorized","code":401}`)
			} else if resp.errorCode(t) != "missing_api_key" {
				t.Errorf("without a key: %s", resp.body)
			}
			resp = expect(t, e.do(req{method: r.Method, path: path, key: allBut[r.Scope]}), 403)
			if useapi {
				if msg := useapiErr(t, resp); !strings.Contains(msg, r.Scope) {
					t.Errorf("with every scope but %s: %s; want an error naming it", r.Scope, resp.body)
				}
			} else if resp.errorCode(t) != "insufficient_scope" || !strings.Contains(string(resp.body), `"requiredScope":"`+r.Scope+`"`) {
				t.Errorf("with every scope but %s: %s; want insufficient_scope naming it", r.Scope, resp.body)
			}
			resp = e.do(req{method: r.Method, path: path, key: only[r.Scope]})
			if resp.status == 401 || resp.status == 403 {
				t.Errorf("with only %s: %d %s", r.Scope, resp.status, resp.body)
			}
		})
	}
}

func TestKeyLifecycle(t *testing.T) {
	t.Parallel()
	e := setup(t)
	r := e.addReplica(noLimit)
	admin := e.key("acme")
	expiresAt := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Millisecond)

	resp := expect(t, e.do(req{method: "POST", path: "/v1/keys", key: admin, server: r.server, body: map[string]any{
		"name": "prod-batch-jobs", "scopes": []string{"jobs:write", "accounts:read", "jobs:write"},
		"expiresAt": expiresAt.Format(time.RFC3339Nano), "rateLimit": map[string]any{"requests": 600, "per": "1m"},
	}}), 201)
	if cc := resp.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q on the answer carrying a secret", cc)
	}
	k := resp.json(t)
	secret, _ := k["secret"].(string)
	id, _ := k["id"].(string)
	if _, ok := auth.ParseSecret(secret); !ok || !strings.HasPrefix(secret, "pgk_live_") {
		t.Fatalf("secret %q is not a live key", secret)
	}
	if !strings.HasPrefix(id, "key_") || !strings.HasPrefix(secret, k["start"].(string)) || len(k["start"].(string)) >= len(secret)/2 {
		t.Errorf("id %v / start %v", k["id"], k["start"])
	}
	want := map[string]any{
		"name": "prod-batch-jobs", "mode": "live", "status": "active",
		"scopes":     []any{"accounts:read", "jobs:write"},
		"expiresUTC": expiresAt.Format("2006-01-02T15:04:05.000Z"),
		"rateLimit":  map[string]any{"requests": 600.0, "per": "1m"},
		"revokedUTC": nil, "replacedBy": nil, "lastUsedUTC": nil,
	}
	for f, v := range want {
		if fmt.Sprint(k[f]) != fmt.Sprint(v) {
			t.Errorf("%s = %v, want %v", f, k[f], v)
		}
	}

	// The new key works at once, within its scopes.
	expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: secret, server: r.server}), 200)
	expect(t, e.do(req{method: "GET", path: "/v1/keys", key: secret, server: r.server}), 403)

	// Listing and reading never show the secret again.
	list := expect(t, e.do(req{method: "GET", path: "/v1/keys", key: admin}), 200)
	one := expect(t, e.do(req{method: "GET", path: "/v1/keys/" + id, key: admin}), 200)
	if got := one.json(t); got["name"] != "prod-batch-jobs" || got["secret"] != nil || got["usage"] == nil {
		t.Errorf("GET one: %s", one.body)
	}
	if data, _ := list.json(t)["data"].([]any); len(data) != 2 {
		t.Errorf("list has %d keys, want 2 (admin and the new one): %s", len(data), list.body)
	}
	var dump string
	e.pool.QueryRow(context.Background(), `SELECT string_agg(k::text, '|') FROM api_keys k`).Scan(&dump)
	for where, text := range map[string]string{"list": string(list.body), "get": string(one.body), "table": dump, "logs": e.logs.String()} {
		if strings.Contains(text, secret) || strings.Contains(text, secret[len(secret)-12:]) {
			t.Errorf("the secret can be read back from the %s", where)
		}
	}

	// Revocation is immediate and idempotent.
	expect(t, e.do(req{method: "DELETE", path: "/v1/keys/" + id, key: admin, server: r.server}), 204)
	waitUntil(t, "the revoked key to be refused", time.Second, func() bool {
		return e.do(req{method: "GET", path: "/v1/accounts", key: secret, server: r.server}).status == 401
	})
	if code := e.do(req{method: "GET", path: "/v1/accounts", key: secret, server: r.server}).errorCode(t); code != "invalid_api_key" {
		t.Errorf("revoked key: %s, want invalid_api_key", code)
	}
	expect(t, e.do(req{method: "DELETE", path: "/v1/keys/" + id, key: admin}), 204)
	if got := expect(t, e.do(req{method: "GET", path: "/v1/keys/" + id, key: admin}), 200).json(t); got["status"] != "revoked" || got["revokedUTC"] == nil {
		t.Errorf("after revocation: status %v, revokedUTC %v", got["status"], got["revokedUTC"])
	}
}

func TestCreateKeyRules(t *testing.T) {
	t.Parallel()
	e := setup(t)
	admin := e.key("acme")
	limited := e.key("acme", auth.ScopeKeysAdmin, auth.ScopeAccountsRead)

	invalid := []struct {
		name string
		body any
		code string
	}{
		{"no name", map[string]any{"scopes": []string{"jobs:read"}}, "validation_failed"},
		{"long name", map[string]any{"name": strings.Repeat("n", 101)}, "validation_failed"},
		{"unknown scope", map[string]any{"name": "k", "scopes": []string{"jobs:delete"}}, "unknown_scope"},
		{"unknown mode", map[string]any{"name": "k", "mode": "prod"}, "validation_failed"},
		{"past expiry", map[string]any{"name": "k", "expiresAt": "2001-01-01T00:00:00Z"}, "validation_failed"},
		{"unparsable expiry", map[string]any{"name": "k", "expiresAt": "tomorrow"}, "validation_failed"},
		{"zero requests", map[string]any{"name": "k", "rateLimit": map[string]any{"requests": 0, "per": "1m"}}, "validation_failed"},
		{"unparsable period", map[string]any{"name": "k", "rateLimit": map[string]any{"requests": 5, "per": "a while"}}, "validation_failed"},
		{"tiny period", map[string]any{"name": "k", "rateLimit": map[string]any{"requests": 5, "per": "10ms"}}, "validation_failed"},
		{"unknown field", map[string]any{"name": "k", "secret": "pgk_live_mine"}, "validation_failed"},
		{"unknown rate-limit field", map[string]any{"name": "k", "rateLimit": map[string]any{"requests": 5, "per": "1m", "burst": 9}}, "validation_failed"},
	}
	for _, c := range invalid {
		t.Run(c.name, func(t *testing.T) {
			r := expect(t, e.do(req{method: "POST", path: "/v1/keys", key: admin, body: c.body}), 400)
			if got := r.errorCode(t); got != c.code {
				t.Errorf("code %s, want %s: %s", got, c.code, r.body)
			}
		})
	}

	t.Run("no scope it lacks", func(t *testing.T) {
		for _, scopes := range [][]string{{"accounts:write"}, {"accounts:read", "jobs:read"}, {"*"}} {
			r := expect(t, e.do(req{method: "POST", path: "/v1/keys", key: limited,
				body: map[string]any{"name": "escalate", "scopes": scopes}}), 403)
			if r.errorCode(t) != "insufficient_scope" {
				t.Errorf("scopes %v: %s", scopes, r.body)
			}
		}
		r := expect(t, e.do(req{method: "POST", path: "/v1/keys", key: limited,
			body: map[string]any{"name": "escalate", "scopes": []string{"accounts:write"}}}), 403)
		if !strings.Contains(string(r.body), `"requiredScope":"accounts:write"`) {
			t.Errorf("403 does not name the missing scope: %s", r.body)
		}
	})
	t.Run("defaults are the caller's", func(t *testing.T) {
		k := e.createKey(0, limited, map[string]any{"name": "same"})
		if fmt.Sprint(k["scopes"]) != "[accounts:read keys:admin]" || k["mode"] != "live" || k["rateLimit"] != nil || k["expiresUTC"] != nil {
			t.Errorf("defaults: %v", k)
		}
		k = e.createKey(0, limited, map[string]any{"name": "fewer", "scopes": []string{"accounts:read"}})
		if fmt.Sprint(k["scopes"]) != "[accounts:read]" {
			t.Errorf("subset: %v", k["scopes"])
		}
	})
	t.Run("a lesser key cannot revoke or roll a greater one", func(t *testing.T) {
		root := e.createKey(0, admin, map[string]any{"name": "root", "scopes": []string{"*"}})
		for _, r := range []req{
			{method: "DELETE", path: "/v1/keys/" + root["id"].(string)},
			{method: "POST", path: "/v1/keys/" + root["id"].(string) + "/roll", body: map[string]any{"expireOldIn": "0"}},
		} {
			r.key = limited
			resp := expect(t, e.do(r), 403)
			if resp.errorCode(t) != "insufficient_scope" {
				t.Errorf("%s: %s", r.method, resp.body)
			}
		}
		expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: root["secret"].(string)}), 200)
	})
}

func TestKeysTestLiveAndTenantIsolation(t *testing.T) {
	t.Parallel()
	e := setup(t)
	live := e.key("acme")
	test := e.keyMode("acme", tenant.Test)
	other := e.key("other")
	liveKey := e.createKey(0, live, map[string]any{"name": "live one", "scopes": []string{"accounts:read"}})
	liveID := liveKey["id"].(string)

	// A test key makes test keys, and only those.
	made := e.createKey(0, test, map[string]any{"name": "sandbox"})
	if made["mode"] != "test" || !strings.HasPrefix(made["secret"].(string), "pgk_test_") {
		t.Errorf("a test key made %v / %v", made["mode"], made["start"])
	}
	r := expect(t, e.do(req{method: "POST", path: "/v1/keys", key: test, body: map[string]any{"name": "x", "mode": "live"}}), 403)
	if r.errorCode(t) != "mode_not_allowed" {
		t.Errorf("test key asking for live: %s", r.body)
	}
	// A live key may make test keys.
	if k := e.createKey(0, live, map[string]any{"name": "ci", "mode": "test"}); k["mode"] != "test" {
		t.Errorf("live key asking for test made %v", k["mode"])
	}

	modes := func(key string) []string {
		var out []string
		for _, k := range expect(t, e.do(req{method: "GET", path: "/v1/keys", key: key}), 200).json(t)["data"].([]any) {
			out = append(out, k.(map[string]any)["mode"].(string))
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	if got := modes(test); !slices.Equal(got, []string{"test"}) {
		t.Errorf("a test key lists keys of modes %v", got)
	}
	if got := modes(live); !slices.Equal(got, []string{"live", "test"}) {
		t.Errorf("a live key lists keys of modes %v", got)
	}
	if l := expect(t, e.do(req{method: "GET", path: "/v1/keys", key: other}), 200).json(t)["data"].([]any); len(l) != 1 {
		t.Errorf("another tenant lists %d keys, want only its own", len(l))
	}

	// A live key id is not there for a test key, nor for another tenant.
	for name, k := range map[string]string{"test key": test, "other tenant": other} {
		for _, rq := range []req{
			{method: "GET", path: "/v1/keys/" + liveID},
			{method: "DELETE", path: "/v1/keys/" + liveID},
			{method: "POST", path: "/v1/keys/" + liveID + "/roll", body: map[string]any{"expireOldIn": "0"}},
			{method: "GET", path: "/v1/keys/key_01J00000000000000000000000"},
		} {
			rq.key = k
			resp := expect(t, e.do(rq), 404)
			if resp.errorCode(t) != "key_not_found" {
				t.Errorf("%s %s %s: %s", name, rq.method, rq.path, resp.body)
			}
		}
	}
	expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: liveKey["secret"].(string)}), 200)

	// Keys made through the API see their own mode's accounts only.
	expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: live,
		body: map[string]any{"cookie": ltCookie("a@x.io", future, farOut)}}), 200)
	if l := expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: made["secret"].(string)}), 200).json(t); len(l) != 0 {
		t.Errorf("a test key made through the API sees %d live accounts", len(l))
	}
	if l := expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: liveKey["secret"].(string)}), 200).json(t); len(l) != 1 {
		t.Errorf("a live key made through the API sees %d live accounts, want 1", len(l))
	}
}

func TestRevocationReachesEveryReplicaWithinASecond(t *testing.T) {
	t.Parallel()
	e := setup(t)
	a, b := e.addReplica(noLimit), e.addReplica(noLimit)
	admin := e.key("acme")
	victim := e.createKey(a.server, admin, map[string]any{"name": "victim", "scopes": []string{"accounts:read"}})
	secret := victim["secret"].(string)

	for range 3 {
		expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: secret, server: b.server}), 200)
	}
	if s := b.cache.Stats(); s.Hits < 2 {
		t.Fatalf("replica b does not cache verification (%+v); the test would prove nothing", s)
	}
	expect(t, e.do(req{method: "DELETE", path: "/v1/keys/" + victim["id"].(string), key: admin, server: a.server}), 204)
	took := waitUntil(t, "replica b to refuse the revoked key", time.Second, func() bool {
		return e.do(req{method: "GET", path: "/v1/accounts", key: secret, server: b.server}).status == 401
	})
	t.Logf("replica b refused the key %s after revocation on replica a", took)
	if s := b.cache.Stats(); s.Evictions < 1 {
		t.Errorf("replica b's cache was not told (%+v)", s)
	}

	// Expiry needs no notification: a cached key stops at its instant.
	exp := time.Now().Add(1500 * time.Millisecond)
	soon := e.createKey(a.server, admin, map[string]any{"name": "soon", "expiresAt": exp.Format(time.RFC3339Nano)})["secret"].(string)
	expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: soon, server: b.server}), 200)
	waitUntil(t, "the key to expire", 3*time.Second, func() bool {
		return e.do(req{method: "GET", path: "/v1/accounts", key: soon, server: b.server}).status == 401
	})
	if late := time.Since(exp); late > time.Second {
		t.Errorf("expired key accepted for %s past its expiry", late)
	}
	if code := e.do(req{method: "GET", path: "/v1/accounts", key: soon, server: b.server}).errorCode(t); code != "expired_api_key" {
		t.Errorf("expired key: %s", code)
	}
}

func TestRollWithGracePeriod(t *testing.T) {
	t.Parallel()
	e := setup(t)
	a, b := e.addReplica(noLimit), e.addReplica(noLimit)
	admin := e.key("acme")
	old := e.createKey(a.server, admin, map[string]any{
		"name": "rotating", "scopes": []string{"accounts:read"},
		"rateLimit": map[string]any{"requests": 50, "per": "1s"},
		"expiresAt": time.Now().Add(30 * 24 * time.Hour).Format(time.RFC3339),
	})
	oldID, oldSecret := old["id"].(string), old["secret"].(string)
	expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: oldSecret, server: b.server}), 200) // cached on b

	rolledAt := time.Now()
	fresh := expect(t, e.do(req{method: "POST", path: "/v1/keys/" + oldID + "/roll", key: admin, server: a.server,
		body: map[string]any{"expireOldIn": "2s"}}), 201).json(t)
	newSecret, _ := fresh["secret"].(string)
	for _, f := range []string{"name", "scopes", "mode", "rateLimit"} {
		if fmt.Sprint(fresh[f]) != fmt.Sprint(old[f]) {
			t.Errorf("replacement %s = %v, want the old key's %v", f, fresh[f], old[f])
		}
	}
	if fresh["id"] == oldID || newSecret == "" || newSecret == oldSecret || fresh["expiresUTC"] == nil {
		t.Fatalf("replacement: %v", fresh)
	}
	rep, _ := fresh["replaces"].(map[string]any)
	until, err := time.Parse(time.RFC3339, fmt.Sprint(rep["revokedUTC"]))
	if rep["id"] != oldID || err != nil || until.Sub(rolledAt) < 1900*time.Millisecond || until.Sub(rolledAt) > 3*time.Second {
		t.Errorf("replaces = %v; want the old id and a time 2s on", rep)
	}
	got := expect(t, e.do(req{method: "GET", path: "/v1/keys/" + oldID, key: admin}), 200).json(t)
	if got["status"] != "rolled" || got["replacedBy"] != fresh["id"] {
		t.Errorf("old key after roll: status %v, replacedBy %v", got["status"], got["replacedBy"])
	}
	r := expect(t, e.do(req{method: "POST", path: "/v1/keys/" + oldID + "/roll", key: admin, body: map[string]any{"expireOldIn": "0"}}), 409)
	if r.errorCode(t) != "key_already_rolled" {
		t.Errorf("rolling twice: %s", r.body)
	}

	// Both keys work on both replicas during the grace period...
	for _, s := range []int{a.server, b.server} {
		for _, k := range []string{oldSecret, newSecret} {
			expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: k, server: s}), 200)
		}
	}
	// ...then the old one stops, on time, everywhere.
	waitUntil(t, "the old key to stop", 4*time.Second, func() bool {
		return e.do(req{method: "GET", path: "/v1/accounts", key: oldSecret, server: b.server}).status == 401
	})
	if stopped := time.Since(rolledAt); stopped < 1900*time.Millisecond || stopped > 3*time.Second {
		t.Errorf("old key stopped %s after the roll, want about 2s", stopped)
	}
	for _, s := range []int{a.server, b.server} {
		if code := e.do(req{method: "GET", path: "/v1/accounts", key: oldSecret, server: s}).errorCode(t); code != "invalid_api_key" {
			t.Errorf("old key after grace on server %d: %s", s, code)
		}
		expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: newSecret, server: s}), 200)
	}
	if got := expect(t, e.do(req{method: "GET", path: "/v1/keys/" + oldID, key: admin}), 200).json(t); got["status"] != "revoked" {
		t.Errorf("old key after grace: status %v", got["status"])
	}

	// Rolling with 0 ends the old key at once, on the other replica too.
	expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: newSecret, server: b.server}), 200)
	third := expect(t, e.do(req{method: "POST", path: "/v1/keys/" + fresh["id"].(string) + "/roll", key: admin, server: a.server,
		body: map[string]any{"expireOldIn": "0s"}}), 201).json(t)
	waitUntil(t, "the immediately rolled key to stop on replica b", time.Second, func() bool {
		return e.do(req{method: "GET", path: "/v1/accounts", key: newSecret, server: b.server}).status == 401
	})
	expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: third["secret"].(string), server: b.server}), 200)

	for _, bad := range []string{"-1s", "169h", "soon", ""} {
		r := expect(t, e.do(req{method: "POST", path: "/v1/keys/" + third["id"].(string) + "/roll", key: admin,
			body: map[string]any{"expireOldIn": bad}}), 400)
		if r.errorCode(t) != "validation_failed" {
			t.Errorf("expireOldIn %q: %s", bad, r.body)
		}
	}
	expect(t, e.do(req{method: "DELETE", path: "/v1/keys/" + third["id"].(string), key: admin}), 204)
	if r := expect(t, e.do(req{method: "POST", path: "/v1/keys/" + third["id"].(string) + "/roll", key: admin,
		body: map[string]any{"expireOldIn": "0"}}), 409); r.errorCode(t) != "key_revoked" {
		t.Errorf("rolling a revoked key: %s", r.body)
	}
}

func TestRateLimits(t *testing.T) {
	t.Parallel()
	e := setup(t)
	r := e.addReplica(auth.RateLimit{Requests: 2, Per: time.Minute})
	off := e.addReplica(noLimit)
	admin := e.key("acme")
	dflt := e.createKey(0, admin, map[string]any{"name": "default", "scopes": []string{"accounts:read"}})["secret"].(string)
	own := e.createKey(0, admin, map[string]any{"name": "own", "scopes": []string{"accounts:read"},
		"rateLimit": map[string]any{"requests": 3, "per": "1h"}})["secret"].(string)

	header := func(resp response, name string) int {
		t.Helper()
		n, err := strconv.Atoi(resp.header.Get(name))
		if err != nil {
			t.Fatalf("%s = %q on a %d answer", name, resp.header.Get(name), resp.status)
		}
		return n
	}
	for i := range 2 {
		resp := expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: dflt, server: r.server}), 200)
		if header(resp, "RateLimit-Limit") != 2 || header(resp, "RateLimit-Remaining") != 1-i || header(resp, "RateLimit-Reset") < 1 {
			t.Errorf("request %d headers: %v", i+1, resp.header)
		}
	}
	resp := expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: dflt, server: r.server}), 429)
	if resp.errorCode(t) != "rate_limited" || !strings.Contains(string(resp.body), `"type":"rate_limit_error"`) {
		t.Errorf("over the limit: %s", resp.body)
	}
	if ra := header(resp, "Retry-After"); ra < 29 || ra > 30 {
		t.Errorf("Retry-After %d, want 30 (one request per 30s)", ra)
	}
	if header(resp, "RateLimit-Remaining") != 0 || header(resp, "RateLimit-Limit") != 2 || header(resp, "RateLimit-Reset") < 59 {
		t.Errorf("429 headers: %v", resp.header)
	}
	// Every authenticated answer carries the headers, errors included.
	resp = expect(t, e.do(req{method: "GET", path: "/v1/keys", key: own, server: r.server}), 403)
	if header(resp, "RateLimit-Limit") != 3 || header(resp, "RateLimit-Remaining") != 2 {
		t.Errorf("the key's own limit should apply: %v", resp.header)
	}
	for range 2 {
		expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: own, server: r.server}), 200)
	}
	resp = expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: own, server: r.server}), 429)
	if ra := header(resp, "Retry-After"); ra < 1199 || ra > 1200 {
		t.Errorf("Retry-After %d with 3/1h, want 1200", ra)
	}
	// The limit is per replica: another one has its own buckets.
	resp = expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: own, server: off.server}), 200)
	if header(resp, "RateLimit-Remaining") != 2 {
		t.Errorf("another replica shares state: %v", resp.header)
	}
	// With the default off, keys without their own limit are not limited.
	resp = expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: dflt, server: off.server}), 200)
	if resp.header.Get("RateLimit-Limit") != "" {
		t.Errorf("RateLimit-Limit %q with no limit", resp.header.Get("RateLimit-Limit"))
	}
}

func TestKeyUsage(t *testing.T) {
	t.Parallel()
	e := setup(t)
	r := e.addReplica(noLimit)
	admin := e.key("acme")
	k := e.createKey(r.server, admin, map[string]any{"name": "worker", "scopes": []string{"accounts:read"}})
	id, secret := k["id"].(string), k["secret"].(string)

	for range 4 {
		expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: secret, server: r.server}), 200)
	}
	expect(t, e.do(req{method: "GET", path: "/v1/keys", key: secret, server: r.server}), 403) // counted too
	r.usage.JobSubmitted(id)
	r.usage.JobSubmitted(id)
	r.usage.JobSubmitted(id)

	got := expect(t, e.do(req{method: "GET", path: "/v1/keys/" + id, key: admin}), 200).json(t)
	if got["lastUsedUTC"] != nil {
		t.Errorf("usage visible before a flush: %v", got)
	}
	if err := r.usage.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got = expect(t, e.do(req{method: "GET", path: "/v1/keys/" + id, key: admin}), 200).json(t)
	u, _ := got["usage"].(map[string]any)
	today := time.Now().UTC().Format(time.DateOnly)
	days, _ := u["days"].([]any)
	if u["requests"] != 5.0 || u["jobsSubmitted"] != 3.0 || len(days) != 1 {
		t.Fatalf("usage %v; want 5 requests, 3 jobs, one day", u)
	}
	if d := days[0].(map[string]any); d["day"] != today || d["requests"] != 5.0 || d["jobsSubmitted"] != 3.0 {
		t.Errorf("day %v; want %s with 5 requests and 3 jobs", d, today)
	}
	last, err := time.Parse(time.RFC3339, fmt.Sprint(got["lastUsedUTC"]))
	if err != nil || time.Since(last) > time.Minute {
		t.Errorf("lastUsedUTC %v", got["lastUsedUTC"])
	}
	for _, l := range expect(t, e.do(req{method: "GET", path: "/v1/keys", key: admin}), 200).json(t)["data"].([]any) {
		if l := l.(map[string]any); l["id"] == id && l["lastUsedUTC"] == nil {
			t.Error("the list lacks lastUsedUTC")
		}
	}
}
