package sim_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/cookies"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
	"github.com/poolgate/poolgate/internal/provider/sim"

	"github.com/poolgate/poolgate/internal/fakeclock"
)

func TestLifecycle(t *testing.T) {
	t.Parallel()
	e := setup(t, testConfig())
	a := e.account("Ann@Example.com")

	st := e.submit(a, submission("job1", 1, ""))
	if st.State != provider.StateRunning || st.UpstreamID == "" {
		t.Fatalf("after submit: %+v, want running with an id", st)
	}
	e.clock.Advance(10*time.Second - time.Nanosecond)
	if got := e.status(a, st.UpstreamID).State; got != provider.StateRunning {
		t.Fatalf("1ns before the end: state %v, want running", got)
	}
	if got := accountStats(t, e.sim, "ann@example.com"); got.Running != 1 || got.Submitted != 1 || got.Peak != 1 {
		t.Fatalf("while running: stats %+v, want running 1, submitted 1, peak 1", got)
	}

	e.clock.Advance(time.Nanosecond)
	done := e.status(a, st.UpstreamID)
	if done.State != provider.StateSucceeded {
		t.Fatalf("at the end: state %v, want succeeded", done.State)
	}
	var result struct{ URL string }
	if err := json.Unmarshal(done.Result, &result); err != nil || result.URL != "https://sim.invalid/"+st.UpstreamID+".mp4" {
		t.Fatalf("result %s (err %v), want the generation's mp4 URL", done.Result, err)
	}
	if got := accountStats(t, e.sim, "ann@example.com"); got.Running != 0 || got.Peak != 1 {
		t.Fatalf("after the end: stats %+v, want running 0, peak 1", got)
	}
}

func TestZeroDurationCompletesAtOnce(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.JobDuration = 0
	e := setup(t, cfg)
	a := e.account("zero@example.com")

	st := e.submit(a, submission("job1", 1, ""))
	if st.State != provider.StateSucceeded || len(st.Result) == 0 {
		t.Fatalf("submit answered %+v, want succeeded with a result", st)
	}
	if got := accountStats(t, e.sim, "zero@example.com"); got.Running != 0 || got.Peak != 1 || got.Submitted != 1 {
		t.Fatalf("stats %+v, want running 0, peak 1, submitted 1", got)
	}
}

func TestIdempotentResubmit(t *testing.T) {
	t.Parallel()
	e := setup(t, testConfig())
	a := e.account("idem@example.com")
	body := `{"type":"video","params":{"prompt":"x"},"clientRef":"job1"}`
	hdr := map[string]string{ltxstudio.HeaderIdempotencyKey: "job1/1"}

	code1, b1 := e.raw(http.MethodPost, "/api/v1/generations", a.Cookie, hdr, body)
	code2, b2 := e.raw(http.MethodPost, "/api/v1/generations", a.Cookie, hdr, body)
	if code1 != http.StatusCreated || code2 != http.StatusOK {
		t.Fatalf("status codes %d then %d, want 201 then 200", code1, code2)
	}
	var g1, g2 ltxstudio.Generation
	mustUnmarshal(t, b1, &g1)
	mustUnmarshal(t, b2, &g2)
	if g1.ID == "" || g1.ID != g2.ID || g2.IdempotencyKey != "job1/1" || g2.ClientRef != "job1" {
		t.Fatalf("generations %+v and %+v, want the same one with key and clientRef", g1, g2)
	}

	// Through the client, the third submission is the same generation too.
	if st := e.submit(a, submission("job1", 1, "")); st.UpstreamID != g1.ID {
		t.Fatalf("client resubmit got id %q, want %q", st.UpstreamID, g1.ID)
	}
	e.submit(a, submission("job1", 2, ""))

	stats := e.sim.Stats()
	if got := stats.Jobs["job1"]; got["1"] != 3 || got["2"] != 1 || len(got) != 2 {
		t.Errorf("jobs[job1] = %v, want attempt 1 seen 3 times and attempt 2 once", got)
	}
	if stats.TotalSubmits != 4 || stats.DuplicateSubmits != 2 {
		t.Errorf("total %d, duplicates %d; want 4 and 2", stats.TotalSubmits, stats.DuplicateSubmits)
	}
	if got := stats.Accounts["idem@example.com"].Submitted; got != 2 {
		t.Errorf("submitted %d, want 2 (one per attempt)", got)
	}
}

func TestIdempotencyIsPerAccount(t *testing.T) {
	t.Parallel()
	e := setup(t, testConfig())
	s1 := e.submit(e.account("one@example.com"), submission("job1", 1, ""))
	s2 := e.submit(e.account("two@example.com"), submission("job1", 1, ""))
	if s1.UpstreamID == s2.UpstreamID {
		t.Fatalf("two accounts with the same key share generation %q", s1.UpstreamID)
	}
}

func TestLookup(t *testing.T) {
	t.Parallel()
	e := setup(t, testConfig())
	owner := e.account("owner@example.com")
	created := e.submit(owner, submission("job1", 1, ""))

	tests := []struct {
		name      string
		account   provider.Account
		key       string
		wantFound bool
	}{
		{"found", owner, "job1/1", true},
		{"never seen", owner, "job1/2", false},
		{"another account's key", e.account("other@example.com"), "job1/1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, found, err := e.client.Lookup(context.Background(), tt.account, tt.key)
			if err != nil {
				t.Fatalf("Lookup: %v", err)
			}
			if found != tt.wantFound {
				t.Fatalf("found = %v, want %v", found, tt.wantFound)
			}
			if found && (st.UpstreamID != created.UpstreamID || st.State != provider.StateRunning) {
				t.Fatalf("Lookup = %+v, want running %s", st, created.UpstreamID)
			}
		})
	}
}

func TestStatusOfUnknownOrForeignGeneration(t *testing.T) {
	t.Parallel()
	e := setup(t, testConfig())
	created := e.submit(e.account("owner@example.com"), submission("job1", 1, ""))
	other := e.account("other@example.com")

	for name, id := range map[string]string{"unknown": "gen_999999", "another account's": created.UpstreamID} {
		t.Run(name, func(t *testing.T) {
			_, err := e.client.Status(context.Background(), other, id)
			wantClass(t, err, provider.ClassPermanent)
			if err := e.client.Cancel(context.Background(), other, id); provider.ClassOf(err) != provider.ClassPermanent {
				t.Fatalf("Cancel: %v, want a permanent not-found error", err)
			}
		})
	}
	// The foreign cancel must not have touched the owner's generation.
	if got := e.status(e.account("owner@example.com"), created.UpstreamID).State; got != provider.StateRunning {
		t.Fatalf("owner's generation is %v after a foreign cancel, want running", got)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		advance time.Duration // between submit and cancel
		want    provider.State
	}{
		{"running becomes canceled", 3 * time.Second, provider.StateCanceled},
		{"succeeded stays succeeded", 10 * time.Second, provider.StateSucceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, testConfig())
			a := e.account("cancel@example.com")
			st := e.submit(a, submission("job1", 1, ""))
			e.clock.Advance(tt.advance)

			for i := range 2 { // cancelling twice is not an error either
				if err := e.client.Cancel(context.Background(), a, st.UpstreamID); err != nil {
					t.Fatalf("Cancel #%d: %v", i+1, err)
				}
			}
			if got := e.status(a, st.UpstreamID).State; got != tt.want {
				t.Fatalf("state after cancel %v, want %v", got, tt.want)
			}
			e.clock.Advance(time.Hour)
			if got := e.status(a, st.UpstreamID).State; got != tt.want {
				t.Fatalf("state an hour later %v, want still %v", got, tt.want)
			}
			if got := accountStats(t, e.sim, "cancel@example.com").Running; got != 0 {
				t.Fatalf("running %d after cancel, want 0", got)
			}
		})
	}
}

func TestSubmitErrors(t *testing.T) {
	t.Parallel()
	quiet := testConfig()
	with := func(f func(*sim.Config)) sim.Config {
		c := quiet
		f(&c)
		return c
	}
	tests := []struct {
		name           string
		cfg            sim.Config
		cookie         func(now time.Time) string
		params         string
		typ            string
		want           provider.Class
		wantRetryAfter time.Duration
		wantMessage    string
	}{
		{name: "expired lt_token", cfg: quiet, want: provider.ClassAuth, cookie: tokenExpiring("e@example.com", -time.Second)},
		{name: "lt_token expiring now", cfg: quiet, want: provider.ClassAuth, cookie: tokenExpiring("e@example.com", 0)},
		{name: "lt_token without email", cfg: quiet, want: provider.ClassAuth, cookie: tokenExpiring("", time.Hour)},
		{name: "no lt_token", cfg: quiet, want: provider.ClassAuth,
			cookie: func(time.Time) string { return "lt_id=abc; lt_refresh_token=opaque-refresh-token" }},
		{name: "lt_token not a JWT", cfg: quiet, want: provider.ClassAuth,
			cookie: func(time.Time) string { return "lt_token=not-a-jwt; lt_refresh_token=x" }},
		{name: "rate limited", want: provider.ClassRateLimited, wantRetryAfter: 30 * time.Second,
			cfg: with(func(c *sim.Config) { c.RateLimitRate = 1 })},
		{name: "rate limited, Retry-After rounded up", want: provider.ClassRateLimited, wantRetryAfter: 2 * time.Second,
			cfg: with(func(c *sim.Config) { c.RateLimitRate = 1; c.RateLimitRetryAfter = 1500 * time.Millisecond })},
		{name: "injected auth failure", want: provider.ClassAuth,
			cfg: with(func(c *sim.Config) { c.AuthFailureRate = 1 })},
		{name: "injected outage", want: provider.ClassTransient, wantMessage: "simulated service outage",
			cfg: with(func(c *sim.Config) { c.TransientRate = 1 })},
		{name: "moderated", cfg: quiet, params: `{"prompt":"please Moderate-Me now"}`,
			want: provider.ClassInvalid, wantMessage: "prompt rejected by content moderation"},
		{name: "unknown type", cfg: quiet, typ: "audio", want: provider.ClassInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, tt.cfg)
			a := e.account("e@example.com")
			if tt.cookie != nil {
				a.Cookie = tt.cookie(e.clock.Now())
			}
			s := submission("job1", 1, tt.params)
			if tt.typ != "" {
				s.Type = tt.typ
			}
			_, err := e.client.Submit(context.Background(), a, s)
			pe := wantClass(t, err, tt.want)
			if pe.RetryAfter != tt.wantRetryAfter {
				t.Errorf("RetryAfter = %v, want %v", pe.RetryAfter, tt.wantRetryAfter)
			}
			if tt.wantMessage != "" && pe.Message != tt.wantMessage {
				t.Errorf("Message = %q, want the upstream's %q", pe.Message, tt.wantMessage)
			}
			stats := e.sim.Stats()
			if got := stats.Accounts["e@example.com"].Submitted; got != 0 {
				t.Errorf("a refused submission created %d generations", got)
			}
			if got := stats.Jobs["job1"]["1"]; got != 1 {
				t.Errorf("jobs[job1][1] = %d, want the refused submission counted once", got)
			}
		})
	}
}

func TestMissingIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := setup(t, testConfig())
	code, body := e.raw(http.MethodPost, "/api/v1/generations", e.account("k@example.com").Cookie, nil, `{"type":"video","params":{}}`)
	var er ltxstudio.ErrorResponse
	mustUnmarshal(t, body, &er)
	if code != http.StatusBadRequest || er.Error.Code != ltxstudio.CodeInvalid {
		t.Fatalf("got %d %+v, want 400 %s", code, er, ltxstudio.CodeInvalid)
	}
	if got := e.sim.Stats().TotalSubmits; got != 0 {
		t.Fatalf("a submission without a key was counted: total %d", got)
	}
}

func TestErrorBodiesNeverEchoCredentials(t *testing.T) {
	t.Parallel()
	e := setup(t, testConfig())
	now := e.clock.Now()
	expired := sim.Cookie("leak@example.com", now.Add(-time.Hour), now.Add(-time.Minute))
	jar, err := cookies.Parse(expired)
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []struct{ method, path string }{
		{http.MethodPost, "/api/v1/generations"},
		{http.MethodGet, "/api/v1/generations/gen_1"},
		{http.MethodPost, "/api/v1/auth/refresh"},
	} {
		_, body := e.raw(req.method, req.path, expired, map[string]string{ltxstudio.HeaderIdempotencyKey: "j/1"}, `{}`)
		for _, p := range jar.Pairs() {
			if strings.Contains(string(body), p.Value) {
				t.Errorf("%s %s answered %s, which contains the %s value", req.method, req.path, body, p.Name)
			}
		}
	}
}

func TestFailureRate(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{0, 10 * time.Second} {
		t.Run(fmt.Sprintf("duration %v", d), func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			cfg.FailureRate = 1
			cfg.JobDuration = d
			e := setup(t, cfg)
			a := e.account("fail@example.com")
			st := e.submit(a, submission("job1", 1, ""))
			if d > 0 {
				if st.State != provider.StateRunning {
					t.Fatalf("a doomed generation is %v before its time, want running", st.State)
				}
				e.clock.Advance(d)
				st = e.status(a, st.UpstreamID)
			}
			if st.State != provider.StateFailed || st.Error != sim.FailureMessage || st.Result != nil {
				t.Fatalf("got %+v, want failed with %q and no result", st, sim.FailureMessage)
			}
		})
	}
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.TokenLifetime = 90 * time.Minute
	cfg.RefreshTokenLifetime = 48 * time.Hour
	e := setup(t, cfg)
	now := e.clock.Now()
	a := provider.Account{Email: "r@example.com", Cookie: sim.Cookie("R@example.com", now.Add(-time.Minute), now.Add(time.Hour))}

	if _, err := e.client.Submit(context.Background(), a, submission("job1", 1, "")); provider.ClassOf(err) != provider.ClassAuth {
		t.Fatalf("submit with an expired token: %v, want an auth error", err)
	}
	tok, err := e.client.Refresh(context.Background(), a)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	for _, c := range []struct {
		name, token string
		want        time.Time
	}{
		{"lt_token", tok.Token, now.Add(90 * time.Minute)},
		{"lt_refresh_token", tok.RefreshToken, now.Add(48 * time.Hour)},
	} {
		claims, err := cookies.DecodeJWT(c.token)
		if err != nil {
			t.Fatalf("new %s: %v", c.name, err)
		}
		if !claims.Expiry.Equal(c.want) || claims.Email != "r@example.com" {
			t.Errorf("new %s: exp %v email %q, want exp %v email r@example.com", c.name, claims.Expiry, claims.Email, c.want)
		}
	}

	// The new pair works where the old one did not.
	jar, _ := cookies.Parse(a.Cookie)
	a.Cookie = jar.With(ltxstudio.CookieToken, tok.Token).With(ltxstudio.CookieRefreshToken, tok.RefreshToken).String()
	e.submit(a, submission("job1", 2, ""))
	if _, err := e.client.Refresh(context.Background(), a); err != nil {
		t.Fatalf("second Refresh: %v", err)
	}
	if got := accountStats(t, e.sim, "r@example.com").Refreshes; got != 2 {
		t.Fatalf("refreshes = %d, want 2", got)
	}
}

func TestRefreshRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		cookie func(now time.Time) string
		want   bool // whether the refresh succeeds
	}{
		{"expired refresh token", func(now time.Time) string {
			return sim.Cookie("x@example.com", now.Add(time.Hour), now.Add(-time.Second))
		}, false},
		{"no refresh token", func(now time.Time) string {
			return "lt_token=" + sim.Token("x@example.com", now.Add(time.Hour))
		}, false},
		{"opaque refresh token and no email anywhere", func(time.Time) string {
			return "lt_refresh_token=opaque-refresh-token-value"
		}, false},
		{"opaque refresh token, email from an expired lt_token", func(now time.Time) string {
			return "lt_token=" + sim.Token("x@example.com", now.Add(-time.Hour)) + "; lt_refresh_token=opaque-refresh-token-value"
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, testConfig())
			a := provider.Account{Email: "x@example.com", Cookie: tt.cookie(e.clock.Now())}
			_, err := e.client.Refresh(context.Background(), a)
			if tt.want {
				if err != nil {
					t.Fatalf("Refresh: %v", err)
				}
				if got := accountStats(t, e.sim, "x@example.com").Refreshes; got != 1 {
					t.Fatalf("refreshes = %d, want 1", got)
				}
				return
			}
			wantClass(t, err, provider.ClassAuth)
			if got := e.sim.Stats().Accounts["x@example.com"].Refreshes; got != 0 {
				t.Fatalf("a refused refresh was counted: %d", got)
			}
		})
	}
}

func TestPeakUnderConcurrentSubmits(t *testing.T) {
	t.Parallel()
	const n = 200
	e := setup(t, testConfig())
	a := e.account("busy@example.com")

	// A generation that has ended must not count towards the peak.
	e.submit(a, submission("warmup", 1, ""))
	e.clock.Advance(10 * time.Second)

	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			if _, err := e.client.Submit(context.Background(), a, submission(fmt.Sprintf("job%d", i), 1, "")); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Submit: %v", err)
	}

	stats := e.sim.Stats()
	if got := stats.Accounts["busy@example.com"]; got.Peak != n || got.Running != n || got.Submitted != n+1 {
		t.Fatalf("stats %+v, want peak %d, running %d, submitted %d", got, n, n, n+1)
	}
	if stats.TotalSubmits != n+1 || stats.DuplicateSubmits != 0 {
		t.Fatalf("total %d, duplicates %d; want %d and 0", stats.TotalSubmits, stats.DuplicateSubmits, n+1)
	}
	for job, attempts := range stats.Jobs {
		if attempts["1"] != 1 {
			t.Fatalf("jobs[%s] = %v, want attempt 1 exactly once", job, attempts)
		}
	}
}

func TestPeakCountsOnlyOverlaps(t *testing.T) {
	t.Parallel()
	e := setup(t, testConfig()) // 10s jobs
	a := e.account("peak@example.com")
	peak := func() int { return accountStats(t, e.sim, "peak@example.com").Peak }

	first := e.submit(a, submission("a", 1, "")) // runs [0s, 10s)
	e.clock.Advance(5 * time.Second)
	second := e.submit(a, submission("b", 1, "")) // runs [5s, 15s)
	if got := peak(); got != 2 {
		t.Fatalf("two overlapping generations: peak %d, want 2", got)
	}
	e.clock.Advance(5 * time.Second) // first has just ended
	e.submit(a, submission("c", 1, ""))
	if got := peak(); got != 2 {
		t.Fatalf("the first ended as the third started: peak %d, want 2", got)
	}
	if err := e.client.Cancel(context.Background(), a, second.UpstreamID); err != nil {
		t.Fatal(err)
	}
	e.submit(a, submission("d", 1, ""))
	if got := peak(); got != 2 {
		t.Fatalf("the second was canceled before the fourth started: peak %d, want 2", got)
	}
	e.submit(a, submission("e", 1, ""))
	if got := peak(); got != 3 {
		t.Fatalf("third, fourth and fifth overlap: peak %d, want 3", got)
	}
	if got := e.status(a, first.UpstreamID).State; got != provider.StateSucceeded {
		t.Fatalf("first generation is %v, want succeeded", got)
	}
}

func TestJitterStaysInBounds(t *testing.T) {
	t.Parallel()
	const n = 200
	cfg := testConfig()
	cfg.Jitter = 2 * time.Second // durations in [8s, 12s]
	e := setup(t, cfg)
	a := e.account("jitter@example.com")
	for i := range n {
		e.submit(a, submission(fmt.Sprintf("job%d", i), 1, ""))
	}
	running := func() int { return accountStats(t, e.sim, "jitter@example.com").Running }

	e.clock.Advance(8*time.Second - time.Nanosecond)
	if got := running(); got != n {
		t.Fatalf("just before the shortest duration: %d running, want %d", got, n)
	}
	e.clock.Advance(2 * time.Second)
	if got := running(); got == 0 || got == n {
		t.Fatalf("at the mean duration: %d of %d running, want some but not all", got, n)
	}
	e.clock.Advance(2*time.Second + time.Nanosecond)
	if got := running(); got != 0 {
		t.Fatalf("after the longest duration: %d running, want 0", got)
	}
}

func TestRatesAreSeededShares(t *testing.T) {
	t.Parallel()
	const n = 1000
	cfg := testConfig()
	cfg.JobDuration = 0 // the submit answer already says how it ended
	cfg.RateLimitRate, cfg.AuthFailureRate, cfg.TransientRate = 0.1, 0.1, 0.1
	cfg.FailureRate = 0.5
	cfg.Seed = 42

	outcomes := func() map[string]int {
		e := setup(t, cfg)
		a := e.account("rates@example.com")
		got := make(map[string]int)
		for i := range n {
			st, err := e.client.Submit(context.Background(), a, submission(fmt.Sprintf("job%d", i), 1, ""))
			if err != nil {
				got[provider.ClassOf(err).String()]++
				continue
			}
			got[string(st.State)]++
		}
		// What the simulator counts per account is what its client saw.
		as := e.sim.Stats().Accounts["rates@example.com"]
		refused := got["rate_limited"] + got["auth"] + got["transient"]
		if as.Refused != refused || as.Succeeded != got["succeeded"] || as.Failed != got["failed"] ||
			as.Submitted != got["succeeded"]+got["failed"] {
			t.Errorf("account stats %+v; the client saw %v", as, got)
		}
		return got
	}
	first, second := outcomes(), outcomes()
	if fmt.Sprint(first) != fmt.Sprint(second) {
		t.Fatalf("same seed, different outcomes: %v vs %v", first, second)
	}
	for _, class := range []string{"rate_limited", "auth", "transient"} {
		if got := first[class]; got < n/10-40 || got > n/10+40 {
			t.Errorf("%s: %d of %d, want about %d", class, got, n, n/10)
		}
	}
	created := first["succeeded"] + first["failed"]
	if got := first["failed"]; got < created/2-60 || got > created/2+60 {
		t.Errorf("failed: %d of %d created, want about half", got, created)
	}
}

func TestStatsAndResetOverHTTP(t *testing.T) {
	t.Parallel()
	e := setup(t, testConfig())
	a := e.account("http@example.com")
	before := e.submit(a, submission("job1", 1, ""))
	if _, err := e.client.Refresh(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Probe(context.Background(), a); err != nil {
		t.Fatal(err)
	}

	code, body := e.raw(http.MethodGet, "/_sim/stats", "", nil, "")
	var got map[string]any
	mustUnmarshal(t, body, &got)
	want := `map[accounts:map[http@example.com:map[failed:0 peak:1 probes:1 refreshes:1 refused:0 requests:3 running:1 submitted:1 succeeded:0]] apiKeys:map[] duplicateSubmits:0 jobs:map[job1:map[1:1]] requests:map[job1:1] totalSubmits:1]`
	if code != http.StatusOK || fmt.Sprint(got) != want {
		t.Fatalf("GET /_sim/stats = %d %v, want 200 %s", code, got, want)
	}

	if code, _ := e.raw(http.MethodPost, "/_sim/reset", "", nil, ""); code != http.StatusNoContent {
		t.Fatalf("POST /_sim/reset = %d, want 204", code)
	}
	if st := e.sim.Stats(); len(st.Accounts) != 0 || len(st.Jobs) != 0 || st.TotalSubmits != 0 {
		t.Fatalf("stats after reset: %+v, want empty", st)
	}
	if _, found, err := e.client.Lookup(context.Background(), a, "job1/1"); err != nil || found {
		t.Fatalf("Lookup after reset: found %v, err %v; want not found", found, err)
	}
	if after := e.submit(a, submission("job1", 1, "")); after.UpstreamID == before.UpstreamID {
		t.Fatalf("reset reissued generation id %q", after.UpstreamID)
	}
}

func TestSetConfigAppliesToNewSubmissions(t *testing.T) {
	t.Parallel()
	e := setup(t, testConfig())
	a := e.account("cfg@example.com")
	st := e.submit(a, submission("job1", 1, ""))

	cfg := testConfig()
	cfg.RateLimitRate = 1
	e.sim.SetConfig(cfg)
	if _, err := e.client.Submit(context.Background(), a, submission("job2", 1, "")); provider.ClassOf(err) != provider.ClassRateLimited {
		t.Fatalf("after SetConfig: %v, want rate limited", err)
	}
	// A resubmission of an existing generation is answered from the
	// idempotency cache, not refused.
	if again := e.submit(a, submission("job1", 1, "")); again.UpstreamID != st.UpstreamID {
		t.Fatalf("resubmission got %q, want %q", again.UpstreamID, st.UpstreamID)
	}
}

// TestConcurrentMixedTraffic is mostly for the race detector: many
// accounts submitting, polling, cancelling and reading stats while the
// clock moves.
func TestConcurrentMixedTraffic(t *testing.T) {
	t.Parallel()
	const accounts, perAccount = 10, 30
	cfg := testConfig()
	cfg.Jitter = 5 * time.Second
	cfg.FailureRate = 0.2
	e := setup(t, cfg)

	var wg sync.WaitGroup
	for i := range accounts {
		a := e.account(fmt.Sprintf("user%d@example.com", i))
		for j := range perAccount {
			wg.Go(func() {
				ctx := context.Background()
				s := submission(fmt.Sprintf("u%d-job%d", i, j), 1, "")
				st, err := e.client.Submit(ctx, a, s)
				if err != nil {
					t.Errorf("Submit: %v", err)
					return
				}
				e.clock.Advance(100 * time.Millisecond)
				if _, err := e.client.Status(ctx, a, st.UpstreamID); err != nil {
					t.Errorf("Status: %v", err)
				}
				if _, _, err := e.client.Lookup(ctx, a, s.IdempotencyKey); err != nil {
					t.Errorf("Lookup: %v", err)
				}
				if j%3 == 0 {
					if err := e.client.Cancel(ctx, a, st.UpstreamID); err != nil {
						t.Errorf("Cancel: %v", err)
					}
				}
				_ = e.sim.Stats()
			})
		}
	}
	wg.Wait()

	stats := e.sim.Stats()
	if stats.TotalSubmits != accounts*perAccount || stats.DuplicateSubmits != 0 {
		t.Fatalf("total %d, duplicates %d; want %d and 0", stats.TotalSubmits, stats.DuplicateSubmits, accounts*perAccount)
	}
	for email, st := range stats.Accounts {
		if st.Submitted != perAccount || st.Peak < 1 || st.Peak > perAccount || st.Running > st.Peak {
			t.Errorf("%s: %+v, want %d submitted and 1 <= running <= peak <= %d", email, st, perAccount, perAccount)
		}
	}
}

func TestTokenAndCookie(t *testing.T) {
	t.Parallel()
	tokenExp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	refreshExp := tokenExp.Add(30 * 24 * time.Hour)
	creds, err := cookies.ParseLTX(sim.Cookie("Someone@Example.com", tokenExp, refreshExp))
	if err != nil {
		t.Fatalf("ParseLTX(Cookie(…)): %v", err)
	}
	if creds.Email != "someone@example.com" || !creds.TokenExpiry.Equal(tokenExp) || !creds.RefreshTokenExpiry.Equal(refreshExp) {
		t.Fatalf("credentials %q %v %v, want someone@example.com %v %v", creds.Email, creds.TokenExpiry, creds.RefreshTokenExpiry, tokenExp, refreshExp)
	}
	if id, _ := creds.Jar.Get(ltxstudio.CookieID); id == "" || cookies.IsSecret(ltxstudio.CookieID, id) {
		t.Fatalf("lt_id %q, want a non-empty, non-secret id", id)
	}
	if creds.Token == creds.RefreshToken {
		t.Fatal("access and refresh tokens are identical")
	}
	claims, err := cookies.DecodeJWT(sim.Token("a@b.c", tokenExp))
	if err != nil || claims.Email != "a@b.c" || !claims.Expiry.Equal(tokenExp) {
		t.Fatalf("DecodeJWT(Token(…)) = %+v, %v", claims, err)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	t.Run("flag defaults", func(t *testing.T) {
		t.Parallel()
		cfg := sim.DefaultConfig()
		fs := flag.NewFlagSet("sim", flag.ContinueOnError)
		cfg.RegisterFlags(fs)
		want := map[string]string{
			"job-duration": "2s", "jitter": "500ms", "failure-rate": "0", "auth-failure-rate": "0",
			"rate-limit-rate": "0", "transient-rate": "0", "rate-limit-retry-after": "30s",
			"token-lifetime": "1h0m0s", "refresh-token-lifetime": "720h0m0s", "seed": "1",
		}
		for name, def := range want {
			f := fs.Lookup(name)
			if f == nil {
				t.Errorf("no -%s flag", name)
				continue
			}
			if f.DefValue != def {
				t.Errorf("-%s defaults to %s, want %s", name, f.DefValue, def)
			}
		}
	})
	t.Run("flags set fields", func(t *testing.T) {
		t.Parallel()
		cfg := sim.DefaultConfig()
		fs := flag.NewFlagSet("sim", flag.ContinueOnError)
		cfg.RegisterFlags(fs)
		err := fs.Parse([]string{"-job-duration=5s", "-jitter=1s", "-failure-rate=0.1", "-auth-failure-rate=0.2",
			"-rate-limit-rate=0.3", "-transient-rate=0.4", "-rate-limit-retry-after=1m", "-token-lifetime=2h",
			"-refresh-token-lifetime=24h", "-ltxapi-delay=3s", "-ltxapi-key-limit=4", "-ltxapi-video-bytes=9000", "-seed=7"})
		if err != nil {
			t.Fatal(err)
		}
		want := sim.Config{JobDuration: 5 * time.Second, Jitter: time.Second, FailureRate: 0.1, AuthFailureRate: 0.2,
			RateLimitRate: 0.3, TransientRate: 0.4, RateLimitRetryAfter: time.Minute, TokenLifetime: 2 * time.Hour,
			RefreshTokenLifetime: 24 * time.Hour, LTXAPIDelay: 3 * time.Second, LTXAPIKeyLimit: 4, LTXAPIVideoBytes: 9000, Seed: 7}
		if cfg != want {
			t.Fatalf("parsed %+v, want %+v", cfg, want)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Validate: %v", err)
		}
	})
	t.Run("validate", func(t *testing.T) {
		t.Parallel()
		cfg := sim.DefaultConfig()
		cfg.FailureRate = 1.5
		cfg.Jitter = -time.Second
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), "failure-rate") || !strings.Contains(err.Error(), "jitter") {
			t.Fatalf("Validate = %v, want errors naming failure-rate and jitter", err)
		}
	})
}

// tokenExpiring returns a cookie maker whose lt_token expires in after
// the fake clock's now.
func tokenExpiring(email string, in time.Duration) func(now time.Time) string {
	return func(now time.Time) string { return sim.Cookie(email, now.Add(in), now.Add(time.Hour)) }
}

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
}

// BenchmarkSubmit measures one submission through the handler, without a
// network, on an account that accumulates b.N generations.
func BenchmarkSubmit(b *testing.B) {
	clock := fakeclock.New(epoch)
	cfg := testConfig()
	s := sim.New(cfg, clock.Now)
	cookie := sim.Cookie("bench@example.com", epoch.Add(24*time.Hour), epoch.Add(720*time.Hour))
	body := `{"type":"video","params":{"prompt":"x"}}`
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/generations", strings.NewReader(body))
		req.Header.Set(ltxstudio.HeaderCookie, cookie)
		req.Header.Set(ltxstudio.HeaderIdempotencyKey, fmt.Sprintf("job%d/1", i))
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != http.StatusCreated {
			b.Fatalf("submit %d: HTTP %d %s", i, w.Code, w.Body)
		}
		if i%20 == 0 {
			clock.Advance(time.Second) // about 200 running at any time
		}
	}
}
