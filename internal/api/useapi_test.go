package api_test

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/tenant"
)

// useapiFields are the account fields useapi.net documents for
// POST/GET /v1/ltxstudio/accounts (its TypeScript model and its POST
// example), error aside: it appears only on an account that is out of
// rotation.
var useapiFields = []string{
	"cookie", "email", "maxJobs", "refreshTokenExpire", "refreshTokenExpireUTC",
	"tokenExpire", "tokenExpireUTC", "updated", "updatedUTC",
}

// keysOf returns m's keys, sorted.
func keysOf(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// checkUseapiAccount fails unless a is useapi's account model for email:
// exactly the seed's field names, the cookie an object with the secrets
// secured.
func checkUseapiAccount(t *testing.T, a map[string]any, email string, want []string) {
	t.Helper()
	if got := keysOf(a); !slices.Equal(got, want) {
		t.Errorf("account fields %v, want useapi's %v", got, want)
	}
	if a["email"] != email {
		t.Errorf("email %v, want %s", a["email"], email)
	}
	ck, ok := a["cookie"].(map[string]any)
	if !ok {
		t.Fatalf("cookie is %T, want an object as useapi returns it", a["cookie"])
	}
	if ck["lt_token"] != "…secured…" || ck["lt_refresh_token"] != "…secured…" {
		t.Errorf("cookie secrets not secured: %v", ck)
	}
	if id, _ := ck["lt_id"].(string); id == "" || id == "…secured…" {
		t.Errorf("cookie lt_id = %v, want the value, as useapi shows it", ck["lt_id"])
	}
	for _, f := range []string{"updatedUTC", "tokenExpireUTC", "refreshTokenExpireUTC"} {
		if _, err := time.Parse(theEdge, a[f].(string)); err != nil {
			t.Errorf("%s = %v, want useapi's YYYY-MM-DDTHH:MM:SS.sssZ: %v", f, a[f], err)
		}
	}
}

// useapiErr checks that r is an error in useapi's shape, exactly
// {"error": "<message>", "code": <status>}, and returns the message.
func useapiErr(t *testing.T, r response) string {
	t.Helper()
	m := r.json(t)
	if got := keysOf(m); !slices.Equal(got, []string{"code", "error"}) {
		t.Fatalf("error fields %v, want useapi's [code error]: %s", got, r.body)
	}
	if code, _ := m["code"].(float64); int(code) != r.status {
		t.Errorf("code %v, want the status %d: %s", m["code"], r.status, r.body)
	}
	msg, _ := m["error"].(string)
	if msg == "" {
		t.Errorf("error is not a message: %s", r.body)
	}
	return msg
}

// exactBody fails unless r's body is want, byte for byte (echo ends every
// JSON answer with a newline).
func exactBody(t *testing.T, r response, want string) {
	t.Helper()
	if string(r.body) != want+"\n" {
		t.Errorf("body %q, want %q", r.body, want+"\n")
	}
}

func TestUseapiAccountModel(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	cookie := ltCookie("Ann@Example.com", future, farOut)
	const one = "/v1/ltxstudio/accounts/ann@example.com"

	post := expect(t, e.do(req{method: "POST", path: "/v1/ltxstudio/accounts", key: key,
		body: map[string]any{"cookie": cookie, "maxJobs": 7}}), 200)
	a := post.json(t)
	checkUseapiAccount(t, a, "ann@example.com", useapiFields)
	if a["maxJobs"] != 7.0 || a["tokenExpire"] != float64(future.UnixMilli()) || a["refreshTokenExpire"] != float64(farOut.UnixMilli()) {
		t.Errorf("maxJobs %v, tokenExpire %v, refreshTokenExpire %v; want 7, %d, %d",
			a["maxJobs"], a["tokenExpire"], a["refreshTokenExpire"], future.UnixMilli(), farOut.UnixMilli())
	}

	get := expect(t, e.do(req{method: "GET", path: one, key: key}), 200)
	checkUseapiAccount(t, get.json(t), "ann@example.com", useapiFields)

	expect(t, e.do(req{method: "POST", path: "/v1/ltxstudio/accounts", key: key,
		body: map[string]any{"cookie": ltCookie("bob@x.io", future, farOut)}}), 200)
	list := expect(t, e.do(req{method: "GET", path: "/v1/ltxstudio/accounts", key: key}), 200)
	var byEmail map[string]map[string]any
	if err := json.Unmarshal(list.body, &byEmail); err != nil {
		t.Fatalf("list is not an object of accounts keyed by email: %v\n%s", err, list.body)
	}
	if got := slices.Sorted(func(yield func(string) bool) {
		for k := range byEmail {
			yield(k)
		}
	}); !slices.Equal(got, []string{"ann@example.com", "bob@x.io"}) {
		t.Fatalf("list keys %v, want both emails", got)
	}
	for email, acc := range byEmail {
		checkUseapiAccount(t, acc, email, useapiFields)
	}
	if byEmail["bob@x.io"]["maxJobs"] != 20.0 {
		t.Errorf("default maxJobs %v, want useapi's 20", byEmail["bob@x.io"]["maxJobs"])
	}

	// No token value in any answer.
	token, refresh := between(cookie, "lt_token=", ";"), between(cookie, "lt_refresh_token=", ";")
	for _, r := range []response{post, get, list} {
		if bytes.Contains(r.body, []byte(token)) || bytes.Contains(r.body, []byte(refresh)) {
			t.Errorf("a token value was returned: %s", r.body)
		}
	}

	// An account out of rotation says why in error, useapi's optional field.
	expect(t, e.do(req{method: "PATCH", path: "/v1/accounts/ann@example.com", key: key, body: `{"enabled":false}`}), 200)
	off := expect(t, e.do(req{method: "GET", path: one, key: key}), 200).json(t)
	withError := append(slices.Clone(useapiFields), "error")
	slices.Sort(withError)
	checkUseapiAccount(t, off, "ann@example.com", withError)
	if msg, _ := off["error"].(string); msg == "" {
		t.Errorf("disabled account's error = %v, want a reason", off["error"])
	}

	// DELETE answers 204 with no body; then the account is gone, and with
	// no accounts left the list answers useapi's 404.
	del := expect(t, e.do(req{method: "DELETE", path: one, key: key}), 204)
	if len(del.body) != 0 {
		t.Errorf("DELETE body %q, want none", del.body)
	}
	exactBody(t, expect(t, e.do(req{method: "GET", path: one, key: key}), 404),
		`{"error":"Account configuration not found for the specified email address.","code":404}`)
	exactBody(t, expect(t, e.do(req{method: "DELETE", path: one, key: key}), 404),
		`{"error":"Account configuration not found for the specified email address.","code":404}`)
	expect(t, e.do(req{method: "DELETE", path: "/v1/ltxstudio/accounts/bob%40x.io", key: key}), 204)
	exactBody(t, expect(t, e.do(req{method: "GET", path: "/v1/ltxstudio/accounts", key: key}), 404),
		`{"error":"Configuration not found. To create configuration use POST /accounts.","code":404}`)
}

// TestUseapiLeavesOutUnknownTimes: useapi's model has no nulls; a refresh
// token that is not a JWT has no expiry to show, so the fields are absent.
func TestUseapiLeavesOutUnknownTimes(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	cookie := "lt_id=7; lt_token=" + jwt(map[string]any{"email": "o@x.io", "exp": future.Unix()}) + "; lt_refresh_token=opaque-refresh"
	r := expect(t, e.do(req{method: "POST", path: "/v1/ltxstudio/accounts", key: key, body: map[string]any{"cookie": cookie}}), 200)
	a := r.json(t)
	want := slices.DeleteFunc(slices.Clone(useapiFields), func(f string) bool { return strings.HasPrefix(f, "refreshTokenExpire") })
	if got := keysOf(a); !slices.Equal(got, want) {
		t.Errorf("fields %v, want %v", got, want)
	}
	if bytes.Contains(r.body, []byte("null")) || bytes.Contains(r.body, []byte("opaque-refresh")) {
		t.Errorf("body holds a null or the refresh token: %s", r.body)
	}
}

// TestUseapiSharesAccountsStorage: the compatibility routes are another
// door to the same accounts, not a second pool.
func TestUseapiSharesAccountsStorage(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	expect(t, e.do(req{method: "POST", path: "/v1/ltxstudio/accounts", key: key,
		body: map[string]any{"cookie": ltCookie("u@x.io", future, farOut), "maxJobs": 3}}), 200)
	if a := expect(t, e.do(req{method: "GET", path: "/v1/accounts/u@x.io", key: key}), 200).json(t); a["maxJobs"] != 3.0 {
		t.Errorf("/v1/accounts sees maxJobs %v, want 3", a["maxJobs"])
	}
	expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: key,
		body: map[string]any{"cookie": ltCookie("v@x.io", future, farOut), "maxJobs": 4}}), 200)
	if a := expect(t, e.do(req{method: "GET", path: "/v1/ltxstudio/accounts/v@x.io", key: key}), 200).json(t); a["maxJobs"] != 4.0 {
		t.Errorf("/v1/ltxstudio sees maxJobs %v, want 4", a["maxJobs"])
	}
	expect(t, e.do(req{method: "DELETE", path: "/v1/ltxstudio/accounts/u@x.io", key: key}), 204)
	expect(t, e.do(req{method: "GET", path: "/v1/accounts/u@x.io", key: key}), 404)
}

func TestUseapiRegistrationBodies(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	post := func(body any, contentType string) response {
		r := req{method: "POST", path: "/v1/ltxstudio/accounts", key: key, body: body}
		if contentType != "" {
			r.header = map[string]string{"Content-Type": contentType}
		}
		return e.do(r)
	}
	multipartBody := func(fields map[string]string) ([]byte, string) {
		var buf bytes.Buffer
		w := multipart.NewWriter(&buf)
		for k, v := range fields {
			w.WriteField(k, v)
		}
		w.Close()
		return buf.Bytes(), w.FormDataContentType()
	}

	t.Run("json", func(t *testing.T) {
		a := expect(t, post(map[string]any{"cookie": ltCookie("j@x.io", future, farOut), "maxJobs": 5}, ""), 200).json(t)
		checkUseapiAccount(t, a, "j@x.io", useapiFields)
		if a["maxJobs"] != 5.0 {
			t.Errorf("maxJobs %v, want 5", a["maxJobs"])
		}
	})
	t.Run("multipart", func(t *testing.T) {
		body, ct := multipartBody(map[string]string{"cookie": ltCookie("m@x.io", future, farOut), "maxJobs": "6"})
		a := expect(t, post(body, ct), 200).json(t)
		checkUseapiAccount(t, a, "m@x.io", useapiFields)
		if a["maxJobs"] != 6.0 {
			t.Errorf("maxJobs %v, want 6", a["maxJobs"])
		}
	})
	t.Run("urlencoded", func(t *testing.T) {
		form := url.Values{"cookie": {ltCookie("f@x.io", future, farOut)}, "maxJobs": {"8"}}
		a := expect(t, post(form.Encode(), "application/x-www-form-urlencoded"), 200).json(t)
		checkUseapiAccount(t, a, "f@x.io", useapiFields)
		if a["maxJobs"] != 8.0 {
			t.Errorf("maxJobs %v, want 8", a["maxJobs"])
		}
	})
	t.Run("maxJobs bounds", func(t *testing.T) {
		for _, n := range []int{1, 100} {
			a := expect(t, post(map[string]any{"cookie": ltCookie("b@x.io", future, farOut), "maxJobs": n}, ""), 200).json(t)
			if a["maxJobs"] != float64(n) {
				t.Errorf("maxJobs %v, want %d", a["maxJobs"], n)
			}
		}
		for _, c := range []struct {
			n    int
			want string
		}{{0, "maxJobs must be at least 1"}, {101, "maxJobs must be at most 100"}, {-5, "maxJobs must be at least 1"}} {
			r := expect(t, post(map[string]any{"cookie": ltCookie("b@x.io", future, farOut), "maxJobs": c.n}, ""), 400)
			if msg := useapiErr(t, r); !strings.Contains(msg, c.want) {
				t.Errorf("maxJobs %d: error %q, want it to say %q", c.n, msg, c.want)
			}
		}
		body, ct := multipartBody(map[string]string{"cookie": ltCookie("b@x.io", future, farOut), "maxJobs": "101"})
		if msg := useapiErr(t, expect(t, post(body, ct), 400)); !strings.Contains(msg, "maxJobs must be at most 100") {
			t.Errorf("multipart maxJobs 101: error %q", msg)
		}
		a := expect(t, e.do(req{method: "GET", path: "/v1/ltxstudio/accounts/b@x.io", key: key}), 200).json(t)
		if a["maxJobs"] != 100.0 {
			t.Errorf("a refused maxJobs changed the account: %v, want 100", a["maxJobs"])
		}
	})
}

func TestUseapiErrorShapes(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	const accts = "/v1/ltxstudio/accounts"

	t.Run("missing cookie fields, as the seed words it", func(t *testing.T) {
		for _, c := range []struct{ body, want string }{
			{`{"cookie":"lt_id=1"}`, `{"error":"Missing required cookie fields: lt_token | lt_refresh_token","code":400}`},
			{`{"cookie":"lt_refresh_token=abc"}`, `{"error":"Missing required cookie fields: lt_token","code":400}`},
		} {
			exactBody(t, expect(t, e.do(req{method: "POST", path: accts, key: key, body: c.body}), 400), c.want)
		}
		form := url.Values{"cookie": {"lt_id=1"}}
		exactBody(t, expect(t, e.do(req{method: "POST", path: accts, key: key, body: form.Encode(),
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}), 400),
			`{"error":"Missing required cookie fields: lt_token | lt_refresh_token","code":400}`)
	})
	t.Run("every auth failure is useapi's 401", func(t *testing.T) {
		for _, hdr := range []string{"", "Basic x", "Bearer " + auth.NewSecret(tenant.Live), "Bearer nonsense"} {
			for _, m := range []string{"GET", "POST"} {
				r := req{method: m, path: accts, header: map[string]string{}}
				if hdr != "" {
					r.header["Authorization"] = hdr
				}
				resp := expect(t, e.do(r), 401)
				exactBody(t, resp, `{"error":"Unauthorized","code":401}`)
				if resp.header.Get("WWW-Authenticate") == "" {
					t.Errorf("%s with %q: no WWW-Authenticate", m, hdr)
				}
			}
		}
	})
	big := `{"cookie":"` + strings.Repeat("a", 1<<20) + `"}`
	for _, c := range []struct {
		name   string
		r      req
		status int
	}{
		{"missing scope", req{method: "POST", path: accts, key: e.key("acme", auth.ScopeAccountsRead), body: `{"cookie":"x"}`}, 403},
		{"no such route", req{method: "GET", path: "/v1/ltxstudio/nothing", key: key}, 404},
		{"the bare prefix", req{method: "GET", path: "/v1/ltxstudio", key: key}, 404},
		{"method not allowed", req{method: "PUT", path: accts, key: key}, 405},
		{"method not allowed on one", req{method: "PATCH", path: accts + "/a@x.io", key: key, body: `{}`}, 405},
		{"too large", req{method: "POST", path: accts, key: key, body: big}, 413},
		{"malformed JSON", req{method: "POST", path: accts, key: key, body: `{`}, 400},
		{"empty body", req{method: "POST", path: accts, key: key, body: ``}, 400},
		{"unknown field", req{method: "POST", path: accts, key: key, body: `{"zzz":1}`}, 400},
		{"bad characters", req{method: "GET", path: accts + "/%00", key: key}, 400},
		{"empty email", req{method: "GET", path: accts + "/", key: key}, 404},
		{"query NUL", req{method: "GET", path: accts + "?x=%00", key: key}, 400},
		{"cookie is not a string", req{method: "POST", path: accts, key: key, body: `{"cookie":{"lt_token":"x"}}`}, 400},
	} {
		t.Run(c.name, func(t *testing.T) {
			useapiErr(t, expect(t, e.do(c.r), c.status))
		})
	}

	t.Run("rate limited", func(t *testing.T) {
		limited := e.addReplica(auth.RateLimit{})
		spent := e.createKey(0, key, map[string]any{"name": "spent", "rateLimit": map[string]any{"requests": 1, "per": "24h"}})["secret"].(string)
		expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: spent, server: limited.server}), 200)
		r := expect(t, e.do(req{method: "GET", path: accts, key: spent, server: limited.server}), 429)
		useapiErr(t, r)
		if r.header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	})

	t.Run("the rest of the API keeps its envelope", func(t *testing.T) {
		if code := expect(t, e.do(req{method: "GET", path: "/v1/accounts"}), 401).errorCode(t); code != "missing_api_key" {
			t.Errorf("code %s, want missing_api_key", code)
		}
		if code := expect(t, e.do(req{method: "GET", path: "/v1/ltxstudiox", key: key}), 404).errorCode(t); code != "route_not_found" {
			t.Errorf("code %s, want route_not_found", code)
		}
	})
}

// TestUseapiTenantIsolation: another tenant's account answers exactly like
// one that does not exist, in useapi's shape, and survives the attempt.
func TestUseapiTenantIsolation(t *testing.T) {
	t.Parallel()
	e := setup(t)
	acme, other := e.key("acme"), e.key("globex")
	expect(t, e.do(req{method: "POST", path: "/v1/ltxstudio/accounts", key: acme,
		body: map[string]any{"cookie": ltCookie("a@x.io", future, farOut)}}), 200)

	const notFound = `{"error":"Account configuration not found for the specified email address.","code":404}`
	for _, email := range []string{"a@x.io", "nobody@x.io"} {
		exactBody(t, expect(t, e.do(req{method: "GET", path: "/v1/ltxstudio/accounts/" + email, key: other}), 404), notFound)
		exactBody(t, expect(t, e.do(req{method: "DELETE", path: "/v1/ltxstudio/accounts/" + email, key: other}), 404), notFound)
	}
	expect(t, e.do(req{method: "GET", path: "/v1/ltxstudio/accounts", key: other}), 404)
	// Registering the same email in the other tenant makes its own account.
	expect(t, e.do(req{method: "POST", path: "/v1/ltxstudio/accounts", key: other,
		body: map[string]any{"cookie": ltCookie("a@x.io", future, farOut), "maxJobs": 2}}), 200)
	a := expect(t, e.do(req{method: "GET", path: "/v1/ltxstudio/accounts/a@x.io", key: acme}), 200).json(t)
	if a["maxJobs"] != 20.0 {
		t.Errorf("acme's account changed by globex: maxJobs %v, want 20", a["maxJobs"])
	}
}
