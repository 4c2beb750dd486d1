package console_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
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
	"github.com/poolgate/poolgate/internal/console"
	"github.com/poolgate/poolgate/internal/pgtest"
	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/scheduler"
	"github.com/poolgate/poolgate/internal/secret"
	"github.com/poolgate/poolgate/internal/usage"
	"github.com/poolgate/poolgate/internal/webhooks"
)

// world is one test's poolgate: a fresh database, the upstream simulator,
// and the real router (API and console) on loopback, wired as serve does.
type world struct {
	t       *testing.T
	pool    *pgxpool.Pool
	url     string
	keys    *auth.Store
	alerter *alerts.Service
	logs    *syncBuffer
}

func newWorld(t *testing.T, jobDuration time.Duration) *world {
	t.Helper()
	key := make([]byte, secret.KeySize)
	rand.Read(key)
	box, err := secret.NewBox(key)
	if err != nil {
		t.Fatal(err)
	}
	simCfg := sim.DefaultConfig()
	simCfg.JobDuration, simCfg.Jitter = jobDuration, 0
	simSrv := httptest.NewServer(sim.New(simCfg, nil))
	t.Cleanup(simSrv.Close)

	w := &world{t: t, pool: pgtest.New(t), logs: &syncBuffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server logs:\n%s", w.logs)
		}
	})
	logger := slog.New(slog.NewJSONHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	accountStore := accounts.NewStore(w.pool, box, time.Now)
	var usageHooks usage.Hooks
	sched := scheduler.New(scheduler.Config{
		Pool: w.pool, Accounts: accountStore, Provider: ltxstudio.New(simSrv.URL, nil), Logger: logger,
		LeaseTTL: 3 * time.Second, PollInterval: 50 * time.Millisecond, WakeInterval: 200 * time.Millisecond,
		OnFinish:  scheduler.FinishHooks(api.JobWebhook(nil), usageHooks.Finished),
		OnStarted: usageHooks.Started, OnRetried: usageHooks.Retried,
	})
	usageStore := usage.NewStore(w.pool)
	sched.Start(context.Background())
	w.keys = auth.NewStore(w.pool, time.Now)
	alertStore := alerts.NewStore(w.pool, time.Now, true)
	thresholds, _ := alerts.ParseThresholds("7d,3d,1d")
	w.alerter, err = alerts.New(alerts.Config{Pool: w.pool, Logger: logger, Schedule: "@every 1h", Thresholds: thresholds})
	if err != nil {
		t.Fatal(err)
	}
	deliverer := webhooks.NewDeliverer(webhooks.DelivererConfig{
		Pool: w.pool, Secrets: webhooks.NewSecrets(w.pool, box), AllowPrivate: true, Logger: logger,
		PollInterval: 50 * time.Millisecond,
	})
	deliverer.Start(context.Background())
	srv := httptest.NewServer(api.New(api.Deps{
		Logger: logger, DB: w.pool, Keys: w.keys, Accounts: accountStore, Jobs: sched, Alerts: alertStore,
		UsageStats: usageStore, AllowPrivateWebhooks: true,
		Console: console.New(console.Deps{
			Logger: logger, Verifier: w.keys, Accounts: accountStore, Jobs: sched, Alerts: alertStore, Keys: w.keys,
			Stats: scheduler.NewStats(w.pool), Sessions: auth.NewSessionStore(w.pool, box, time.Now, console.DefaultTimeouts),
			Deliveries: webhooks.NewDeliveryLog(w.pool), ChartTTL: -1, Usage: usageStore,
		}),
	}))
	t.Cleanup(func() {
		srv.Close()
		deliverer.Stop(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		sched.Stop(ctx)
	})
	w.url = srv.URL
	return w
}

// key issues a key in tenant acme; no scopes means all of them.
func (w *world) key(name string, scopes ...string) string {
	w.t.Helper()
	_, secret, err := w.keys.Bootstrap(context.Background(), "acme", auth.KeyParams{Name: name, Scopes: scopes})
	if err != nil {
		w.t.Fatalf("issue key: %v", err)
	}
	return secret
}

// api calls the JSON API and decodes the answer.
func (w *world) api(method, path, key string, body any) (int, map[string]any) {
	w.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, w.url+path, rd)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var m map[string]any
	raw, _ := io.ReadAll(resp.Body)
	json.Unmarshal(raw, &m)
	return resp.StatusCode, m
}

// mustAPI is api that fails the test unless the status is want.
func (w *world) mustAPI(want int, method, path, key string, body any) map[string]any {
	w.t.Helper()
	status, m := w.api(method, path, key, body)
	if status != want {
		w.t.Fatalf("%s %s: status %d, want %d: %v", method, path, status, want, m)
	}
	return m
}

// register adds an account through the API whose refresh token expires
// after refreshIn.
func (w *world) register(key, email string, maxJobs int, refreshIn time.Duration) {
	w.t.Helper()
	now := time.Now()
	w.mustAPI(http.StatusOK, http.MethodPost, "/v1/accounts", key, map[string]any{
		"cookie": sim.Cookie(email, now.Add(time.Hour), now.Add(refreshIn)), "maxJobs": maxJobs})
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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
