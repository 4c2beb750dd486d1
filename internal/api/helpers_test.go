package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/alerts"
	"github.com/poolgate/poolgate/internal/api"
	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/pgtest"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/ltxapi"
	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/results"
	"github.com/poolgate/poolgate/internal/scheduler"
	"github.com/poolgate/poolgate/internal/secret"
	"github.com/poolgate/poolgate/internal/tenant"
	"github.com/poolgate/poolgate/internal/usage"
	"github.com/poolgate/poolgate/internal/webhooks"
)

// env is one test's world: a fresh database and one or more API servers on
// loopback sharing it, like replicas.
type env struct {
	t    *testing.T
	pool *pgxpool.Pool
	box  *secret.Box
	logs *syncBuffer
	urls []string
	// sim is the upstream every replica's scheduler talks to.
	sim    *sim.Server
	simURL string
	// secrets are the webhook signing secrets every replica and the
	// deliverer share, as in serve.
	secrets *webhooks.Secrets
	// results is the result store every replica shares.
	results results.Store
}

func setup(t *testing.T) *env {
	t.Helper()
	return setupWith(t, nil)
}

// setupWith is setup with the replicas serving results from store (nil: a
// fresh directory store).
func setupWith(t *testing.T, store results.Store) *env {
	t.Helper()
	if store == nil {
		d, err := results.NewDir(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		store = d
	}
	key := make([]byte, secret.KeySize)
	rand.Read(key)
	box, err := secret.NewBox(key)
	if err != nil {
		t.Fatal(err)
	}
	simCfg := sim.DefaultConfig()
	simCfg.JobDuration, simCfg.Jitter = 100*time.Millisecond, 0
	upstream := sim.New(simCfg, nil)
	simSrv := httptest.NewServer(upstream)
	t.Cleanup(simSrv.Close)
	e := &env{t: t, pool: pgtest.New(t), box: box, logs: &syncBuffer{}, sim: upstream, simURL: simSrv.URL, results: store}
	e.secrets = webhooks.NewSecrets(e.pool, box)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server logs:\n%s", e.logs)
		}
	})
	e.addServer()
	return e
}

// addServer starts another replica on the same database.
func (e *env) addServer() string {
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	accountStore := accounts.NewStore(e.pool, e.box, time.Now).WithHooks(accounts.Hooks{
		OnRegister: []accounts.RegisterHook{scheduler.AdoptJobs, alerts.ResolveAccount},
	})
	var usageHooks usage.Hooks
	sched := scheduler.New(scheduler.Config{
		Pool: e.pool, Accounts: accountStore, Logger: logger,
		Providers: map[string]provider.Provider{
			provider.NameLTXStudio: ltxstudio.New(e.simURL, nil),
			provider.NameLTXAPI:    ltxapi.New(e.simURL, e.results, nil),
		},
		LeaseTTL: 3 * time.Second, PollInterval: 20 * time.Millisecond, WakeInterval: 200 * time.Millisecond,
		OnFinish:  scheduler.FinishHooks(api.JobWebhook(nil), usageHooks.Finished),
		OnStarted: usageHooks.Started, OnRetried: usageHooks.Retried,
	})
	sched.Start(context.Background())
	srv := httptest.NewServer(api.New(api.Deps{
		Logger:               logger,
		DB:                   e.pool,
		Keys:                 auth.NewStore(e.pool, time.Now),
		Accounts:             accountStore,
		Jobs:                 sched,
		Alerts:               alerts.NewStore(e.pool, time.Now, true),
		UsageStats:           usage.NewStore(e.pool),
		Secrets:              e.secrets,
		AllowPrivateWebhooks: true,
		Results:              e.results,
	}))
	e.t.Cleanup(func() {
		srv.Close()
		stopWithin(sched, time.Second)
	})
	e.urls = append(e.urls, srv.URL)
	return srv.URL
}

// key issues a key in tenant; no scopes means all of them.
func (e *env) key(tenantName string, scopes ...string) string {
	return e.keyMode(tenantName, tenant.Live, scopes...)
}

func (e *env) keyMode(tenantName string, mode tenant.Mode, scopes ...string) string {
	e.t.Helper()
	_, secret, err := auth.NewStore(e.pool, time.Now).Bootstrap(context.Background(), tenantName,
		auth.KeyParams{Name: "test", Mode: mode, Scopes: scopes})
	if err != nil {
		e.t.Fatalf("issue key: %v", err)
	}
	return secret
}

// startDeliverer runs a webhook deliverer on the test database.
func (e *env) startDeliverer() {
	d := webhooks.NewDeliverer(webhooks.DelivererConfig{
		Pool: e.pool, Secrets: e.secrets, AllowPrivate: true,
		PollInterval: 50 * time.Millisecond,
	})
	d.Start(context.Background())
	e.t.Cleanup(func() { d.Stop(context.Background()) })
}

// verifyWebhook checks a delivery's signature with the acme tenant's secret.
func (e *env) verifyWebhook(h http.Header, body []byte) error {
	var tenantID int64
	e.pool.QueryRow(context.Background(), `SELECT id FROM tenants WHERE name = 'acme'`).Scan(&tenantID)
	secret, err := webhooks.NewSecrets(e.pool, e.box).Get(context.Background(), tenantID)
	if err != nil {
		return err
	}
	return webhooks.Verify(secret, h, body, time.Now(), 5*time.Minute)
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body as an object.
func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response body is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

// errorCode returns error.code of an envelope, checking the envelope's shape.
func (r response) errorCode(t *testing.T) string {
	t.Helper()
	m := r.json(t)
	e, ok := m["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object in %s", r.body)
	}
	for _, f := range []string{"type", "code", "message"} {
		if s, _ := e[f].(string); s == "" {
			t.Fatalf("error envelope lacks %s: %s", f, r.body)
		}
	}
	if id, _ := m["request_id"].(string); id == "" || id != r.header.Get("X-Request-Id") {
		t.Fatalf("request_id %q does not match X-Request-Id %q", id, r.header.Get("X-Request-Id"))
	}
	return e["code"].(string)
}

// req describes one request; body may be a string/[]byte (sent as is) or
// anything else (sent as JSON).
type req struct {
	method, path, key string
	body              any
	header            map[string]string
	server            int
}

func (e *env) do(r req) response {
	e.t.Helper()
	var body io.Reader
	switch b := r.body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	case io.Reader:
		body = struct{ io.Reader }{b} // hides the length: sent chunked
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		body = bytes.NewReader(raw)
	}
	hr, err := http.NewRequest(r.method, e.urls[r.server]+r.path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.key != "" {
		hr.Header.Set("Authorization", "Bearer "+r.key)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		e.t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("X-Request-Id") == "" {
		e.t.Errorf("%s %s: response lacks X-Request-Id", r.method, r.path)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: raw}
}

// expect fails unless the response has status.
func expect(t *testing.T, r response, status int) response {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body: %s", r.status, status, r.body)
	}
	return r
}

// jwt makes an unsigned-looking JWT with the given claims; poolgate never
// checks signatures, only reads exp and email.
func jwt(claims map[string]any) string {
	enc := base64.RawURLEncoding
	payload, _ := json.Marshal(claims)
	return enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
		enc.EncodeToString(payload) + "." + enc.EncodeToString([]byte("signature-"+rand.Text()))
}

// ltCookie is a browser cookie string for email whose lt_token expires at
// tokenExp and whose (JWT) refresh token expires at refreshExp.
func ltCookie(email string, tokenExp, refreshExp time.Time) string {
	return fmt.Sprintf("lt_id=%s; lt_token=%s; lt_refresh_token=%s; theme=dark",
		rand.Text()[:8],
		jwt(map[string]any{"email": email, "exp": tokenExp.Unix()}),
		jwt(map[string]any{"exp": refreshExp.Unix()}))
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// stopWithin stops s, giving its jobs in flight grace to end.
func stopWithin(s *scheduler.Scheduler, grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	s.Stop(ctx)
}
