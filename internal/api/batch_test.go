package api_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestJobBatch: one request queues many jobs; each item is answered on its
// own, in order, with the status a single POST /v1/jobs would have had.
func TestJobBatch(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	e.addSimAccount(key, "a@x.io", 5)

	// An earlier single request with an idempotency key.
	first := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key,
		header: map[string]string{"Idempotency-Key": "k-1"}, body: `{"type":"image","params":{"prompt":"x"}}`}), 202).json(t)
	expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key,
		header: map[string]string{"Idempotency-Key": "k-3"}, body: `{"type":"image","params":{"prompt":"z"}}`}), 202)

	body := `{"jobs":[
		{"type":"video","params":{"prompt":"one"},"replyRef":"r-0"},
		{"type":"sound"},
		{"type":"image","params":{"prompt":"x"},"idempotencyKey":"k-1"},
		{"type":"image","params":{"prompt":"y"},"idempotencyKey":"k-3"},
		{"type":"video","email":"nobody@x.io"},
		{"type":"video","params":{"prompt":"two"},"idempotencyKey":"k-2"},
		{"type":"video","params":{"prompt":"three"},"idempotencyKey":"k-2"},
		{"type":"video","bogus":1},
		{"type":"video","email":"a@x.io"}
	]}`
	r := expect(t, e.do(req{method: "POST", path: "/v1/jobs/batch", key: key, body: body}), 200).json(t)
	data, _ := r["data"].([]any)
	if len(data) != 9 {
		t.Fatalf("got %d results for 9 items: %v", len(data), r)
	}
	item := func(i int) map[string]any { return data[i].(map[string]any) }
	code := func(i int) string {
		e, _ := item(i)["error"].(map[string]any)
		c, _ := e["code"].(string)
		return c
	}
	want := []struct {
		status float64
		code   string
	}{
		{202, ""}, {400, "validation_failed"}, {200, ""}, {409, "idempotency_key_reused"}, {400, "unknown_account"},
		{202, ""}, {400, "duplicate_idempotency_key"}, {400, "validation_failed"}, {202, ""},
	}
	for i, w := range want {
		if item(i)["status"] != w.status || code(i) != w.code {
			t.Errorf("item %d: status %v code %q, want %v %q (%v)", i, item(i)["status"], code(i), w.status, w.code, item(i))
		}
	}
	if job, _ := item(0)["job"].(map[string]any); job["replyRef"] != "r-0" || job["state"] != "queued" {
		t.Errorf("item 0's job: %v", job)
	}
	if job, _ := item(2)["job"].(map[string]any); job["id"] != first["id"] || item(2)["replayed"] != true {
		t.Errorf("item 2 should replay job %v: %v", first["id"], item(2))
	}
	if r["accepted"] != 4.0 || r["failed"] != 5.0 {
		t.Errorf("accepted %v failed %v, want 4 and 5", r["accepted"], r["failed"])
	}
	// The queued ones run; nothing else was stored.
	list := expect(t, e.do(req{method: "GET", path: "/v1/jobs?limit=100", key: key}), 200).json(t)
	if n := len(list["data"].([]any)); n != 5 { // the two single ones and three from the batch
		t.Errorf("%d jobs stored, want 5", n)
	}
	// k-2 now names item 5's job: sending it alone replays it.
	again := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key,
		header: map[string]string{"Idempotency-Key": "k-2"}, body: `{"type":"video","params":{"prompt":"two"}}`}), 200).json(t)
	if job, _ := item(5)["job"].(map[string]any); again["id"] != job["id"] {
		t.Errorf("k-2 alone answered job %v, the batch made %v", again["id"], job["id"])
	}
}

func TestJobBatchLimits(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	var b strings.Builder
	b.WriteString(`{"jobs":[`)
	for i := range 1001 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"video"}`)
	}
	b.WriteString(`]}`)
	if c := expect(t, e.do(req{method: "POST", path: "/v1/jobs/batch", key: key, body: b.String()}), 400).errorCode(t); c != "batch_too_large" {
		t.Errorf("1001 jobs: %s", c)
	}
	for _, body := range []string{`{"jobs":[]}`, `{}`, `{"jobs":{}}`, `[]`} {
		expect(t, e.do(req{method: "POST", path: "/v1/jobs/batch", key: key, body: body}), 400)
	}
	// Scope: a read-only key cannot queue.
	ro := e.key("acme", "jobs:read")
	expect(t, e.do(req{method: "POST", path: "/v1/jobs/batch", key: ro, body: `{"jobs":[{"type":"video"}]}`}), 403)
}
