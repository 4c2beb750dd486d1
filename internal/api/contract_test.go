package api_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/ids"
	"github.com/poolgate/poolgate/internal/tenant"
)

// operation is one documented operation with what the document says it
// answers: status → the error codes that status may carry ("" for a 2xx).
type operation struct {
	id, method, path string
	body             bool // takes a request body
	statuses         map[string][]string
}

// loadContract reads openapi.yaml's operations, resolving each response's
// x-codes through components.responses.
func loadContract(t *testing.T, raw []byte) []operation {
	t.Helper()
	var doc struct {
		Paths      map[string]map[string]yaml.Node `yaml:"paths"`
		Components struct {
			Responses map[string]struct {
				Codes []string `yaml:"x-codes"`
			} `yaml:"responses"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var ops []operation
	for path, methods := range doc.Paths {
		for method, node := range methods {
			if method == "parameters" {
				continue
			}
			var op struct {
				ID          string `yaml:"operationId"`
				RequestBody any    `yaml:"requestBody"`
				Responses   map[string]struct {
					Ref   string   `yaml:"$ref"`
					Codes []string `yaml:"x-codes"`
				} `yaml:"responses"`
			}
			if err := node.Decode(&op); err != nil {
				t.Fatal(err)
			}
			o := operation{id: op.ID, method: strings.ToUpper(method), path: path, body: op.RequestBody != nil, statuses: map[string][]string{}}
			for status, r := range op.Responses {
				codes := r.Codes
				if name, ok := strings.CutPrefix(r.Ref, "#/components/responses/"); ok {
					codes = append(codes, doc.Components.Responses[name].Codes...)
				}
				o.statuses[status] = codes
			}
			ops = append(ops, o)
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].id < ops[j].id })
	return ops
}

var pathParam = regexp.MustCompile(`\{(\w+)\}`)

// fill puts value in every path parameter of p.
func fill(p, value string) string { return pathParam.ReplaceAllString(p, value) }

// TestEveryAnswerIsDocumented drives every documented operation through
// the ways a client gets it wrong (no key, a bad key, a missing scope, a
// spent rate limit, repeated headers, bad characters, bad and oversized
// bodies, unknown ids) and right, and fails on any status, or error code
// for a status, that openapi.yaml does not list for that operation.
func TestEveryAnswerIsDocumented(t *testing.T) {
	t.Parallel()
	e := setup(t)
	limited := e.addReplica(auth.RateLimit{})
	raw := expect(t, e.do(req{method: "GET", path: "/openapi.yaml"}), 200).body
	ops := loadContract(t, raw)

	admin := e.key("acme")
	testKey := e.keyMode("acme", tenant.Test)
	readOnly := e.key("acme", auth.ScopeAlertsRead)
	jobsOnly := e.key("acme", auth.ScopeJobsRead)
	past := time.Now().Add(-time.Minute)
	_, expired, err := auth.NewStore(e.pool, time.Now).Bootstrap(context.Background(), "acme", auth.KeyParams{Name: "old", ExpiresAt: &past})
	if err != nil {
		t.Fatal(err)
	}
	e.addSimAccount(admin, "real@x.io", 2)
	job := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: admin, body: `{"type":"video"}`}), 202).json(t)["id"].(string)
	done := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: admin, body: `{"type":"video"}`}), 202).json(t)["id"].(string)
	expect(t, e.do(req{method: "GET", path: "/v1/jobs/" + done + "?wait=20s", key: admin}), 200)
	// Two more that succeed, one with a stored result and one whose stored
	// result is gone from the store.
	stored := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: admin, body: `{"type":"video"}`}), 202).json(t)["id"].(string)
	gone := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: admin, body: `{"type":"video"}`}), 202).json(t)["id"].(string)
	for _, id := range []string{stored, gone} {
		expect(t, e.do(req{method: "GET", path: "/v1/jobs/" + id + "?wait=20s", key: admin}), 200)
		e.storeResult(id, bytes.Repeat([]byte("v"), 99))
	}
	e.results.Delete(context.Background(), gone)

	type seen struct{ op, status, code string }
	var got []seen
	record := func(o operation, r response) {
		code := ""
		switch {
		case r.status < 400:
		case strings.HasPrefix(o.path, "/v1/ltxstudio/"):
			useapiErr(t, r) // useapi's shape has no code to judge; its status is judged
		default:
			code = r.errorCode(t)
		}
		got = append(got, seen{o.id, fmt.Sprint(r.status), code})
	}
	unknown := map[string]string{"/v1/accounts/{email}": "nobody@x.io", "/v1/accounts/{email}/stats": "nobody@x.io", "/v1/jobs/{id}": ids.New("job", time.Now()),
		"/v1/jobs/{id}/result": ids.New("job", time.Now()),
		"/v1/keys/{id}":        ids.New("key", time.Now()), "/v1/keys/{id}/roll": ids.New("key", time.Now()),
		"/v1/alerts/{id}/ack": ids.New("alr", time.Now()), "/v1/ltxstudio/accounts/{email}": "nobody@x.io"}
	goodBody := map[string]string{
		"registerAccount": `{"cookie":"` + ltCookie("new@x.io", time.Now().Add(time.Hour), time.Now().Add(90*24*time.Hour)) + `"}`,
		"updateAccount":   `{"maxJobs":3}`, "createJob": `{"type":"image"}`, "createVideo": `{"prompt":"a fox"}`,
		"createImage": `{"prompt":"a fox"}`, "createKey": `{"name":"k"}`, "rollKey": `{"expireOldIn":"0"}`,
		"putAlertConfig": `{"url":"https://hooks.example.com/a"}`, "rotateWebhookSecret": `{"expireOldIn":"1h"}`,
		"registerUseapiAccount": `{"cookie":"` + ltCookie("compat@x.io", time.Now().Add(time.Hour), time.Now().Add(90*24*time.Hour)) + `"}`,
	}
	big := `{"x":"` + strings.Repeat("a", 1<<20) + `"}`

	for _, o := range ops {
		public := !strings.HasPrefix(o.path, "/v1/")
		path := fill(o.path, "")
		if v, ok := unknown[o.path]; ok {
			path = fill(o.path, v)
		}
		do := func(r req) {
			if r.method == "" {
				r.method = o.method
			}
			if r.path == "" {
				r.path = path
			}
			record(o, e.do(r))
		}
		do(req{key: admin, path: path + "?x=%00"})
		if public {
			do(req{})
			continue
		}
		for _, hdr := range []string{"", "Basic x", "Bearer " + auth.NewSecret(tenant.Live), "Bearer " + expired} {
			r := req{header: map[string]string{}}
			if hdr != "" {
				r.header["Authorization"] = hdr
			}
			do(r)
		}
		do(req{key: readOnly})
		do(req{key: jobsOnly})
		do(req{key: testKey})
		if pathParam.MatchString(o.path) {
			do(req{key: admin, path: fill(o.path, "%00")}) // bad characters
			do(req{key: admin})                            // an id that does not exist
		}
		// A spent rate limit: a key allowed one request a day, asked twice.
		spent := e.createKey(0, admin, map[string]any{"name": "spent", "rateLimit": map[string]any{"requests": 1, "per": "24h"}})["secret"].(string)
		expect(t, e.do(req{method: "GET", path: "/v1/accounts", key: spent, server: limited.server}), 200)
		do(req{key: spent, server: limited.server})
		// Two Authorization headers: built by hand, since req sets one.
		hr, _ := http.NewRequest(o.method, e.urls[0]+path, nil)
		hr.Header.Add("Authorization", "Bearer "+admin)
		hr.Header.Add("Authorization", "Bearer "+admin)
		record(o, send(t, hr))
		if o.body {
			for _, b := range []string{"", "{", "[]", `{"zzz":1}`, big} {
				do(req{key: admin, body: b})
			}
			do(req{key: admin, body: "x", header: map[string]string{"Content-Type": "text/plain"}})
			if g, ok := goodBody[o.id]; ok {
				do(req{key: admin, body: g})
			}
		} else {
			do(req{key: admin})
		}
	}

	// Answers that need a particular state.
	byID := map[string]operation{}
	for _, o := range ops {
		byID[o.id] = o
	}
	idem := map[string]string{"Idempotency-Key": "contract-1"}
	extra := []struct {
		op string
		r  req
	}{
		{"getAccount", req{method: "GET", path: "/v1/accounts/real%40x.io"}},
		{"getAccountStats", req{method: "GET", path: "/v1/accounts/real@x.io/stats"}},
		{"getAccountStats", req{method: "GET", path: "/v1/accounts/real@x.io/stats?from=yesterday"}},
		{"getAccountStats", req{method: "GET", path: "/v1/accounts/real@x.io/stats?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"}},
		{"getUsage", req{method: "GET", path: "/v1/usage?groupBy=planet"}},
		{"getUsage", req{method: "GET", path: "/v1/usage?groupBy=key&to=2030-01-01T00:00:00Z&from=2020-01-01T00:00:00Z"}},
		{"getUsage", req{method: "GET", path: "/v1/usage?groupBy=day&from=2026-01-01T00:00:00%2B02:00"}},
		{"getJob", req{method: "GET", path: "/v1/jobs/" + job}},
		{"getJob", req{method: "GET", path: "/v1/jobs/" + job + "?wait=forever"}},
		{"getJobResult", req{method: "GET", path: "/v1/jobs/" + job + "/result"}},
		{"getJobResult", req{method: "GET", path: "/v1/jobs/" + done + "/result"}},
		{"getJobResult", req{method: "GET", path: "/v1/jobs/" + stored + "/result"}},
		{"getJobResult", req{method: "GET", path: "/v1/jobs/" + stored + "/result", header: map[string]string{"Range": "bytes=0-1"}}},
		{"getJobResult", req{method: "GET", path: "/v1/jobs/" + stored + "/result", header: map[string]string{"Range": "bytes=99-"}}},
		{"getJobResult", req{method: "GET", path: "/v1/jobs/" + stored + "/result", header: map[string]string{"If-None-Match": "*"}}},
		{"getJobResult", req{method: "GET", path: "/v1/jobs/" + gone + "/result"}},
		{"listJobs", req{method: "GET", path: "/v1/jobs?limit=0"}},
		{"listJobs", req{method: "GET", path: "/v1/jobs?state=lost"}},
		{"listJobs", req{method: "GET", path: "/v1/jobs?cursor=zzz"}},
		{"listAlerts", req{method: "GET", path: "/v1/alerts?limit=x"}},
		{"listAlerts", req{method: "GET", path: "/v1/alerts?state=lost"}},
		{"listAlerts", req{method: "GET", path: "/v1/alerts?cursor=zzz"}},
		{"cancelJob", req{method: "DELETE", path: "/v1/jobs/" + done}},
		{"cancelJob", req{method: "DELETE", path: "/v1/jobs/" + job}},
		{"createJob", req{method: "POST", path: "/v1/jobs", body: `{"type":"image","email":"nobody@x.io"}`}},
		{"createJob", req{method: "POST", path: "/v1/jobs", body: `{"type":"image"}`, header: idem}},
		{"createJob", req{method: "POST", path: "/v1/jobs", body: `{"type":"image"}`, header: idem}},
		{"createJob", req{method: "POST", path: "/v1/jobs", body: `{"type":"video"}`, header: idem}},
		{"createJob", req{method: "POST", path: "/v1/jobs", body: `{"type":"video"}`, header: map[string]string{"Idempotency-Key": "k\xff"}}},
		{"createVideo", req{method: "POST", path: "/v1/videos/create", body: `{"prompt":"x"}`, header: map[string]string{"Idempotency-Key": "contract-2"}}},
		{"createVideo", req{method: "POST", path: "/v1/videos/create", body: `{"prompt":"x"}`, header: map[string]string{"Idempotency-Key": "contract-2"}}},
		{"createVideo", req{method: "POST", path: "/v1/videos/create", body: `{"prompt":"y"}`, header: map[string]string{"Idempotency-Key": "contract-2"}}},
		{"createImage", req{method: "POST", path: "/v1/images/create", body: `{"prompt":"x"}`, header: map[string]string{"Idempotency-Key": "contract-3"}}},
		{"createImage", req{method: "POST", path: "/v1/images/create", body: `{"prompt":"x"}`, header: map[string]string{"Idempotency-Key": "contract-3"}}},
		{"createImage", req{method: "POST", path: "/v1/images/create", body: `{"prompt":"y"}`, header: map[string]string{"Idempotency-Key": "contract-3"}}},
		{"registerAccount", req{method: "POST", path: "/v1/accounts", body: `{"cookie":"lt_id=1"}`}},
		{"registerAccount", req{method: "POST", path: "/v1/accounts", body: `{"cookie":"lt_token=x; lt_refresh_token=y"}`}},
		{"registerAccount", req{method: "POST", path: "/v1/accounts", body: `{"cookie":"a b"}`}},
		{"registerAccount", req{method: "POST", path: "/v1/accounts", body: map[string]any{"cookie": ltCookie("", time.Now().Add(time.Hour), time.Now().Add(time.Hour))}}},
		{"registerAccount", req{method: "POST", path: "/v1/accounts", body: map[string]any{"cookie": ltCookie("a@x.io", time.Now().Add(time.Hour), time.Now().Add(time.Hour)), "email": "b@x.io"}}},
		{"registerAccount", req{method: "POST", path: "/v1/accounts", body: "cookie=x", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}},
		{"updateAccount", req{method: "PATCH", path: "/v1/accounts/real@x.io", body: `{}`}},
		{"createKey", req{method: "POST", path: "/v1/keys", body: `{"name":"k","scopes":["god"]}`}},
		{"createKey", req{method: "POST", path: "/v1/keys", body: `{"name":"k","mode":"live"}`, key: testKey}},
		{"createKey", req{method: "POST", path: "/v1/keys", body: `{"name":"k","rateLimit":{"requests":1000000,"per":"1s"}}`,
			key: e.createKey(0, admin, map[string]any{"name": "slow", "rateLimit": map[string]any{"requests": 5, "per": "1h"}})["secret"].(string)}},
		{"getUseapiAccount", req{method: "GET", path: "/v1/ltxstudio/accounts/real%40x.io"}},
		{"registerUseapiAccount", req{method: "POST", path: "/v1/ltxstudio/accounts", body: `{"cookie":"lt_id=1"}`}},
		{"registerUseapiAccount", req{method: "POST", path: "/v1/ltxstudio/accounts", body: "cookie=x", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}},
		{"deleteUseapiAccount", req{method: "DELETE", path: "/v1/ltxstudio/accounts/compat@x.io"}},
		{"listUseapiAccounts", req{method: "GET", path: "/v1/ltxstudio/accounts", key: e.key("empty")}},
		{"deleteAccount", req{method: "DELETE", path: "/v1/accounts/real@x.io"}},
	}
	// A revoked and a rolled key cannot be rolled.
	revoked := e.createKey(0, admin, map[string]any{"name": "revoked"})["id"].(string)
	expect(t, e.do(req{method: "DELETE", path: "/v1/keys/" + revoked, key: admin}), 204)
	rolled := e.createKey(0, admin, map[string]any{"name": "rolled"})["id"].(string)
	expect(t, e.do(req{method: "POST", path: "/v1/keys/" + rolled + "/roll", key: admin, body: `{"expireOldIn":"1h"}`}), 201)
	extra = append(extra,
		struct {
			op string
			r  req
		}{"rollKey", req{method: "POST", path: "/v1/keys/" + revoked + "/roll", body: `{"expireOldIn":"0"}`}},
		struct {
			op string
			r  req
		}{"rollKey", req{method: "POST", path: "/v1/keys/" + rolled + "/roll", body: `{"expireOldIn":"0"}`}},
		struct {
			op string
			r  req
		}{"rollKey", req{method: "POST", path: "/v1/keys/" + rolled + "/roll", body: `{"expireOldIn":"forever"}`}},
	)
	for _, x := range extra {
		o, ok := byID[x.op]
		if !ok {
			t.Fatalf("no operation %s in openapi.yaml", x.op)
		}
		if x.r.key == "" {
			x.r.key = admin
		}
		record(o, e.do(x.r))
	}

	// Judge every answer against the document.
	dump := map[string]map[string][]string{}
	for _, s := range got {
		o := byID[s.op]
		if dump[s.op] == nil {
			dump[s.op] = map[string][]string{}
		}
		if s.code != "" && !slices.Contains(dump[s.op][s.status], s.code) {
			dump[s.op][s.status] = append(dump[s.op][s.status], s.code)
		} else if _, ok := dump[s.op][s.status]; !ok {
			dump[s.op][s.status] = nil
		}
		codes, ok := o.statuses[s.status]
		switch {
		case strings.HasPrefix(s.status, "5"):
			t.Errorf("%s answered %s %s: a server error", s.op, s.status, s.code)
		case !ok:
			t.Errorf("%s answered %s (%s), which openapi.yaml does not list for it", s.op, s.status, s.code)
		case s.code != "" && !slices.Contains(codes, s.code):
			t.Errorf("%s answered %s %s; openapi.yaml lists only %v for that status", s.op, s.status, s.code, codes)
		}
	}
	if path := os.Getenv("POOLGATE_CONTRACT_DUMP"); path != "" {
		out, _ := yaml.Marshal(dump)
		os.WriteFile(path, out, 0o644)
	}
}

// send runs a hand-built request.
func send(t *testing.T, hr *http.Request) response {
	t.Helper()
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}
