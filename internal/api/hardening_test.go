package api_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/tenant"
)

// TestBadInputNeverGets5xx drives the bytes Postgres refuses (NUL, invalid
// UTF-8, numbers beyond any float) through every place a client can put
// them. Each must be a 4xx in the envelope, never "retry shortly".
func TestBadInputNeverGets5xx(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	nulEmail := ltCookie("a\u0000b@x.io", time.Now().Add(time.Hour), time.Now().Add(30*24*time.Hour))
	badUTF8Email := ltCookie("a\xffb@x.io", time.Now().Add(time.Hour), time.Now().Add(30*24*time.Hour))
	longEmail := ltCookie(strings.Repeat("a", 250)+"@x.io", time.Now().Add(time.Hour), time.Now().Add(30*24*time.Hour))
	cases := []struct {
		name   string
		r      req
		status int
		code   string
	}{
		{"job id NUL", req{method: "GET", path: "/v1/jobs/%00"}, 400, "invalid_characters"},
		{"job id invalid UTF-8", req{method: "GET", path: "/v1/jobs/%ff"}, 400, "invalid_characters"},
		{"cancel job id NUL", req{method: "DELETE", path: "/v1/jobs/%00"}, 400, "invalid_characters"},
		{"account NUL", req{method: "GET", path: "/v1/accounts/%00"}, 400, "invalid_characters"},
		{"account invalid UTF-8", req{method: "GET", path: "/v1/accounts/a%ffb"}, 400, "invalid_characters"},
		{"key id NUL", req{method: "GET", path: "/v1/keys/%00"}, 400, "invalid_characters"},
		{"roll key id NUL", req{method: "POST", path: "/v1/keys/%00/roll", body: `{"expireOldIn":"0"}`}, 400, "invalid_characters"},
		{"alert id NUL", req{method: "POST", path: "/v1/alerts/%00/ack"}, 400, "invalid_characters"},
		{"job cursor NUL", req{method: "GET", path: "/v1/jobs?cursor=%00"}, 400, "invalid_characters"},
		{"job cursor invalid UTF-8", req{method: "GET", path: "/v1/jobs?cursor=%ff"}, 400, "invalid_characters"},
		{"alert cursor invalid UTF-8", req{method: "GET", path: "/v1/alerts?cursor=%ff"}, 400, "invalid_characters"},
		{"state NUL", req{method: "GET", path: "/v1/jobs?state=%00"}, 400, "invalid_characters"},
		{"key name NUL", req{method: "POST", path: "/v1/keys", body: `{"name":"a\u0000b"}`}, 400, "validation_failed"},
		{"replyRef NUL", req{method: "POST", path: "/v1/jobs", body: `{"type":"video","replyRef":"a\u0000b"}`}, 400, "validation_failed"},
		{"email NUL", req{method: "POST", path: "/v1/jobs", body: `{"type":"video","email":"a\u0000b@x.io"}`}, 400, "validation_failed"},
		{"number beyond range", req{method: "POST", path: "/v1/jobs", body: `{"type":"video","params":{"n":1e400000}}`}, 400, "validation_failed"},
		{"negative number beyond range", req{method: "POST", path: "/v1/jobs", body: `{"type":"video","params":{"a":[{"n":-1e309}]}}`}, 400, "validation_failed"},
		{"alert config url NUL", req{method: "PUT", path: "/v1/alerts/config", body: `{"url":"https://x.io/\u0000"}`}, 400, "validation_failed"},
		{"JWT email claim NUL", req{method: "POST", path: "/v1/accounts", body: map[string]any{"cookie": nulEmail}}, 400, "invalid_token_email"},
		{"JWT email claim invalid UTF-8", req{method: "POST", path: "/v1/accounts", body: map[string]any{"cookie": badUTF8Email}}, 400, "invalid_token_email"},
		{"JWT email claim too long", req{method: "POST", path: "/v1/accounts", body: map[string]any{"cookie": longEmail}}, 400, "invalid_token_email"},
		{"Idempotency-Key invalid UTF-8", req{method: "POST", path: "/v1/jobs", body: `{"type":"video"}`,
			header: map[string]string{"Idempotency-Key": "k\xff"}}, 400, "invalid_idempotency_key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.r.key = key
			r := e.do(c.r)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			if got := r.errorCode(t); got != c.code {
				t.Errorf("code %s, want %s: %s", got, c.code, r.body)
			}
		})
	}
}

// TestEmptyAlertConfigRemovesIt: every spelling of "no destination" used
// to delete the row and then answer 500.
func TestEmptyAlertConfigRemovesIt(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	for _, body := range []string{`{"url":""}`, `{}`, `null`} {
		expect(t, e.do(req{method: "PUT", path: "/v1/alerts/config", key: key, body: `{"url":"https://hooks.example.com/a"}`}), 200)
		r := expect(t, e.do(req{method: "PUT", path: "/v1/alerts/config", key: key, body: body}), 200)
		if got := r.json(t)["url"]; got != "" {
			t.Errorf("%s: url %v after removal", body, got)
		}
		if got := expect(t, e.do(req{method: "GET", path: "/v1/alerts/config", key: key}), 200).json(t)["url"]; got != "" {
			t.Errorf("%s: config still set: %v", body, got)
		}
	}
}

// TestGarbageCursorIs400: a cursor no page gave out used to answer an empty
// page (jobs: looks like the end) or the first page (alerts: a loop).
func TestGarbageCursorIs400(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key, body: `{"type":"video"}`}), 202)
	for _, path := range []string{"/v1/jobs?cursor=zzz", "/v1/jobs?cursor=job_ZZZZZZZZZZZZZZZZZZZZZZZZZZ",
		"/v1/alerts?cursor=zzz", "/v1/alerts?cursor=job_01ARZ3NDEKTSV4RRFFQ69G5FAV"} {
		r := expect(t, e.do(req{method: "GET", path: path, key: key}), 400)
		if c := r.errorCode(t); c != "invalid_cursor" {
			t.Errorf("%s: code %s", path, c)
		}
	}
	// A real cursor still pages.
	expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key, body: `{"type":"video"}`}), 202)
	page := expect(t, e.do(req{method: "GET", path: "/v1/jobs?limit=1", key: key}), 200).json(t)
	next, _ := page["nextCursor"].(string)
	if next == "" {
		t.Fatalf("no nextCursor: %v", page)
	}
	rest := expect(t, e.do(req{method: "GET", path: "/v1/jobs?limit=1&cursor=" + next, key: key}), 200).json(t)
	if n := len(rest["data"].([]any)); n != 1 {
		t.Errorf("second page has %d jobs", n)
	}
}

// TestPercentEncodedEmailInPath: clients escape "@" as %40; both spellings
// name the same account.
func TestPercentEncodedEmailInPath(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	e.addSimAccount(key, "alice@a.example", 2)
	for _, p := range []string{"alice@a.example", "alice%40a.example", "ALICE%40A.example"} {
		r := expect(t, e.do(req{method: "GET", path: "/v1/accounts/" + p, key: key}), 200).json(t)
		if r["email"] != "alice@a.example" {
			t.Errorf("%s: %v", p, r["email"])
		}
	}
	expect(t, e.do(req{method: "PATCH", path: "/v1/accounts/alice%40a.example", key: key, body: `{"maxJobs":3}`}), 200)
	expect(t, e.do(req{method: "DELETE", path: "/v1/accounts/alice%40a.example", key: key}), 204)
}

// TestSilentDefaultsAreRefused: explicit zeroes, empty scope lists, names
// with control characters and repeated single headers used to be taken in
// silence, each meaning something the client did not say.
func TestSilentDefaultsAreRefused(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	cases := []struct {
		name, path, body, field string
	}{
		{"maxAttempts 0", "/v1/jobs", `{"type":"video","maxAttempts":0}`, "maxAttempts"},
		{"duration 0", "/v1/videos/create", `{"prompt":"x","duration":0}`, "duration"},
		{"empty scopes", "/v1/keys", `{"name":"k","scopes":[]}`, "scopes"},
		{"name with newline", "/v1/keys", `{"name":"a\nb"}`, "name"},
		{"name with escape", "/v1/keys", `{"name":"a\u001b[31mb"}`, "name"},
		{"blank name", "/v1/keys", `{"name":"   "}`, "name"},
		{"name of 101 characters", "/v1/keys", `{"name":"` + strings.Repeat("é", 101) + `"}`, "name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := expect(t, e.do(req{method: "POST", path: c.path, key: key, body: c.body}), 400)
			if code := r.errorCode(t); code != "validation_failed" || !strings.Contains(string(r.body), `"field":"`+c.field+`"`) {
				t.Errorf("code %s: %s", code, r.body)
			}
		})
	}
	// 100 two-byte characters are 100 characters, not 200.
	expect(t, e.do(req{method: "POST", path: "/v1/keys", key: key, body: `{"name":"` + strings.Repeat("é", 100) + `"}`}), 201)

	for _, h := range []string{"Authorization", "Idempotency-Key"} {
		t.Run("two "+h+" headers", func(t *testing.T) {
			hr, _ := http.NewRequest("POST", e.urls[0]+"/v1/jobs", strings.NewReader(`{"type":"video"}`))
			hr.Header.Set("Authorization", "Bearer "+key)
			hr.Header.Set("Idempotency-Key", "one")
			hr.Header.Add(h, map[string]string{"Authorization": "Bearer " + e.key("other"), "Idempotency-Key": "two"}[h])
			resp, err := http.DefaultClient.Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			r := response{status: resp.StatusCode, header: resp.Header, body: body}
			expect(t, r, 400)
			if c := r.errorCode(t); c != "duplicate_header" {
				t.Errorf("code %s", c)
			}
		})
	}
}

// TestAuthBeforeBody: a client that announces a body and never sends it
// gets its 401 at once, not after the server gave up reading the body.
func TestAuthBeforeBody(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, c := range []struct{ name, auth string }{
		{"no key", ""},
		{"forged key", "Authorization: Bearer pgk_live_AAAAAAAAAAAAAAAAAAAAAAAAaaaaaa\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", strings.TrimPrefix(e.urls[0], "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%sContent-Length: 10\r\n\r\n", c.auth)
			conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer within 3s: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			r := expect(t, response{status: resp.StatusCode, header: resp.Header, body: body}, 401)
			r.errorCode(t)
		})
	}
}

// TestChildKeyCannotOutliveOrOutrateItsParent: a key expiring in an hour
// used to mint a key with no expiry, and a key allowed 2 requests a day one
// allowed a million a second.
func TestChildKeyCannotOutliveOrOutrateItsParent(t *testing.T) {
	t.Parallel()
	e := setup(t)
	admin := e.key("acme")
	hour := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	parent := e.createKey(0, admin, map[string]any{"name": "parent", "expiresAt": hour.Format(time.RFC3339),
		"rateLimit": map[string]any{"requests": 20, "per": "24h"}})["secret"].(string)

	child := e.createKey(0, parent, map[string]any{"name": "inherits"})
	if child["expiresUTC"] == nil || child["rateLimit"] == nil {
		t.Fatalf("a child without settings must take its parent's: %v", child)
	}
	if got, _ := time.Parse(time.RFC3339, child["expiresUTC"].(string)); got.After(hour) {
		t.Errorf("child expires %v, after its parent's %v", got, hour)
	}
	if rl := child["rateLimit"].(map[string]any); rl["requests"] != 20.0 || rl["per"] != "24h" {
		t.Errorf("child rate limit %v", rl)
	}
	e.createKey(0, parent, map[string]any{"name": "slower", "expiresAt": hour.Add(-time.Minute).Format(time.RFC3339),
		"rateLimit": map[string]any{"requests": 1, "per": "24h"}})

	for _, c := range []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"later expiry", map[string]any{"name": "k", "expiresAt": hour.Add(time.Minute).Format(time.RFC3339)}, "expiresAt"},
		{"faster rate", map[string]any{"name": "k", "rateLimit": map[string]any{"requests": 1000000, "per": "1s"}}, "rateLimit"},
		{"same burst, shorter period", map[string]any{"name": "k", "rateLimit": map[string]any{"requests": 20, "per": "1h"}}, "rateLimit"},
		{"bigger burst, same rate", map[string]any{"name": "k", "rateLimit": map[string]any{"requests": 40, "per": "48h"}}, "rateLimit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := expect(t, e.do(req{method: "POST", path: "/v1/keys", key: parent, body: c.body}), 403)
			if code := r.errorCode(t); code != "exceeds_caller_key" || !strings.Contains(string(r.body), `"field":"`+c.field+`"`) {
				t.Errorf("code %s: %s", code, r.body)
			}
		})
	}
	// Rolling a longer-lived key with the short-lived one is giving out more too.
	long := e.createKey(0, admin, map[string]any{"name": "long"})["id"].(string)
	r := e.do(req{method: "POST", path: "/v1/keys/" + long + "/roll", key: parent, body: map[string]any{"expireOldIn": "0"}})
	if r.status == 201 {
		if exp, _ := r.json(t)["expiresUTC"].(string); exp == "" {
			t.Errorf("roll by a short-lived key made a key that never expires: %s", r.body)
		}
	}
}

// TestParamsAndPagesAreBounded: params used to be limited only by the 1 MiB
// body, and a page of 500 such jobs held half a gigabyte.
func TestParamsAndPagesAreBounded(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	params := func(n int) string { return `{"type":"video","params":{"p":"` + strings.Repeat("x", n) + `"}}` }
	r := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key, body: params(64 << 10)}), 400)
	if r.errorCode(t) != "validation_failed" || !strings.Contains(string(r.body), `"field":"params"`) {
		t.Errorf("64 KiB + 8 bytes of params: %s", r.body)
	}
	const n = 24 // 24 × 60 KiB > the 1 MiB page budget
	for range n {
		expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key, body: params(60 << 10)}), 202)
	}
	seen, pages, cursor := 0, 0, ""
	for {
		path := "/v1/jobs?limit=500"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := expect(t, e.do(req{method: "GET", path: path, key: key}), 200)
		if len(r.body) > 1<<20+64<<10 {
			t.Errorf("page of %d bytes", len(r.body))
		}
		page := r.json(t)
		seen += len(page["data"].([]any))
		pages++
		next, _ := page["nextCursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if seen != n || pages < 2 {
		t.Errorf("saw %d jobs in %d pages, want %d in at least 2", seen, pages, n)
	}
}

// TestTestKeyCannotTouchLiveAlertConfig is item 1 over HTTP.
func TestTestKeyCannotTouchLiveAlertConfig(t *testing.T) {
	t.Parallel()
	e := setup(t)
	live, test := e.key("acme"), e.keyMode("acme", tenant.Test)
	expect(t, e.do(req{method: "PUT", path: "/v1/alerts/config", key: live, body: `{"url":"https://live.example/hook"}`}), 200)
	if got := expect(t, e.do(req{method: "GET", path: "/v1/alerts/config", key: test}), 200).json(t)["url"]; got != "" {
		t.Errorf("a test key reads the live destination %v", got)
	}
	expect(t, e.do(req{method: "PUT", path: "/v1/alerts/config", key: test, body: `{"url":"https://test.example/hook"}`}), 200)
	expect(t, e.do(req{method: "PUT", path: "/v1/alerts/config", key: test, body: `{}`}), 200)
	if got := expect(t, e.do(req{method: "GET", path: "/v1/alerts/config", key: live}), 200).json(t)["url"]; got != "https://live.example/hook" {
		t.Errorf("a test key changed the live destination to %v", got)
	}
}

// TestUndecryptableCookieBreaksOnlyItsAccount: one row sealed under another
// key (or swapped with another row) used to make the whole list a 500, and
// a job placed on it held the slot until its lease lapsed.
func TestUndecryptableCookieBreaksOnlyItsAccount(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	e.addSimAccount(key, "good@x.io", 2)
	e.addSimAccount(key, "bad@x.io", 2)
	// Swap the sealed cookies: each is bound to its own row, so neither opens.
	e.addSimAccount(key, "other@x.io", 2)
	if _, err := e.pool.Exec(t.Context(), `UPDATE accounts SET cookie = (SELECT cookie FROM accounts WHERE email = 'other@x.io') WHERE email = 'bad@x.io'`); err != nil {
		t.Fatal(err)
	}
	expect(t, e.do(req{method: "DELETE", path: "/v1/accounts/other@x.io", key: key}), 204)

	list := expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: key}), 200).json(t)
	bad, _ := list["bad@x.io"].(map[string]any)
	if bad == nil || bad["status"] != "error" || !strings.Contains(fmt.Sprint(bad["error"]), "decrypt") {
		t.Fatalf("bad account in the list: %v", bad)
	}
	if good, _ := list["good@x.io"].(map[string]any); good == nil || good["status"] != "active" {
		t.Errorf("good account in the list: %v", list["good@x.io"])
	}
	expect(t, e.do(req{method: "GET", path: "/v1/accounts/bad@x.io", key: key}), 200)

	// With only the bad account enabled, a job placed on it goes back to
	// the queue at once and the account leaves rotation.
	expect(t, e.do(req{method: "PATCH", path: "/v1/accounts/good@x.io", key: key, body: `{"enabled":false}`}), 200)
	job := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key, body: `{"type":"video"}`}), 202).json(t)["id"].(string)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var status string
		var running int
		e.pool.QueryRow(t.Context(), `SELECT a.status, s.held FROM accounts a JOIN account_slots s USING (tenant_id, id) WHERE a.email = 'bad@x.io'`).Scan(&status, &running)
		if status == "error" && running == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bad account still %s with %d running after 5s", status, running)
		}
		time.Sleep(50 * time.Millisecond)
	}
	expect(t, e.do(req{method: "PATCH", path: "/v1/accounts/good@x.io", key: key, body: `{"enabled":true}`}), 200)
	done := expect(t, e.do(req{method: "GET", path: "/v1/jobs/" + job + "?wait=20s", key: key}), 200).json(t)
	if done["state"] != "succeeded" || done["email"] != "good@x.io" {
		t.Errorf("job after the bad account: %v", done)
	}
}

// TestExpiringAccountWarnsWithoutError: an account that still takes jobs
// used to carry its expiry notice in error, which useapi clients read as a
// broken account.
func TestExpiringAccountWarnsWithoutError(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	cookie := ltCookie("soon@x.io", time.Now().Add(time.Hour), time.Now().Add(2*24*time.Hour))
	a := expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: key, body: map[string]any{"cookie": cookie}}), 200).json(t)
	if a["status"] != "expiring" || a["error"] != nil || !strings.Contains(fmt.Sprint(a["warning"]), "lt_refresh_token expires") {
		t.Errorf("expiring account: status %v, error %v, warning %v", a["status"], a["error"], a["warning"])
	}
	expect(t, e.do(req{method: "PATCH", path: "/v1/accounts/soon@x.io", key: key, body: `{"enabled":false}`}), 200)
	a = expect(t, e.do(req{method: "GET", path: "/v1/accounts/soon@x.io", key: key}), 200).json(t)
	if a["status"] != "disabled" || a["error"] == nil || a["warning"] != nil {
		t.Errorf("disabled account: status %v, error %v, warning %v", a["status"], a["error"], a["warning"])
	}
}

// TestWebhookSecretReadAndRotate: receivers need the secret to verify, and
// a way to change it without dropping deliveries.
func TestWebhookSecretReadAndRotate(t *testing.T) {
	t.Parallel()
	e := setup(t)
	admin := e.key("acme")
	r := expect(t, e.do(req{method: "GET", path: "/v1/webhooks/secret", key: admin}), 200)
	if r.header.Get("Cache-Control") != "no-store" {
		t.Error("secret answer may be cached")
	}
	first := r.json(t)
	old, _ := first["secret"].(string)
	if !strings.HasPrefix(old, "whsec_") || first["previousExpiresUTC"] != nil {
		t.Fatalf("secret: %s", r.body)
	}
	rot := expect(t, e.do(req{method: "POST", path: "/v1/webhooks/secret/rotate", key: admin, body: `{"expireOldIn":"24h"}`}), 200).json(t)
	if rot["secret"] == old || rot["previousExpiresUTC"] == nil {
		t.Fatalf("rotate: %v", rot)
	}
	if got := expect(t, e.do(req{method: "GET", path: "/v1/webhooks/secret", key: admin}), 200).json(t); got["secret"] != rot["secret"] {
		t.Errorf("after rotation GET shows %v", got["secret"])
	}

	for _, c := range []struct {
		name   string
		r      req
		status int
		code   string
	}{
		{"test key reads", req{method: "GET", path: "/v1/webhooks/secret", key: e.keyMode("acme", tenant.Test)}, 403, "mode_not_allowed"},
		{"test key rotates", req{method: "POST", path: "/v1/webhooks/secret/rotate", key: e.keyMode("acme", tenant.Test), body: `{"expireOldIn":"0"}`}, 403, "mode_not_allowed"},
		{"no admin scope", req{method: "GET", path: "/v1/webhooks/secret", key: e.key("acme", "jobs:read")}, 403, "insufficient_scope"},
		{"grace too long", req{method: "POST", path: "/v1/webhooks/secret/rotate", key: admin, body: `{"expireOldIn":"169h"}`}, 400, "validation_failed"},
		{"grace missing", req{method: "POST", path: "/v1/webhooks/secret/rotate", key: admin, body: `{}`}, 400, "validation_failed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if code := expect(t, e.do(c.r), c.status).errorCode(t); code != c.code {
				t.Errorf("code %s, want %s", code, c.code)
			}
		})
	}
	// Another tenant has another secret.
	if other := expect(t, e.do(req{method: "GET", path: "/v1/webhooks/secret", key: e.key("other")}), 200).json(t); other["secret"] == rot["secret"] {
		t.Error("two tenants share a secret")
	}
}

// TestLargeHeadersGetTheEnvelope: net/http's own 431 is bare text; below
// its limit, poolgate answers oversized headers in the envelope.
func TestLargeHeadersGetTheEnvelope(t *testing.T) {
	t.Parallel()
	e := setup(t)
	r := expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: e.key("acme"),
		header: map[string]string{"X-Padding": strings.Repeat("a", 40<<10)}}), 431)
	if c := r.errorCode(t); c != "headers_too_large" {
		t.Errorf("code %s", c)
	}
}
