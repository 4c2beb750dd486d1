package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/pgtest"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/sim"
)

// startReplica runs serve in a child process; it is killed at cleanup.
func startReplica(t *testing.T, env map[string]string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperServeEnv+"=1")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logs := &lockedBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, "http://" + logAddr(t, logs, "listening")
}

func call(t *testing.T, method, url, key, body string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, raw)
	}
	return m
}

// TestSIGKILLMidCallIsAnUnknownOutcome SIGKILLs the replica whose LTX-2
// API calls are in flight. The upstream ran them, and poolgate cannot ask
// it: the replica that rescues the jobs fails the one that did not allow
// resubmission with outcome_unknown and runs the other once more, saying
// so; nothing runs twice silently.
func TestSIGKILLMidCallIsAnUnknownOutcome(t *testing.T) {
	t.Parallel()
	upstream := sim.New(sim.Config{LTXAPIDelay: 3 * time.Second, LTXAPIKeyLimit: 2, Seed: 1}, nil)
	simSrv := httptest.NewServer(upstream)
	t.Cleanup(simSrv.Close)
	dbURL := pgtest.NewURL(t)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"keys", "create", "--tenant", "acme", "--name", "admin"},
		envOf(map[string]string{"DATABASE_URL": dbURL}), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	key, _, _ := strings.Cut(out.String(), "\n")
	env := map[string]string{
		"DATABASE_URL": dbURL, "POOLGATE_SECRET_KEY": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
		"POOLGATE_ADDR": "127.0.0.1:0", "POOLGATE_METRICS_ADDR": "off", "POOLGATE_UPSTREAM_URL": simSrv.URL,
		"POOLGATE_LEASE_TTL": "3s", "POOLGATE_RESULTS_DIR": t.TempDir(), "POOLGATE_REPLICA_ID": "doomed",
	}
	doomed, api := startReplica(t, env)

	call(t, "POST", api+"/v1/accounts", key, `{"provider":"ltx-api","apiKey":"ltxv_sk_kill","name":"k"}`)
	strict := call(t, "POST", api+"/v1/jobs", key, `{"type":"video","provider":"ltx-api","params":{"prompt":"once"}}`)["id"].(string)
	lenient := call(t, "POST", api+"/v1/jobs", key,
		`{"type":"video","provider":"ltx-api","resubmitUnknown":true,"params":{"prompt":"twice is fine"}}`)["id"].(string)
	fp := provider.KeyFingerprint("ltxv_sk_kill")
	deadline := time.Now().Add(20 * time.Second)
	for upstream.Stats().APIKeys[fp].Running < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the calls never reached the upstream: %+v", upstream.Stats().APIKeys)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := doomed.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	doomed.Wait()

	upstream.SetConfig(sim.Config{LTXAPIDelay: 50 * time.Millisecond, LTXAPIKeyLimit: 2, Seed: 1})
	env["POOLGATE_REPLICA_ID"] = "rescuer"
	_, api = startReplica(t, env)
	s := call(t, "GET", api+"/v1/jobs/"+strict+"?wait=60s", key, "")
	l := call(t, "GET", api+"/v1/jobs/"+lenient+"?wait=60s", key, "")

	se, _ := s["error"].(map[string]any)
	if s["state"] != "failed" || se["code"] != "outcome_unknown" || s["attempt"] != 1.0 {
		t.Errorf("strict job: %v; want failed outcome_unknown after one attempt", s)
	}
	if w, _ := l["warning"].(string); l["state"] != "succeeded" || l["attempt"] != 2.0 || !strings.Contains(w, "may run twice") {
		t.Errorf("lenient job: %v; want succeeded on a second attempt, with a warning that it may have run twice", l)
	}
	if st := upstream.Stats().APIKeys[fp]; st.Requests != 3 || st.Limited != 0 {
		t.Errorf("the upstream saw %+v; want 3 calls: one per job and the one resubmission allowed", st)
	}

	// Usage written ahead by either replica, the dead one's included, is
	// rolled up by the replica that is left, and counts every attempt once:
	// two placements before the kill, one after.
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var pending, started, succeeded, failed int64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM usage_pending),
			coalesce(sum(started), 0), coalesce(sum(succeeded), 0), coalesce(sum(failed), 0) FROM usage_hourly`).
			Scan(&pending, &started, &succeeded, &failed); err != nil {
			t.Fatal(err)
		}
		if pending == 0 || time.Now().After(deadline) {
			break
		}
	}
	if pending != 0 || started != 3 || succeeded != 1 || failed != 1 {
		t.Errorf("usage: %d rows pending, %d started, %d succeeded, %d failed; want 0 pending, 3, 1, 1",
			pending, started, succeeded, failed)
	}
}
