package api_test

import (
	"bytes"
	"context"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/tenant"
)

var (
	future  = time.Now().Add(time.Hour).Truncate(time.Second)
	farOut  = time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second)
	theEdge = "2006-01-02T15:04:05.000Z"
)

func TestRegisterAccount(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	cookie := ltCookie("Ann@Example.com", future, farOut)

	r := expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: key,
		body: map[string]any{"cookie": cookie, "maxJobs": 7}}), 200)
	a := r.json(t)

	if a["email"] != "ann@example.com" {
		t.Errorf("email = %v, want the lower-cased token claim", a["email"])
	}
	if a["maxJobs"] != 7.0 || a["status"] != "active" || a["running"] != 0.0 || a["enabled"] != true {
		t.Errorf("unexpected account fields: %s", r.body)
	}
	ck, _ := a["cookie"].(map[string]any)
	if ck["lt_token"] != "…secured…" || ck["lt_refresh_token"] != "…secured…" || ck["theme"] != "dark" || ck["lt_id"] == nil {
		t.Errorf("cookie not masked as expected: %v", ck)
	}
	if a["tokenExpire"] != float64(future.UnixMilli()) || a["tokenExpireUTC"] != future.UTC().Format(theEdge) {
		t.Errorf("tokenExpire = %v / %v, want %d", a["tokenExpire"], a["tokenExpireUTC"], future.UnixMilli())
	}
	if a["refreshTokenExpire"] != float64(farOut.UnixMilli()) {
		t.Errorf("refreshTokenExpire = %v, want %d", a["refreshTokenExpire"], farOut.UnixMilli())
	}
	if _, err := time.Parse(theEdge, a["updatedUTC"].(string)); err != nil {
		t.Errorf("updatedUTC %v: %v", a["updatedUTC"], err)
	}

	// No token value anywhere in the response, the table or the logs.
	token := between(cookie, "lt_token=", ";")
	refresh := between(cookie, "lt_refresh_token=", ";")
	var raw []byte
	if err := e.pool.QueryRow(context.Background(), `SELECT cookie FROM accounts`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var dump string
	e.pool.QueryRow(context.Background(), `SELECT string_agg(a::text, '|') FROM accounts a`).Scan(&dump)
	for _, where := range []struct{ name, text string }{
		{"response", string(r.body)}, {"cookie column", string(raw)}, {"table dump", dump}, {"logs", e.logs.String()},
	} {
		for _, s := range []string{token, refresh, token[len(token)-20:]} {
			if strings.Contains(where.text, s) {
				t.Errorf("%s contains a token value", where.name)
			}
		}
	}
}

func between(s, from, to string) string {
	_, rest, _ := strings.Cut(s, from)
	v, _, _ := strings.Cut(rest, to)
	return v
}

func TestRegisterAccountUpsert(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	post := func(body map[string]any) map[string]any {
		return expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: key, body: body}), 200).json(t)
	}
	first := post(map[string]any{"cookie": ltCookie("a@x.io", future, farOut)})
	if first["maxJobs"] != 20.0 {
		t.Fatalf("default maxJobs = %v, want 20", first["maxJobs"])
	}
	post(map[string]any{"cookie": ltCookie("a@x.io", future, farOut), "maxJobs": 5})
	later := future.Add(time.Hour)
	third := post(map[string]any{"cookie": ltCookie("a@x.io", later, farOut)})
	if third["maxJobs"] != 5.0 {
		t.Errorf("re-registering without maxJobs changed it to %v; want the kept 5", third["maxJobs"])
	}
	if third["tokenExpire"] != float64(later.UnixMilli()) {
		t.Errorf("tokenExpire not updated by re-registration: %v", third["tokenExpire"])
	}
	var n int
	e.pool.QueryRow(context.Background(), `SELECT count(*) FROM accounts`).Scan(&n)
	if n != 1 {
		t.Errorf("%d account rows after three registrations of one email, want 1", n)
	}
}

func TestRegisterAccountForms(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")

	t.Run("multipart", func(t *testing.T) {
		var buf bytes.Buffer
		w := multipart.NewWriter(&buf)
		w.WriteField("cookie", ltCookie("m@x.io", future, farOut))
		w.WriteField("maxJobs", "3")
		w.Close()
		r := expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: key, body: buf.Bytes(),
			header: map[string]string{"Content-Type": w.FormDataContentType()}}), 200).json(t)
		if r["email"] != "m@x.io" || r["maxJobs"] != 3.0 {
			t.Errorf("multipart registration gave %v", r)
		}
	})
	t.Run("urlencoded", func(t *testing.T) {
		form := url.Values{"cookie": {ltCookie("u@x.io", future, farOut)}, "maxJobs": {"4"}}
		r := expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: key, body: form.Encode(),
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}), 200).json(t)
		if r["email"] != "u@x.io" || r["maxJobs"] != 4.0 {
			t.Errorf("urlencoded registration gave %v", r)
		}
	})
	t.Run("form with bad maxJobs", func(t *testing.T) {
		form := url.Values{"cookie": {ltCookie("u@x.io", future, farOut)}, "maxJobs": {"many"}}
		r := expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: key, body: form.Encode(),
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}), 400)
		if r.errorCode(t) != "validation_failed" || !strings.Contains(string(r.body), "maxJobs") {
			t.Errorf("got %s", r.body)
		}
	})
}

func TestRegisterAccountRejects(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	good := ltCookie("a@x.io", future, farOut)
	noEmail := "lt_token=" + jwt(map[string]any{"exp": future.Unix()}) + "; lt_refresh_token=opaque-refresh"

	cases := []struct {
		name, body, code, mention string
		status                    int
	}{
		{"missing both tokens", `{"cookie":"lt_id=1"}`, "missing_cookie_fields", "Missing required cookie fields: lt_token | lt_refresh_token", 400},
		{"missing refresh", `{"cookie":"lt_id=1; lt_token=` + jwt(map[string]any{"email": "a@x.io"}) + `"}`, "missing_cookie_fields", "Missing required cookie fields: lt_refresh_token", 400},
		{"missing token", `{"cookie":"lt_refresh_token=abc"}`, "missing_cookie_fields", "Missing required cookie fields: lt_token", 400},
		{"malformed token", `{"cookie":"lt_token=not-a-jwt; lt_refresh_token=abc"}`, "malformed_token", "lt_token", 400},
		{"no cookie", `{"maxJobs":3}`, "validation_failed", "cookie", 400},
		{"maxJobs zero", fmt.Sprintf(`{"cookie":%q,"maxJobs":0}`, good), "validation_failed", "maxJobs", 400},
		{"maxJobs too big", fmt.Sprintf(`{"cookie":%q,"maxJobs":101}`, good), "validation_failed", "maxJobs", 400},
		{"maxJobs fractional", fmt.Sprintf(`{"cookie":%q,"maxJobs":2.5}`, good), "validation_failed", "maxJobs", 400},
		{"maxJobs string", fmt.Sprintf(`{"cookie":%q,"maxJobs":"5"}`, good), "validation_failed", "maxJobs", 400},
		{"unknown field", fmt.Sprintf(`{"cookie":%q,"maxjobs":5}`, good), "validation_failed", "maxjobs", 400},
		{"no email anywhere", fmt.Sprintf(`{"cookie":%q}`, noEmail), "email_required", "email", 400},
		{"bad email", fmt.Sprintf(`{"cookie":%q,"email":"nope"}`, noEmail), "validation_failed", "email", 400},
		{"email mismatch", fmt.Sprintf(`{"cookie":%q,"email":"b@x.io"}`, good), "email_mismatch", "b@x.io", 400},
		{"malformed json", `{"cookie":`, "malformed_json", "JSON", 400},
		{"not an object", `[1,2]`, "malformed_json", "object", 400},
		{"two objects", fmt.Sprintf(`{"cookie":%q}{}`, good), "malformed_json", "one JSON object", 400},
		{"empty body", ``, "empty_body", "empty", 400},
		{"cookie with control character", `{"cookie":"lt_token=a\u0001b; lt_refresh_token=x"}`, "invalid_cookie", "cookie", 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: key, body: c.body}), c.status)
			if got := r.errorCode(t); got != c.code {
				t.Errorf("code = %s, want %s (%s)", got, c.code, r.body)
			}
			if !strings.Contains(string(r.body), c.mention) {
				t.Errorf("error does not mention %q: %s", c.mention, r.body)
			}
		})
	}
	t.Run("with email from body", func(t *testing.T) {
		r := expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: key,
			body: map[string]any{"cookie": noEmail, "email": " Bob@X.io "}}), 200).json(t)
		if r["email"] != "bob@x.io" || r["refreshTokenExpire"] != nil {
			t.Errorf("got email %v, refreshTokenExpire %v; want bob@x.io and null for an opaque refresh token", r["email"], r["refreshTokenExpire"])
		}
	})
	var n int
	e.pool.QueryRow(context.Background(), `SELECT count(*) FROM accounts`).Scan(&n)
	if n != 1 {
		t.Errorf("%d accounts stored; only the one valid registration should be", n)
	}
}

func TestRegisterExpiredTokenIsFlagged(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	r := expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: key,
		body: map[string]any{"cookie": ltCookie("old@x.io", time.Now().Add(-time.Minute), farOut)}}), 200).json(t)
	if r["status"] != "refreshing" || r["error"] == nil {
		t.Errorf("expired lt_token: status %v error %v; want refreshing with a reason", r["status"], r["error"])
	}
	r = expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: key,
		body: map[string]any{"cookie": ltCookie("dead@x.io", time.Now().Add(-time.Hour), time.Now().Add(-time.Minute))}}), 200).json(t)
	if r["status"] != "expired" {
		t.Errorf("expired refresh token: status %v, want expired", r["status"])
	}
}

func TestAccountCRUD(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	for _, email := range []string{"b@x.io", "a@x.io"} {
		expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: key,
			body: map[string]any{"cookie": ltCookie(email, future, farOut)}}), 200)
	}

	list := expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: key}), 200).json(t)
	if len(list) != 2 || list["a@x.io"] == nil || list["b@x.io"] == nil {
		t.Fatalf("list = %v, want both accounts keyed by email", list)
	}
	if list["a@x.io"].(map[string]any)["cookie"].(map[string]any)["lt_token"] != "…secured…" {
		t.Error("list shows an unmasked lt_token")
	}

	got := expect(t, e.do(req{method: "GET", path: "/v1/accounts/A@X.io", key: key}), 200).json(t)
	if got["email"] != "a@x.io" {
		t.Errorf("get by mixed-case email returned %v", got["email"])
	}

	p := expect(t, e.do(req{method: "PATCH", path: "/v1/accounts/a@x.io", key: key,
		body: map[string]any{"maxJobs": 2, "enabled": false}}), 200).json(t)
	if p["maxJobs"] != 2.0 || p["enabled"] != false || p["status"] != "disabled" {
		t.Errorf("patch gave %v", p)
	}
	for _, bad := range []struct{ body, code string }{
		{`{}`, "empty_update"},
		{`{"maxJobs":0}`, "validation_failed"},
		{`{"enabled":"yes"}`, "validation_failed"},
		{`{"email":"c@x.io"}`, "validation_failed"},
	} {
		r := expect(t, e.do(req{method: "PATCH", path: "/v1/accounts/a@x.io", key: key, body: bad.body}), 400)
		if r.errorCode(t) != bad.code {
			t.Errorf("PATCH %s: code %s, want %s", bad.body, r.errorCode(t), bad.code)
		}
	}

	expect(t, e.do(req{method: "DELETE", path: "/v1/accounts/a@x.io", key: key}), 204)
	for _, m := range []string{"GET", "DELETE"} {
		r := expect(t, e.do(req{method: m, path: "/v1/accounts/a@x.io", key: key}), 404)
		if r.errorCode(t) != "account_not_found" {
			t.Errorf("%s after delete: %s", m, r.body)
		}
	}
	r := expect(t, e.do(req{method: "PATCH", path: "/v1/accounts/a@x.io", key: key, body: `{"maxJobs":3}`}), 404)
	if r.errorCode(t) != "account_not_found" {
		t.Errorf("PATCH after delete: %s", r.body)
	}
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	e := setup(t)
	acme, other := e.key("acme"), e.key("other")
	acmeTest := e.keyMode("acme", tenant.Test)
	expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: acme,
		body: map[string]any{"cookie": ltCookie("a@x.io", future, farOut)}}), 200)

	for name, k := range map[string]string{"other tenant": other, "same tenant, test mode": acmeTest} {
		t.Run(name, func(t *testing.T) {
			if l := expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: k}), 200).json(t); len(l) != 0 {
				t.Errorf("sees %d accounts of another pool", len(l))
			}
			for _, r := range []req{
				{method: "GET", path: "/v1/accounts/a@x.io"},
				{method: "PATCH", path: "/v1/accounts/a@x.io", body: `{"maxJobs":1}`},
				{method: "DELETE", path: "/v1/accounts/a@x.io"},
			} {
				r.key = k
				resp := expect(t, e.do(r), 404)
				if resp.errorCode(t) != "account_not_found" {
					t.Errorf("%s: %s", r.method, resp.body)
				}
			}
			// Registering the same email makes a separate account.
			expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: k,
				body: map[string]any{"cookie": ltCookie("a@x.io", future, farOut), "maxJobs": 1}}), 200)
		})
	}
	a := expect(t, e.do(req{method: "GET", path: "/v1/accounts/a@x.io", key: acme}), 200).json(t)
	if a["maxJobs"] != 20.0 {
		t.Errorf("another pool's writes changed acme's account: maxJobs %v", a["maxJobs"])
	}
}

func TestConcurrentRegistrationAcrossReplicas(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.addServer()
	e.addServer()
	key := e.key("acme")
	const n = 30
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Go(func() {
			r := e.do(req{method: "POST", path: "/v1/accounts", key: key, server: i % 3,
				body: map[string]any{"cookie": ltCookie(fmt.Sprintf("u%d@x.io", i%3), future, farOut), "maxJobs": 1 + i%5}})
			statuses[i] = r.status
		})
	}
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Errorf("registration %d: status %d", i, s)
		}
	}
	var rows int
	e.pool.QueryRow(context.Background(), `SELECT count(*) FROM accounts`).Scan(&rows)
	if rows != 3 {
		t.Errorf("%d rows for 3 emails registered 30 times concurrently", rows)
	}
}

func TestScopes(t *testing.T) {
	t.Parallel()
	e := setup(t)
	reader := e.key("acme", auth.ScopeAccountsRead)
	expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: reader}), 200)
	r := expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: reader,
		body: map[string]any{"cookie": ltCookie("a@x.io", future, farOut)}}), 403)
	if r.errorCode(t) != "insufficient_scope" || !strings.Contains(string(r.body), "accounts:write") {
		t.Errorf("got %s; want insufficient_scope naming accounts:write", r.body)
	}
	jobsOnly := e.key("acme", auth.ScopeJobsWrite)
	expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: jobsOnly}), 403)
}
