package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/poolgate/poolgate/internal/pgtest"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// logAddr waits for the log line msg and returns its addr field.
func logAddr(t *testing.T, logs *lockedBuffer, msg string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(logs.String(), "\n") {
			var l struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == msg {
				return l.Addr
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %q log line within 20s:\n%s", msg, logs.String())
	return ""
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsOnTheirOwnAddress: /metrics used to be public on the API port,
// listing every tenant's account emails to anyone who could reach it.
func TestMetricsOnTheirOwnAddress(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var logs lockedBuffer
	done := make(chan error, 1)
	url := pgtest.NewURL(t)
	// A tenant, so the per-tenant series have something to show.
	if err := run(ctx, []string{"keys", "create", "--tenant", "acme", "--name", "admin"}, envOf(map[string]string{"DATABASE_URL": url}), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	go func() {
		done <- run(ctx, []string{"serve"}, envOf(map[string]string{
			"DATABASE_URL": url, "POOLGATE_SECRET_KEY": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
			"POOLGATE_ADDR": "127.0.0.1:0", "POOLGATE_METRICS_ADDR": "127.0.0.1:0", "POOLGATE_SHUTDOWN_TIMEOUT": "2s",
			"POOLGATE_RESULTS_DIR": t.TempDir(),
		}), io.Discard, &logs)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	api := "http://" + logAddr(t, &logs, "listening")
	metrics := "http://" + logAddr(t, &logs, "serving metrics")
	if api == metrics {
		t.Fatal("metrics share the API's address")
	}
	if status, _ := get(t, api+"/metrics"); status != http.StatusNotFound {
		t.Errorf("GET /metrics on the API port: %d, want 404", status)
	}
	status, body := get(t, metrics+"/metrics")
	if status != http.StatusOK || !strings.Contains(body, "poolgate_placements_total") {
		t.Errorf("GET /metrics on the metrics port: %d\n%.300s", status, body)
	}
	checkExposition(t, body)
}

// checkExposition holds a real scrape to promtool's rules and to what the
// outside review found missing: an expiring status, a queue gauge that
// stays when the queue is empty, a wait histogram that reaches past the
// default queueTimeout, and a count of failed collector reads.
func checkExposition(t *testing.T, body string) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed: make test installs it (scripts/tools.sh promtool), or apt-get install prometheus")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	for _, want := range []string{
		`poolgate_accounts{status="expiring"} 0`,
		`poolgate_jobs_queued{mode="live",tenant="acme"} 0`,
		`poolgate_job_wait_seconds_bucket{le="181898.9`, // the largest bucket before +Inf, 50 h > the 24 h longest queueTimeout
		`poolgate_metrics_collect_errors_total{collector="accounts"} 0`,
		`poolgate_metrics_collect_errors_total{collector="scheduler"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the scrape lacks %s", want)
		}
	}
}

func TestMetricsConfig(t *testing.T) {
	t.Parallel()
	base := map[string]string{"DATABASE_URL": "postgres://x", "POOLGATE_SECRET_KEY": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}
	c, err := loadConfig(envOf(base))
	if err != nil || c.MetricsAddr != "127.0.0.1:9464" || c.MetricsAccountLabel != "email" {
		t.Errorf("defaults: %q %q %v", c.MetricsAddr, c.MetricsAccountLabel, err)
	}
	base["POOLGATE_METRICS_ACCOUNT_LABEL"] = "name"
	if _, err := loadConfig(envOf(base)); err == nil || !strings.Contains(err.Error(), "POOLGATE_METRICS_ACCOUNT_LABEL") {
		t.Errorf("bad label mode: %v", err)
	}
}

// TestHashedAccountLabel: with POOLGATE_METRICS_ACCOUNT_LABEL=hash no email
// reaches a scrape, and accounts stay apart.
func TestHashedAccountLabel(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "poolgate_account_running_jobs", Help: "h"}, []string{"tenant", "mode", "email"})
	reg.MustRegister(g)
	g.WithLabelValues("acme", "live", "ann@x.io").Set(1)
	g.WithLabelValues("acme", "live", "bob@x.io").Set(2)
	mfs, err := hashedAccounts{reg}.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	enc := expfmt.NewEncoder(&out, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		enc.Encode(mf)
	}
	text := out.String()
	if strings.Contains(text, "@x.io") || strings.Contains(text, "email=") {
		t.Errorf("emails in the scrape:\n%s", text)
	}
	for _, e := range []string{"ann@x.io", "bob@x.io"} {
		if !strings.Contains(text, `account="`+accountPseudonym(e)+`"`) {
			t.Errorf("no series for %s:\n%s", e, text)
		}
	}
}
