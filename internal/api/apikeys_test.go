package api_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/poolgate/poolgate/internal/provider"
)

func TestRegisterAPIKey(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	secretKey := "ltxv_sk_live_5d1f0c2a9b8e7d6c5b4a39281706f5e4"

	r := expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: key,
		body: map[string]any{"provider": "ltx-api", "apiKey": secretKey, "name": "Render-Farm.1"}}), 200)
	a := r.json(t)
	if a["email"] != "render-farm.1" || a["provider"] != "ltx-api" || a["apiKey"] != "…secured…" ||
		a["maxJobs"] != 2.0 || a["status"] != "active" || a["tokenExpire"] != nil {
		t.Errorf("registered key account: %s; want name as identity, masked key, maxJobs 2, no expiry", r.body)
	}
	got := expect(t, e.do(req{method: "GET", path: "/v1/accounts/render-farm.1", key: key}), 200).json(t)
	if got["provider"] != "ltx-api" {
		t.Errorf("GET by name: %v", got)
	}
	// The same key again, unnamed, is named by its fingerprint.
	anon := expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: key,
		body: map[string]any{"provider": "ltx-api", "apiKey": secretKey + "x", "maxJobs": 5}}), 200).json(t)
	if anon["email"] != provider.KeyFingerprint(secretKey+"x") || anon["maxJobs"] != 5.0 {
		t.Errorf("unnamed key account: %v, want named %s", anon, provider.KeyFingerprint(secretKey+"x"))
	}
	// Another tenant does not see it.
	expect(t, e.do(req{method: "GET", path: "/v1/accounts/render-farm.1", key: e.key("other")}), 404)

	var raw []byte
	if err := e.pool.QueryRow(context.Background(), `SELECT cookie FROM accounts WHERE email = 'render-farm.1'`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var dump string
	e.pool.QueryRow(context.Background(), `SELECT string_agg(a::text, '|') FROM accounts a`).Scan(&dump)
	list := expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: key}), 200)
	for where, text := range map[string]string{"response": string(r.body), "list": string(list.body),
		"sealed column": string(raw), "table dump": dump, "logs": e.logs.String()} {
		if strings.Contains(text, secretKey[8:]) {
			t.Errorf("%s contains the API key", where)
		}
	}

	for _, tc := range []struct {
		name, body, field string
	}{
		{"no key", `{"provider":"ltx-api","name":"a"}`, "apiKey"},
		{"key without provider", `{"apiKey":"k","name":"a"}`, "provider"},
		{"cookie with ltx-api", `{"provider":"ltx-api","apiKey":"k","cookie":"lt_token=x"}`, "cookie"},
		{"name with @", `{"provider":"ltx-api","apiKey":"k","name":"a@b.c"}`, "name"},
		{"maxJobs too high", `{"provider":"ltx-api","apiKey":"k","maxJobs":101}`, "maxJobs"},
		{"unknown provider", `{"provider":"sora","apiKey":"k"}`, "provider"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: key, body: tc.body}), 400)
			if r.errorCode(t) != "validation_failed" || !strings.Contains(string(r.body), `"field":"`+tc.field+`"`) {
				t.Errorf("%s", r.body)
			}
		})
	}
}

func TestJobsChooseAProvider(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme")
	expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: key,
		body: map[string]any{"provider": "ltx-api", "apiKey": "ltxv_sk_jobs", "name": "k1"}}), 200)
	expect(t, e.do(req{method: "POST", path: "/v1/accounts", key: key,
		body: map[string]any{"cookie": ltCookie("ann@example.com", future, farOut)}}), 200)

	t.Run("params must fit the provider asked for", func(t *testing.T) {
		for _, tc := range []struct{ body, field string }{
			{`{"type":"video","provider":"ltx-api","params":{"prompt":"x","duration":7}}`, "params.duration"},
			{`{"type":"image","provider":"ltx-api","params":{"prompt":"x"}}`, "type"},
			{`{"type":"video","provider":"ltx-api","params":{"prompt":"x","seed":1}}`, "params"},
			{`{"type":"video","provider":"runway","params":{"prompt":"x"}}`, "provider"},
		} {
			r := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key, body: tc.body}), 400)
			if r.errorCode(t) != "validation_failed" || !strings.Contains(string(r.body), `"field":"`+tc.field+`"`) {
				t.Errorf("%s: %s", tc.body, r.body)
			}
		}
		r := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key,
			body: `{"type":"video","provider":"ltx-api","email":"ann@example.com","params":{"prompt":"x"}}`}), 400)
		if r.errorCode(t) != "provider_mismatch" {
			t.Errorf("pinned to a cookie account while asking for ltx-api: %s", r.body)
		}
	})

	t.Run("batch items ask for a provider each", func(t *testing.T) {
		r := expect(t, e.do(req{method: "POST", path: "/v1/jobs/batch", key: key, body: `{"jobs":[
			{"type":"video","provider":"ltx-api","params":{"prompt":"ok"}},
			{"type":"video","provider":"ltx-api","params":{"prompt":"x","resolution":"640x480"}},
			{"type":"video","provider":"ltx-api","email":"ann@example.com","params":{"prompt":"x"}}]}`}), 200).json(t)
		data, _ := r["data"].([]any)
		if len(data) != 3 {
			t.Fatalf("batch answer: %v", r)
		}
		want := []string{"", "validation_failed", "provider_mismatch"}
		for i, d := range data {
			item, _ := d.(map[string]any)
			ie, _ := item["error"].(map[string]any)
			if code, _ := ie["code"].(string); code != want[i] {
				t.Errorf("item %d: %v, want error code %q", i, item, want[i])
			}
		}
	})

	t.Run("an ltx-api job's result points at poolgate", func(t *testing.T) {
		j := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key,
			body: `{"type":"video","provider":"ltx-api","params":{"prompt":"an eagle","model":"ltx-2-pro","duration":8}}`}), 202).json(t)
		id := j["id"].(string)
		if j["provider"] != "ltx-api" {
			t.Errorf("job: %v", j)
		}
		done := expect(t, e.do(req{method: "GET", path: "/v1/jobs/" + id + "?wait=20s", key: key}), 200).json(t)
		res, _ := done["result"].(map[string]any)
		if done["state"] != "succeeded" || done["email"] != "k1" || res["url"] != "/v1/jobs/"+id+"/result" || res["contentType"] != "video/mp4" {
			t.Fatalf("finished job: %v", done)
		}
		// The video the simulator sent is in the result store, served at
		// the job's result url.
		video := expect(t, e.do(req{method: "GET", path: "/v1/jobs/" + id + "/result", key: key}), 200)
		if ct := video.header.Get("Content-Type"); ct != "video/mp4" || fmt.Sprint(len(video.body)) != fmt.Sprint(res["size"]) ||
			!bytes.Equal(video.body[4:8], []byte("ftyp")) {
			t.Errorf("GET result: %s, %d bytes starting %q; the job's result says size %v", ct, len(video.body), video.body[:min(8, len(video.body))], res["size"])
		}
	})

	t.Run("an image job without a provider stays on LTX Studio", func(t *testing.T) {
		j := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key,
			body: `{"type":"image","params":{"prompt":"a cat"}}`}), 202).json(t)
		if j["provider"] != "ltxstudio" {
			t.Errorf("an image job may run on ltx-api: %v", j)
		}
		done := expect(t, e.do(req{method: "GET", path: "/v1/jobs/" + j["id"].(string) + "?wait=20s", key: key}), 200).json(t)
		if done["state"] != "succeeded" || done["email"] != "ann@example.com" {
			t.Errorf("image job: %v", done)
		}
	})
}

func TestJobDefaultsResubmitUnknown(t *testing.T) {
	t.Parallel()
	e := setup(t)
	admin, reader := e.key("acme"), e.key("acme", "jobs:read", "jobs:write")
	if d := expect(t, e.do(req{method: "GET", path: "/v1/job-defaults", key: reader}), 200).json(t); d["resubmitUnknown"] != false {
		t.Fatalf("defaults: %v, want resubmitUnknown false", d)
	}
	expect(t, e.do(req{method: "PUT", path: "/v1/job-defaults", key: reader, body: `{"resubmitUnknown":true}`}), 403)
	r := expect(t, e.do(req{method: "PUT", path: "/v1/job-defaults", key: admin, body: `{}`}), 400)
	if r.errorCode(t) != "validation_failed" {
		t.Errorf("PUT {}: %s", r.body)
	}
	if d := expect(t, e.do(req{method: "PUT", path: "/v1/job-defaults", key: admin, body: `{"resubmitUnknown":true}`}), 200).json(t); d["resubmitUnknown"] != true {
		t.Fatalf("after PUT: %v", d)
	}
	silent := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: reader, body: `{"type":"video","params":{"prompt":"x"}}`}), 202).json(t)
	refused := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: reader, body: `{"type":"video","resubmitUnknown":false,"params":{"prompt":"x"}}`}), 202).json(t)
	if silent["resubmitUnknown"] != true || refused["resubmitUnknown"] != nil {
		t.Errorf("a job that does not say follows the tenant (%v); one that says false keeps it (%v)", silent["resubmitUnknown"], refused["resubmitUnknown"])
	}
	// Another tenant keeps its own default.
	other := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: e.key("other"), body: `{"type":"video","params":{"prompt":"x"}}`}), 202).json(t)
	if other["resubmitUnknown"] != nil {
		t.Errorf("another tenant's job took acme's default: %v", other)
	}
}
