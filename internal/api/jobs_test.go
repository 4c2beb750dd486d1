package api_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/provider/sim"
)

// addSimAccount registers an account the simulator accepts.
func (e *env) addSimAccount(key, email string, maxJobs int) {
	e.t.Helper()
	expect(e.t, e.do(req{method: "POST", path: "/v1/accounts", key: key, body: map[string]any{
		"cookie": sim.Cookie(email, time.Now().Add(time.Hour), time.Now().Add(90*24*time.Hour)), "maxJobs": maxJobs}}), 200)
}

func TestJobLifecycle(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	e.addSimAccount(key, "a@x.io", 2)

	r := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key,
		body: map[string]any{"type": "video", "params": map[string]any{"prompt": "a cat"}, "replyRef": "r-1"}}), 202)
	job := r.json(t)
	id, _ := job["id"].(string)
	if !strings.HasPrefix(id, "job_") || job["state"] != "queued" || job["replyRef"] != "r-1" {
		t.Fatalf("created job: %s", r.body)
	}
	if r.header.Get("Location") != "/v1/jobs/"+id {
		t.Errorf("Location = %q", r.header.Get("Location"))
	}
	done := expect(t, e.do(req{method: "GET", path: "/v1/jobs/" + id + "?wait=20s", key: key}), 200).json(t)
	if done["state"] != "succeeded" || done["email"] != "a@x.io" || done["result"] == nil || done["finishedUTC"] == nil {
		t.Fatalf("after wait: %v", done)
	}
	if done["attempt"] != 1.0 {
		t.Errorf("attempt = %v, want 1", done["attempt"])
	}
	// Another tenant cannot see it.
	other := e.key("other")
	if c := expect(t, e.do(req{method: "GET", path: "/v1/jobs/" + id, key: other}), 404).errorCode(t); c != "job_not_found" {
		t.Errorf("other tenant got %s", c)
	}
	expect(t, e.do(req{method: "DELETE", path: "/v1/jobs/" + id, key: other}), 404)
}

func TestJobValidation(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	long := strings.Repeat("é", 2001)
	cases := []struct {
		name, path, body, field string
	}{
		{"no type", "/v1/jobs", `{"params":{}}`, "type"},
		{"bad type", "/v1/jobs", `{"type":"audio"}`, "type"},
		{"params not object", "/v1/jobs", `{"type":"video","params":[1]}`, "params"},
		{"bad queueTimeout", "/v1/jobs", `{"type":"video","queueTimeout":"forever"}`, "queueTimeout"},
		{"queueTimeout too long", "/v1/jobs", `{"type":"video","queueTimeout":"48h"}`, "queueTimeout"},
		{"maxAttempts too big", "/v1/jobs", `{"type":"video","maxAttempts":11}`, "maxAttempts"},
		{"priority too big", "/v1/jobs", `{"type":"video","priority":1000}`, "priority"},
		{"replyUrl not http", "/v1/jobs", `{"type":"video","replyUrl":"ftp://x.io/a"}`, "replyUrl"},
		{"video without prompt", "/v1/videos/create", `{}`, "prompt"},
		{"video prompt too long", "/v1/videos/create", `{"prompt":"` + long + `"}`, "prompt"},
		{"video bad model", "/v1/videos/create", `{"prompt":"x","model":"sora"}`, "model"},
		{"video bad duration", "/v1/videos/create", `{"prompt":"x","duration":7}`, "duration"},
		{"video bad resolution", "/v1/videos/create", `{"prompt":"x","resolution":"8k"}`, "resolution"},
		{"image bad aspect", "/v1/images/create", `{"prompt":"x","aspectRatio":"2:1"}`, "aspectRatio"},
		{"image unknown field", "/v1/images/create", `{"prompt":"x","duration":6}`, "duration"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := expect(t, e.do(req{method: "POST", path: c.path, key: key, body: c.body}), 400)
			if code := r.errorCode(t); code != "validation_failed" {
				t.Errorf("code %s: %s", code, r.body)
			}
			if !strings.Contains(string(r.body), `"field":"`+c.field+`"`) {
				t.Errorf("error does not name field %s: %s", c.field, r.body)
			}
		})
	}
	r := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key, body: `{"type":"video","email":"nobody@x.io"}`}), 400)
	if r.errorCode(t) != "unknown_account" {
		t.Errorf("pin to unknown account: %s", r.body)
	}
	var n int
	e.pool.QueryRow(t.Context(), `SELECT count(*) FROM jobs`).Scan(&n)
	if n != 0 {
		t.Errorf("%d jobs stored from invalid requests", n)
	}
}

func TestTypedEndpointsFillDefaults(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	r := expect(t, e.do(req{method: "POST", path: "/v1/videos/create", key: key, body: `{"prompt":"a boat"}`}), 202).json(t)
	p := r["params"].(map[string]any)
	if r["type"] != "video" || p["model"] != "ltxv-2-fast" || p["duration"] != 6.0 || p["resolution"] != "1080p" {
		t.Errorf("video defaults: %v", r)
	}
	if r["warning"] == nil {
		t.Error("a job for a pool without accounts should carry a warning")
	}
	r = expect(t, e.do(req{method: "POST", path: "/v1/images/create", key: key, body: `{"prompt":"a boat","aspectRatio":"1:1"}`}), 202).json(t)
	if r["type"] != "image" || r["params"].(map[string]any)["aspectRatio"] != "1:1" {
		t.Errorf("image job: %v", r)
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	hdr := map[string]string{"Idempotency-Key": "order-42"}
	first := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key, header: hdr, body: `{"type":"image","params":{"prompt":"x"}}`}), 202).json(t)
	again := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key, header: hdr, body: `{"type":"image","params":{"prompt":"x"}}`}), 200)
	if again.json(t)["id"] != first["id"] || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay returned %s", again.body)
	}
	r := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key, header: hdr, body: `{"type":"image","params":{"prompt":"y"}}`}), 409)
	if r.errorCode(t) != "idempotency_key_reused" {
		t.Errorf("different body: %s", r.body)
	}
	// The same key in another tenant is another key.
	expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: e.key("other"), header: hdr, body: `{"type":"image"}`}), 202)

	var wg sync.WaitGroup
	ids := make([]string, 10)
	for i := range ids {
		wg.Go(func() {
			r := e.do(req{method: "POST", path: "/v1/jobs", key: key, header: map[string]string{"Idempotency-Key": "burst"}, body: `{"type":"video"}`})
			if r.status == 202 || r.status == 200 {
				ids[i], _ = r.json(t)["id"].(string)
			}
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id == "" || id != ids[0] {
			t.Fatalf("concurrent requests with one Idempotency-Key made jobs %v", ids)
		}
	}
}

func TestListJobsAndCancel(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	var created []string
	for i := range 5 {
		r := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key, body: fmt.Sprintf(`{"type":"video","priority":%d}`, i)}), 202)
		created = append(created, r.json(t)["id"].(string))
	}
	var seen []string
	cursor := ""
	for range 10 {
		page := expect(t, e.do(req{method: "GET", path: "/v1/jobs?limit=2&state=queued&cursor=" + cursor, key: key}), 200).json(t)
		for _, j := range page["data"].([]any) {
			seen = append(seen, j.(map[string]any)["id"].(string))
		}
		next, _ := page["nextCursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(seen) != 5 || seen[0] != created[4] || seen[4] != created[0] {
		t.Errorf("pages gave %v; want all 5 newest first (%v)", seen, created)
	}
	c := expect(t, e.do(req{method: "DELETE", path: "/v1/jobs/" + created[0], key: key}), 200).json(t)
	if c["state"] != "canceled" {
		t.Errorf("cancel queued job: %v", c)
	}
	if code := expect(t, e.do(req{method: "DELETE", path: "/v1/jobs/" + created[0], key: key}), 409).errorCode(t); code != "job_finished" {
		t.Errorf("cancel twice: %s", code)
	}
	for _, q := range []string{"state=done", "limit=0", "limit=x"} {
		expect(t, e.do(req{method: "GET", path: "/v1/jobs?" + q, key: key}), 400)
	}
	expect(t, e.do(req{method: "GET", path: "/v1/jobs/" + created[1] + "?wait=2h", key: key}), 400)
}

func TestSchedulerViews(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	e.addSimAccount(key, "a@x.io", 3)
	e.addSimAccount(key, "b@x.io", 1)
	a := expect(t, e.do(req{method: "GET", path: "/v1/scheduler/available", key: key}), 200).json(t)
	if a["executing"] != 0.0 || len(a["available"].([]any)) != 2 {
		t.Errorf("available: %v", a)
	}
	if r := expect(t, e.do(req{method: "GET", path: "/v1/scheduler", key: key}), 200); strings.TrimSpace(string(r.body)) != "[]" {
		t.Errorf("running with nothing running: %s", r.body)
	}
}

// TestWebhookOnFinish checks the whole path: a job with replyUrl ends and
// its model is POSTed, signed, to the producer.
func TestWebhookOnFinish(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	e.addSimAccount(key, "a@x.io", 1)
	got := make(chan http.Header, 1)
	bodies := make(chan string, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case got <- r.Header:
			bodies <- string(b)
		default:
		}
	}))
	defer hook.Close()
	e.startDeliverer()
	r := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key,
		body: map[string]any{"type": "image", "replyUrl": hook.URL + "/done", "replyRef": "ref-9"}}), 202).json(t)
	select {
	case h := <-got:
		body := <-bodies
		if h.Get("Poolgate-Delivery") == "" || h.Get("webhook-signature") == "" || h.Get("webhook-id") != h.Get("Poolgate-Delivery") {
			t.Errorf("webhook headers: %v", h)
		}
		if !strings.Contains(body, r["id"].(string)) || !strings.Contains(body, `"state":"succeeded"`) || !strings.Contains(body, "ref-9") {
			t.Errorf("webhook body: %s", body)
		}
		if err := e.verifyWebhook(h, []byte(body)); err != nil {
			t.Errorf("signature: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no webhook within 20s")
	}
}

func TestJobParamsWithNULAreRefused(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	for path, body := range map[string]string{
		"/v1/jobs":          `{"type":"video","params":{"prompt":"a\u0000b"}}`,
		"/v1/videos/create": `{"prompt":"a\u0000b"}`,
	} {
		r := expect(t, e.do(req{method: "POST", path: path, key: key, body: body}), 400)
		if r.errorCode(t) != "validation_failed" {
			t.Errorf("%s: %s", path, r.body)
		}
	}
}
