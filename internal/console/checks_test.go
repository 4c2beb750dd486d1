package console_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/poolgate/poolgate/internal/auth"
)

// xss is what an attacker could get into an email (the lt_token claim), a
// prompt or a key name. Rendered inert, it shows as text and runs nothing.
const xss = `x<img src=x onerror="window.__xss=1"><script>window.__xss=1</script>`

// TestConsoleEscapesUserStrings puts the payload in an account email, a job
// prompt and a key name and visits every page that shows them.
func TestConsoleEscapesUserStrings(t *testing.T) {
	w := newWorld(t, 200*time.Millisecond)
	admin := w.key("ops admin")
	// The API no longer accepts such an email (the lt_token claim must be
	// an address), so the row is written directly: the console must render
	// whatever the table holds inertly, whichever way it got there.
	if _, err := w.pool.Exec(context.Background(), `INSERT INTO accounts (tenant_id, mode, email, cookie, max_jobs)
		SELECT id, 'live', $1, '\x00', 1 FROM tenants WHERE name = 'acme'`, strings.ToLower(xss)+"@evil.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.pool.Exec(context.Background(), `UPDATE account_capacity SET running = 1
		WHERE id = (SELECT id FROM accounts WHERE email = $1)`, strings.ToLower(xss)+"@evil.test"); err != nil {
		t.Fatal(err)
	}
	// Its cookie is no cookie, so no job may run on it (the job would put
	// the account in error and off the Live page): its one slot is taken,
	// and the job pinned to it waits.
	job := w.mustAPI(http.StatusAccepted, http.MethodPost, "/v1/jobs", admin, map[string]any{
		"type": "video", "email": strings.ToLower(xss) + "@evil.test", "params": map[string]any{"prompt": xss}})
	w.mustAPI(http.StatusCreated, http.MethodPost, "/v1/keys", admin, map[string]any{"name": xss, "scopes": []string{"jobs:read"}})

	b := newBrowser(t, w.url)
	b.signIn(admin)
	for _, p := range []string{"/console/pool", "/console/live", "/console/jobs", "/console/jobs/" + job["id"].(string), "/console/keys"} {
		b.open(p)
		b.waitFor("the page settles", `document.readyState === 'complete'`, 5*time.Second)
		time.Sleep(300 * time.Millisecond) // an injected handler would have fired by now
		if eval[bool](b, `window.__xss !== undefined`) {
			t.Errorf("%s ran the injected script", p)
		}
		if n := eval[int](b, `document.querySelectorAll('img[src="x"], main script').length`); n != 0 {
			t.Errorf("%s has %d injected elements", p, n)
		}
		if !strings.Contains(eval[string](b, `document.querySelector('main').innerText`), `<img src=x onerror="window.__xss=1">`) {
			t.Errorf("%s does not show the payload as text", p)
		}
		b.consoleClean(p)
	}
	// The Live page redraws its table from live.json: still inert.
	b.open("/console/live")
	b.waitFor("a poll redraws the table", `document.getElementById('live-status').textContent.startsWith('Updates') && performance.getEntriesByType('resource').some(e => e.name.includes('live.json'))`, 10*time.Second)
	if eval[bool](b, `window.__xss !== undefined || document.querySelectorAll('img[src="x"]').length > 0`) {
		t.Error("the Live page's polling injected the payload")
	}
	b.check("xss-live")
}

// TestConsoleScopes: a jobs-only key sees only the pages it may use, and a
// page it may not use says so; revoking the key ends its session.
func TestConsoleScopes(t *testing.T) {
	w := newWorld(t, 200*time.Millisecond)
	admin := w.key("ops admin")
	jobsOnly := w.key("jobs only", auth.ScopeJobsRead, auth.ScopeJobsWrite)
	b := newBrowser(t, w.url)
	b.signIn(jobsOnly)
	if loc := b.location(); !strings.HasSuffix(loc, "/console/live") {
		t.Errorf("a jobs-only key lands on %s, want Live (the first page it may use)", loc)
	}
	nav := eval[[]string](b, `[...document.querySelectorAll("nav[aria-label='Console pages'] a")].map(a => a.textContent)`)
	if strings.Join(nav, ",") != "Live,Jobs" {
		t.Errorf("a jobs-only key sees nav %v, want [Live Jobs]", nav)
	}
	for path, scope := range map[string]string{"/console/keys": "keys:admin", "/console/pool": "accounts:read", "/console/alerts": "alerts:read"} {
		b.open(path)
		if got := b.text("#refused"); !strings.Contains(got, "lacks the scope "+scope) {
			t.Errorf("%s with a jobs-only key says %q", path, got)
		}
		if b.has("table") {
			t.Errorf("%s with a jobs-only key shows a table", path)
		}
	}
	b.open("/console/keys")
	b.check("forbidden")

	// Revoke the key the session signed in with: the next page is refused.
	keys := w.mustAPI(http.StatusOK, http.MethodGet, "/v1/keys", admin, nil)["data"].([]any)
	for _, k := range keys {
		if k.(map[string]any)["name"] == "jobs only" {
			w.mustAPI(http.StatusNoContent, http.MethodDelete, "/v1/keys/"+k.(map[string]any)["id"].(string), admin, nil)
		}
	}
	b.open("/console/jobs")
	if loc := b.location(); !strings.HasSuffix(loc, "/console/signin?m=key") {
		t.Fatalf("after revoking the session's key, /console/jobs showed %s", loc)
	}
	if got := b.text(".notice"); !strings.Contains(got, "no longer valid") {
		t.Errorf("sign-in page after revocation says %q", got)
	}
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([A-Z0-9]+)"`)

// TestConsoleCSRF: a POST without the session's CSRF token, with a wrong
// one, or from another site is refused and changes nothing.
func TestConsoleCSRF(t *testing.T) {
	w := newWorld(t, 200*time.Millisecond)
	admin := w.key("ops admin")
	w.register(admin, "a@example.com", 3, 30*24*time.Hour)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	post := func(path string, form url.Values, header map[string]string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, w.url+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if status, _ := post("/console/signin", url.Values{"key": {admin}}, nil); status != http.StatusOK {
		t.Fatalf("sign-in: %d", status)
	}
	resp, err := c.Get(w.url + "/console/pool")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfInput.FindSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the Pool page:\n%s", page)
	}
	token := string(m[1])
	change := url.Values{"email": {"a@example.com"}, "maxJobs": {"7"}}
	withToken := func(tok string) url.Values {
		v := url.Values{"csrf": {tok}}
		for k, vs := range change {
			v[k] = vs
		}
		return v
	}
	for name, tc := range map[string]struct {
		form   url.Values
		header map[string]string
	}{
		"no token":         {change, nil},
		"wrong token":      {withToken("AAAAAAAAAAAAAAAAAAAAAAAAAA"), nil},
		"cross-site fetch": {withToken(token), map[string]string{"Sec-Fetch-Site": "cross-site"}},
		"foreign origin":   {withToken(token), map[string]string{"Origin": "https://evil.example"}},
	} {
		status, body := post("/console/pool/update", tc.form, tc.header)
		if status != http.StatusForbidden || !strings.Contains(body, "refused") && !strings.Contains(body, "security token") {
			t.Errorf("%s: status %d, want 403 with a reason", name, status)
		}
	}
	if a := w.mustAPI(http.StatusOK, http.MethodGet, "/v1/accounts/a@example.com", admin, nil); a["maxJobs"] != float64(3) {
		t.Fatalf("a refused POST changed maxJobs to %v", a["maxJobs"])
	}
	// Sign-out is a POST too: without the token the session survives.
	if status, _ := post("/console/signout", url.Values{}, nil); status != http.StatusForbidden {
		t.Errorf("sign-out without a token: %d", status)
	}
	if status, _ := post("/console/pool/update", withToken(token), nil); status != http.StatusOK { // 303 followed to the page
		t.Fatalf("the same POST with its token: %d", status)
	}
	if a := w.mustAPI(http.StatusOK, http.MethodGet, "/v1/accounts/a@example.com", admin, nil); a["maxJobs"] != float64(7) {
		t.Fatalf("with its token, maxJobs is %v, want 7", a["maxJobs"])
	}

	// And in a real browser: a script POSTing without the token is refused.
	b := newBrowser(t, w.url)
	b.signIn(admin)
	status, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`fetch('/console/keys/create', {method: 'POST',
		body: new URLSearchParams({name: 'sneaky'})}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil || status != http.StatusForbidden {
		t.Errorf("a fetch POST without the CSRF token answered %d (%v), want 403", status, err)
	}
	keys := w.mustAPI(http.StatusOK, http.MethodGet, "/v1/keys", admin, nil)["data"].([]any)
	for _, k := range keys {
		if k.(map[string]any)["name"] == "sneaky" {
			t.Error("a POST without the CSRF token created a key")
		}
	}
}

// signIn signs in through the form.
func (b *browser) signIn(key string) {
	b.t.Helper()
	b.open("/console/signin")
	b.fill("#key", key)
	b.submit("button[type=submit]")
	if strings.Contains(b.location(), "/signin") {
		b.t.Fatalf("sign-in failed: %s", b.text("main"))
	}
}

// TestConsoleSessionCookie: the session cookie is HttpOnly, SameSite=Strict,
// limited to /console, and Secure when the browser came over TLS.
func TestConsoleSessionCookie(t *testing.T) {
	w := newWorld(t, 200*time.Millisecond)
	admin := w.key("ops admin")
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	signIn := func(header map[string]string) *http.Cookie {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, w.url+"/console/signin", strings.NewReader(url.Values{"key": {admin}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
			t.Fatalf("sign-in answered %d with cookies %v", resp.StatusCode, resp.Cookies())
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "" && cc != "no-store" {
			t.Errorf("sign-in answer is cacheable: %q", cc)
		}
		return resp.Cookies()[0]
	}
	c := signIn(nil)
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/console" || c.Secure || c.Value == "" {
		t.Errorf("session cookie over plain HTTP: %+v", c)
	}
	if c := signIn(map[string]string{"X-Forwarded-Proto": "https"}); !c.Secure {
		t.Errorf("session cookie behind TLS is not Secure: %+v", c)
	}
	// Headers every console page carries.
	resp, err := http.Get(w.url + "/console/signin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP %q", csp)
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("framing/sniffing headers: %v", resp.Header)
	}
}

// TestConsoleJobFilters: the Jobs page filters by state, account, type and
// creation time, and says what is wrong with a filter it cannot read.
func TestConsoleJobFilters(t *testing.T) {
	w := newWorld(t, 200*time.Millisecond)
	admin := w.key("ops admin")
	// One disabled account: jobs can pin to it and all of them stay queued.
	w.register(admin, "pinned@example.com", 1, 30*24*time.Hour)
	w.mustAPI(http.StatusOK, http.MethodPatch, "/v1/accounts/pinned@example.com", admin, map[string]any{"enabled": false})
	video := w.mustAPI(http.StatusAccepted, http.MethodPost, "/v1/jobs", admin, map[string]any{
		"type": "video", "params": map[string]any{"prompt": "v"}, "email": "pinned@example.com"})["id"].(string)
	image := w.mustAPI(http.StatusAccepted, http.MethodPost, "/v1/jobs", admin, map[string]any{
		"type": "image", "params": map[string]any{"prompt": "i"}})["id"].(string)
	get := signedInClient(t, w, admin)
	hour := func(d time.Duration) string { return time.Now().UTC().Add(d).Format("2006-01-02T15:04") }
	for _, tc := range []struct {
		query      string
		want, not  []string
		wantStatus int
	}{
		{"", []string{video, image}, nil, http.StatusOK},
		{"type=image", []string{image}, []string{video}, http.StatusOK},
		{"state=queued&account=pinned", []string{video}, []string{image}, http.StatusOK},
		{"from=" + hour(-time.Hour) + "&to=" + hour(time.Hour), []string{video, image}, nil, http.StatusOK},
		{"from=" + hour(time.Hour), nil, []string{video, image}, http.StatusOK},
		{"state=lost", nil, nil, http.StatusBadRequest},
		{"from=yesterday", nil, nil, http.StatusBadRequest},
	} {
		status, body := get("/console/jobs?" + tc.query)
		if status != tc.wantStatus {
			t.Errorf("?%s: status %d, want %d", tc.query, status, tc.wantStatus)
		}
		for _, id := range tc.want {
			if !strings.Contains(body, id) {
				t.Errorf("?%s does not list %s", tc.query, id)
			}
		}
		for _, id := range tc.not {
			if strings.Contains(body, id) {
				t.Errorf("?%s lists %s", tc.query, id)
			}
		}
	}
}

// signedInClient signs in over plain HTTP and returns a GET helper.
func signedInClient(t *testing.T, w *world, key string) func(path string) (int, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.PostForm(w.url+"/console/signin", url.Values{"key": {key}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	return func(path string) (int, string) {
		t.Helper()
		resp, err := c.Get(w.url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
}

// TestConsolePoolShowsQuarantine: an account resting after a rate limit
// says until when.
func TestConsolePoolShowsQuarantine(t *testing.T) {
	w := newWorld(t, 200*time.Millisecond)
	admin := w.key("ops admin")
	w.register(admin, "resting@example.com", 2, 30*24*time.Hour)
	until := time.Now().Add(10 * time.Minute).UTC()
	// What the scheduler records when the upstream answers 429.
	if _, err := w.pool.Exec(t.Context(), `UPDATE accounts SET quarantined_until = $1 WHERE email = 'resting@example.com'`, until); err != nil {
		t.Fatal(err)
	}
	get := signedInClient(t, w, admin)
	_, body := get("/console/pool")
	if want := "quarantined until <time datetime=\"" + until.Format(time.RFC3339) + "\">"; !strings.Contains(body, want) {
		t.Errorf("Pool page lacks %q", want)
	}
}

// The Pool page shows what each account did in the last 24 hours, from
// the same counts as GET /v1/usage.
func TestConsolePoolShowsUsage(t *testing.T) {
	w := newWorld(t, 100*time.Millisecond)
	admin := w.key("ops admin")
	w.register(admin, "busy@example.com", 2, 30*24*time.Hour)
	w.register(admin, "idle@example.com", 1, 30*24*time.Hour)
	w.mustAPI(http.StatusOK, http.MethodPatch, "/v1/accounts/idle@example.com", admin, map[string]any{"enabled": false})
	var ids []string
	for _, prompt := range []string{"one", "two", "please moderate-me"} {
		m := w.mustAPI(http.StatusAccepted, http.MethodPost, "/v1/jobs", admin, map[string]any{
			"type": "video", "params": map[string]any{"prompt": prompt}})
		ids = append(ids, m["id"].(string))
	}
	for _, id := range ids {
		w.mustAPI(http.StatusOK, http.MethodGet, "/v1/jobs/"+id+"?wait=20s", admin, nil)
	}
	get := signedInClient(t, w, admin)
	_, body := get("/console/pool")
	for _, want := range []string{
		`<span>Last 24 h: <strong>3</strong> started · <strong>2</strong> succeeded · <strong>1</strong> failed · <strong>0</strong> retried · generation p50`,
		`<span class="num">3</span> started · <span class="num">2</span> succeeded · <span class="num">1</span> failed`,
		`<span class="num">0</span> started · <span class="num">0</span> succeeded · <span class="num">0</span> failed</td>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("Pool page lacks %q", want)
		}
	}
}
