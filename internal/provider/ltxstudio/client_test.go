package ltxstudio_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/cookies"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
	"github.com/poolgate/poolgate/internal/provider/sim"

	"github.com/poolgate/poolgate/internal/fakeclock"
)

// epoch is where fake clocks start, on a whole second so token exp claims
// compare exactly.
var epoch = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// setupSim starts a simulator with cfg on a fake clock and returns a client
// for it.
func setupSim(t *testing.T, cfg sim.Config) (*ltxstudio.Client, *sim.Server, *fakeclock.Clock) {
	t.Helper()
	clock := fakeclock.New(epoch)
	s := sim.New(cfg, clock.Now)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return ltxstudio.New(srv.URL, srv.Client()), s, clock
}

// setupStub serves h and returns a client for it.
func setupStub(t *testing.T, h http.HandlerFunc) *ltxstudio.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return ltxstudio.New(srv.URL, srv.Client())
}

func simConfig() sim.Config {
	c := sim.DefaultConfig()
	c.JobDuration = 10 * time.Second
	c.Jitter = 0
	return c
}

func account(email string, now time.Time) provider.Account {
	return provider.Account{Email: email, Cookie: sim.Cookie(email, now.Add(time.Hour), now.Add(720*time.Hour))}
}

func submission(key string) provider.Submission {
	job, _, _ := strings.Cut(key, "/")
	return provider.Submission{IdempotencyKey: key, JobID: job, Attempt: 1, Type: "video",
		Params: json.RawMessage(`{"prompt":"a lighthouse at dusk"}`)}
}

func TestClientAgainstSim(t *testing.T) {
	t.Parallel()
	c, s, clock := setupSim(t, simConfig())
	a := account("client@example.com", clock.Now())
	ctx := context.Background()

	st, err := c.Submit(ctx, a, submission("job1/1"))
	if err != nil || st.State != provider.StateRunning {
		t.Fatalf("Submit = %+v, %v; want running", st, err)
	}
	again, err := c.Submit(ctx, a, submission("job1/1"))
	if err != nil || again.UpstreamID != st.UpstreamID {
		t.Fatalf("resubmit = %+v, %v; want generation %s again", again, err, st.UpstreamID)
	}
	if got := s.Stats().Jobs["job1"]["1"]; got != 2 {
		t.Fatalf("sim saw job1/1 %d times, want 2", got)
	}

	t.Run("lookup", func(t *testing.T) {
		got, found, err := c.Lookup(ctx, a, "job1/1")
		if err != nil || !found || got.UpstreamID != st.UpstreamID {
			t.Fatalf("Lookup(job1/1) = %+v, %v, %v; want found %s", got, found, err, st.UpstreamID)
		}
		_, found, err = c.Lookup(ctx, a, "job1/2")
		if err != nil || found {
			t.Fatalf("Lookup(job1/2) = found %v, err %v; want not found and no error", found, err)
		}
	})

	t.Run("succeeds after its duration", func(t *testing.T) {
		clock.Advance(10 * time.Second)
		got, err := c.Status(ctx, a, st.UpstreamID)
		if err != nil || got.State != provider.StateSucceeded || !strings.Contains(string(got.Result), st.UpstreamID) {
			t.Fatalf("Status = %+v, %v; want succeeded with a result", got, err)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		other, err := c.Submit(ctx, a, submission("job2/1"))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Cancel(ctx, a, other.UpstreamID); err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		got, err := c.Status(ctx, a, other.UpstreamID)
		if err != nil || got.State != provider.StateCanceled {
			t.Fatalf("Status after cancel = %+v, %v; want canceled", got, err)
		}
		if err := c.Cancel(ctx, a, st.UpstreamID); err != nil {
			t.Fatalf("Cancel of a succeeded generation: %v, want nil", err)
		}
	})

	t.Run("refresh", func(t *testing.T) {
		tok, err := c.Refresh(ctx, a)
		if err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		claims, err := cookies.DecodeJWT(tok.Token)
		if err != nil || !claims.Expiry.Equal(clock.Now().Add(time.Hour)) {
			t.Fatalf("new token claims %+v, %v; want exp now+1h", claims, err)
		}
		if got := s.Stats().Accounts["client@example.com"].Refreshes; got != 1 {
			t.Fatalf("refreshes = %d, want 1", got)
		}
	})
}

func TestClientClassifiesSimErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		cfg            func(*sim.Config)
		expired        bool
		prompt         string
		want           provider.Class
		wantRetryAfter time.Duration
		wantMessage    string
	}{
		{name: "expired token", expired: true, want: provider.ClassAuth},
		{name: "rate limited", cfg: func(c *sim.Config) { c.RateLimitRate = 1 },
			want: provider.ClassRateLimited, wantRetryAfter: 30 * time.Second},
		{name: "moderated", prompt: "moderate-me please",
			want: provider.ClassInvalid, wantMessage: "prompt rejected by content moderation"},
		{name: "unavailable", cfg: func(c *sim.Config) { c.TransientRate = 1 }, want: provider.ClassTransient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := simConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			c, _, clock := setupSim(t, cfg)
			now := clock.Now()
			a := account("c@example.com", now)
			if tt.expired {
				a.Cookie = sim.Cookie("c@example.com", now.Add(-time.Second), now.Add(time.Hour))
			}
			s := submission("job1/1")
			if tt.prompt != "" {
				s.Params = json.RawMessage(fmt.Sprintf(`{"prompt":%q}`, tt.prompt))
			}
			_, err := c.Submit(context.Background(), a, s)
			pe := asProviderError(t, err)
			if pe.Class != tt.want || pe.RetryAfter != tt.wantRetryAfter {
				t.Fatalf("got class %v retry-after %v (%v), want %v and %v", pe.Class, pe.RetryAfter, err, tt.want, tt.wantRetryAfter)
			}
			if tt.wantMessage != "" && pe.Message != tt.wantMessage {
				t.Fatalf("Message = %q, want %q", pe.Message, tt.wantMessage)
			}
		})
	}
}

func TestClientFailedGeneration(t *testing.T) {
	t.Parallel()
	cfg := simConfig()
	cfg.FailureRate = 1
	c, _, clock := setupSim(t, cfg)
	a := account("f@example.com", clock.Now())
	st, err := c.Submit(context.Background(), a, submission("job1/1"))
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	got, err := c.Status(context.Background(), a, st.UpstreamID)
	if err != nil || got.State != provider.StateFailed || got.Error != sim.FailureMessage {
		t.Fatalf("Status = %+v, %v; want failed with %q", got, err, sim.FailureMessage)
	}
}

// errorStub answers every request with status, optional Retry-After and an
// ErrorResponse (or body, when set).
func errorStub(status int, code, message, retryAfter, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if retryAfter != "" {
			w.Header().Set(ltxstudio.HeaderRetryAfter, retryAfter)
		}
		w.WriteHeader(status)
		if body != "" {
			io.WriteString(w, body)
			return
		}
		json.NewEncoder(w).Encode(ltxstudio.ErrorResponse{Error: ltxstudio.ErrorDetail{Code: code, Message: message}})
	}
}

func TestClientClassifiesHTTPStatus(t *testing.T) {
	t.Parallel()
	inAMinute := time.Now().Add(time.Minute).UTC().Format(http.TimeFormat)
	tests := []struct {
		name           string
		status         int
		code, message  string
		retryAfter     string
		body           string
		want           provider.Class
		wantMessage    string
		wantRetryAfter func(time.Duration) bool
	}{
		{name: "401", status: 401, code: "unauthorized", want: provider.ClassAuth,
			wantMessage: "upstream refused the account's credentials"},
		{name: "403", status: 403, want: provider.ClassAuth},
		{name: "429 with seconds", status: 429, retryAfter: "12", want: provider.ClassRateLimited,
			wantRetryAfter: func(d time.Duration) bool { return d == 12*time.Second }},
		{name: "429 with HTTP date", status: 429, retryAfter: inAMinute, want: provider.ClassRateLimited,
			wantRetryAfter: func(d time.Duration) bool { return d > 55*time.Second && d <= time.Minute }},
		{name: "429 with garbage Retry-After", status: 429, retryAfter: "soon", want: provider.ClassRateLimited},
		{name: "400 keeps the upstream message", status: 400, code: "invalid_request", message: "bad aspect ratio",
			want: provider.ClassInvalid, wantMessage: "bad aspect ratio"},
		{name: "422 without a body", status: 422, body: "-", want: provider.ClassInvalid,
			wantMessage: "upstream rejected the request"},
		{name: "404 not_found", status: 404, code: "not_found", want: provider.ClassPermanent},
		{name: "plain 404", status: 404, body: "404 page not found", want: provider.ClassPermanent},
		{name: "409", status: 409, want: provider.ClassPermanent},
		{name: "408", status: 408, want: provider.ClassTransient},
		{name: "500", status: 500, want: provider.ClassTransient},
		{name: "503 with Retry-After", status: 503, retryAfter: "5", want: provider.ClassTransient,
			wantRetryAfter: func(d time.Duration) bool { return d == 5*time.Second }},
		{name: "2xx that is not JSON", status: 200, body: "<html>", want: provider.ClassTransient},
		{name: "2xx without an id", status: 200, body: `{"status":"completed"}`, want: provider.ClassTransient},
		{name: "2xx too large", status: 200, body: `"` + strings.Repeat("x", ltxstudio.MaxResponseBytes) + `"`,
			want: provider.ClassTransient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := tt.body
			if body == "-" {
				body = " "
			}
			c := setupStub(t, errorStub(tt.status, tt.code, tt.message, tt.retryAfter, body))
			_, err := c.Status(context.Background(), account("s@example.com", time.Now()), "gen_1")
			pe := asProviderError(t, err)
			if pe.Class != tt.want {
				t.Fatalf("class %v (%v), want %v", pe.Class, err, tt.want)
			}
			if tt.wantMessage != "" && pe.Message != tt.wantMessage {
				t.Errorf("Message = %q, want %q", pe.Message, tt.wantMessage)
			}
			check := tt.wantRetryAfter
			if check == nil {
				check = func(d time.Duration) bool { return d == 0 }
			}
			if !check(pe.RetryAfter) {
				t.Errorf("RetryAfter = %v, not what %q should give", pe.RetryAfter, tt.retryAfter)
			}
		})
	}
}

func TestLookupOnlyTrustsUpstreamNotFound(t *testing.T) {
	t.Parallel()
	a := account("l@example.com", time.Now())

	c := setupStub(t, errorStub(404, ltxstudio.CodeNotFound, "no such key", "", ""))
	if _, found, err := c.Lookup(context.Background(), a, "job/1"); err != nil || found {
		t.Fatalf("404 not_found: found %v, err %v; want not found, nil", found, err)
	}
	// A 404 from something else (a proxy, a wrong base URL) proves nothing.
	c = setupStub(t, errorStub(404, "", "", "", "404 page not found"))
	if _, found, err := c.Lookup(context.Background(), a, "job/1"); err == nil || found {
		t.Fatalf("plain 404: found %v, err %v; want an error", found, err)
	}
}

func TestClientSendsTheWireContract(t *testing.T) {
	t.Parallel()
	a := account("w@example.com", time.Now())
	var got struct {
		method, path, key, cookie, contentType string
		body                                   ltxstudio.SubmitRequest
	}
	c := setupStub(t, func(w http.ResponseWriter, r *http.Request) {
		got.method, got.path = r.Method, r.URL.EscapedPath()
		got.key = r.Header.Get(ltxstudio.HeaderIdempotencyKey)
		got.cookie = r.Header.Get(ltxstudio.HeaderCookie)
		got.contentType = r.Header.Get("Content-Type")
		json.NewDecoder(r.Body).Decode(&got.body)
		json.NewEncoder(w).Encode(ltxstudio.Generation{ID: "gen_1", Status: ltxstudio.StatusQueued})
	})
	s := provider.Submission{IdempotencyKey: "job9/3", JobID: "job9", Attempt: 3, Type: "image"}
	st, err := c.Submit(context.Background(), a, s)
	if err != nil || st.State != provider.StateRunning {
		t.Fatalf("Submit = %+v, %v; want a running (queued) generation", st, err)
	}
	if got.method != http.MethodPost || got.path != "/api/v1/generations" || got.key != "job9/3" ||
		got.cookie != a.Cookie || got.contentType != "application/json" {
		t.Errorf("request %s %s key %q content-type %q, cookie sent: %v", got.method, got.path, got.key, got.contentType, got.cookie == a.Cookie)
	}
	if got.body.Type != "image" || got.body.ClientRef != "job9" || string(got.body.Params) != "{}" {
		t.Errorf("body %+v, want type image, clientRef job9, params {}", got.body)
	}

	if _, err := c.Status(context.Background(), a, "a/b?c"); err != nil {
		t.Fatal(err)
	}
	if got.method != http.MethodGet || got.path != "/api/v1/generations/a%2Fb%3Fc" {
		t.Errorf("Status requested %s %s, want the id escaped into one path segment", got.method, got.path)
	}
}

func TestClientRefusesBeforeSending(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	c := setupStub(t, func(w http.ResponseWriter, _ *http.Request) { calls.Add(1) })
	good := account("b@example.com", time.Now())
	tests := []struct {
		name   string
		cookie string
		params string
		want   provider.Class
	}{
		{"empty cookie", "", `{}`, provider.ClassAuth},
		{"cookie with a line break", good.Cookie + "\r\nX-Evil: 1", `{}`, provider.ClassAuth},
		{"params not JSON", good.Cookie, `{"prompt":`, provider.ClassInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := provider.Account{Email: "b@example.com", Cookie: tt.cookie}
			s := submission("job1/1")
			s.Params = json.RawMessage(tt.params)
			_, err := c.Submit(context.Background(), a, s)
			if got := asProviderError(t, err).Class; got != tt.want {
				t.Fatalf("class %v (%v), want %v", got, err, tt.want)
			}
			if tt.cookie != "" && strings.Contains(err.Error(), tt.cookie) {
				t.Fatalf("error %q contains the cookie", err)
			}
		})
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("%d requests reached the upstream, want 0", n)
	}
}

func TestClientUnreachable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	c := ltxstudio.New(srv.URL, nil)
	a := account("u@example.com", time.Now())
	_, err := c.Status(context.Background(), a, "gen_1")
	if got := asProviderError(t, err).Class; got != provider.ClassTransient {
		t.Fatalf("class %v (%v), want transient", got, err)
	}
	assertNoCredentials(t, err, a.Cookie)
}

func TestRefreshRejectsIncompletePair(t *testing.T) {
	t.Parallel()
	c := setupStub(t, func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(ltxstudio.RefreshResponse{Token: "only-the-access-token"})
	})
	_, err := c.Refresh(context.Background(), account("p@example.com", time.Now()))
	if got := asProviderError(t, err).Class; got != provider.ClassTransient {
		t.Fatalf("class %v (%v), want transient", got, err)
	}
}

// TestErrorsNeverContainCredentials runs the client against an upstream
// that echoes the request's credentials into its error message and code,
// and checks none of them survive into the error.
func TestErrorsNeverContainCredentials(t *testing.T) {
	t.Parallel()
	now := time.Now()
	valid := sim.Cookie("echo@example.com", now.Add(time.Hour), now.Add(720*time.Hour))
	jar, err := cookies.Parse(valid)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := jar.Get(ltxstudio.CookieToken)
	refresh, _ := jar.Get(ltxstudio.CookieRefreshToken)
	signature := tok[strings.LastIndexByte(tok, '.')+1:]

	echoes := map[string]func(cookie string) string{
		"whole cookie": func(c string) string { return "cookie rejected: " + c },
		"lt_token":     func(string) string { return "bad token " + tok + " (expired?)" },
		"refresh":      func(string) string { return "refresh token " + refresh + " revoked" },
		"signature":    func(string) string { return "signature " + signature + " does not verify" },
		"quoted token": func(string) string { return `lt_token="` + tok + `"` },
	}
	cookiesToTry := map[string]string{
		"canonical cookie": valid,
		// A stray segment makes cookies.Parse fail; secrets must still be found.
		"unparsable cookie": valid + "; stray-segment-without-equals",
	}
	for cname, cookie := range cookiesToTry {
		for ename, echo := range echoes {
			for _, status := range []int{401, 422, 429, 500} {
				t.Run(fmt.Sprintf("%s/%s/%d", cname, ename, status), func(t *testing.T) {
					t.Parallel()
					c := setupStub(t, func(w http.ResponseWriter, r *http.Request) {
						got := r.Header.Get(ltxstudio.HeaderCookie)
						w.WriteHeader(status)
						json.NewEncoder(w).Encode(ltxstudio.ErrorResponse{Error: ltxstudio.ErrorDetail{
							Code: echo(got), Message: echo(got)}})
					})
					a := provider.Account{Email: "echo@example.com", Cookie: cookie}
					_, err := c.Submit(context.Background(), a, submission("job1/1"))
					assertNoCredentials(t, err, cookie, tok, refresh, signature)
					if pe := asProviderError(t, err); !strings.Contains(pe.Message, "[redacted]") {
						t.Errorf("Message %q: want the echoed secret replaced by [redacted]", pe.Message)
					}
				})
			}
		}
	}
}

func asProviderError(t *testing.T, err error) *provider.Error {
	t.Helper()
	if err == nil {
		t.Fatal("got no error")
	}
	pe, ok := errors.AsType[*provider.Error](err)
	if !ok {
		t.Fatalf("%v is not a *provider.Error", err)
	}
	return pe
}

func assertNoCredentials(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("got no error")
	}
	pe := asProviderError(t, err)
	for _, s := range secrets {
		for where, text := range map[string]string{"Error()": err.Error(), "Message": pe.Message} {
			if strings.Contains(text, s) {
				t.Errorf("%s %q contains a credential (%.12s…)", where, text, s)
			}
		}
	}
}
