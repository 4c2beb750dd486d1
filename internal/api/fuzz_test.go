package api

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/scheduler"
)

// Run a fuzzer with, for example:
//
//	go test ./internal/api -run '^$' -fuzz '^FuzzJobRequest$' -fuzztime 30s
//
// Crashers land in testdata/fuzz/<FuzzName>/ and are replayed by every
// plain "go test" as regression tests.

// Job endpoints, as the fuzzers number them.
const (
	endpointJobs = iota
	endpointVideos
	endpointImages
	endpointCount
)

// checkJobRequest runs body through what the job-creation handlers do
// before they queue a job: createJob, createVideo and createImage up to
// their call of submitJob (strict decoding, the validator, the catalog
// checks, newJob). Keep it in step with internal/api/jobs.go.
func checkJobRequest(s *Server, endpoint int, body []byte) (scheduler.NewJob, error) {
	decode := func(dst any) error {
		if err := decodeStrict(bytes.NewReader(body), dst); err != nil {
			return err
		}
		return s.check(dst)
	}
	switch endpoint {
	case endpointVideos:
		var req videoRequest
		if err := decode(&req); err != nil {
			return scheduler.NewJob{}, err
		}
		var bad []errs.FieldError
		checkPrompt(req.Prompt, &bad)
		oneOf("model", &req.Model, catalog.VideoModels, &bad)
		duration := oneOfInt("duration", req.Duration, catalog.VideoDurations, &bad)
		oneOf("resolution", &req.Resolution, catalog.VideoResolutions, &bad)
		oneOf("aspectRatio", &req.AspectRatio, catalog.VideoAspectRatios, &bad)
		if len(bad) > 0 {
			return scheduler.NewJob{}, errs.Fields(bad...)
		}
		params, _ := json.Marshal(map[string]any{"prompt": req.Prompt, "model": req.Model, "duration": duration,
			"resolution": req.Resolution, "aspectRatio": req.AspectRatio, "imageUrl": req.ImageURL})
		return s.newJob("video", params, req.jobOptions)
	case endpointImages:
		var req imageRequest
		if err := decode(&req); err != nil {
			return scheduler.NewJob{}, err
		}
		var bad []errs.FieldError
		checkPrompt(req.Prompt, &bad)
		oneOf("model", &req.Model, catalog.ImageModels, &bad)
		oneOf("aspectRatio", &req.AspectRatio, catalog.ImageAspectRatios, &bad)
		if len(bad) > 0 {
			return scheduler.NewJob{}, errs.Fields(bad...)
		}
		params, _ := json.Marshal(map[string]any{"prompt": req.Prompt, "model": req.Model, "aspectRatio": req.AspectRatio})
		return s.newJob("image", params, req.jobOptions)
	default:
		var req createJobRequest
		if err := decode(&req); err != nil {
			return scheduler.NewJob{}, err
		}
		if len(req.Params) > 0 && req.Params[0] != '{' {
			return scheduler.NewJob{}, errs.Fields(errs.FieldError{Field: "params", Message: "must be an object"})
		}
		return s.newJob(req.Type, req.Params, req.jobOptions)
	}
}

// leakMarker is planted in string values of the seeds: errors about a
// malformed body must never quote the body back.
const leakMarker = "SECRETMARKER"

func jobRequestSeeds() []string {
	return []string{
		`{"type":"video","params":{"prompt":"a red fox"}}`,
		`{"type":"image","params":{},"email":" Me@X.io ","priority":100,"maxAttempts":10,"queueTimeout":"24h"}`,
		`{"type":"video","params":{"a":[1,{"b":null}]},"replyRef":"r","queueTimeout":"1s","priority":-100}`,
		`{"type":"video","params":[1,2]}`,
		`{"type":"video","params":null}`,
		`{"type":"video","params":"` + leakMarker + `"}`,
		`{"type":"audio"}`,
		`{"type":"video","queueTimeout":"0.5s"}`,
		`{"type":"video","queueTimeout":"-1h"}`,
		`{"type":"video","queueTimeout":"9223372036854775807ns"}`,
		`{"type":"video","queueTimeout":"1e3s"}`,
		`{"type":"video","maxAttempts":11,"priority":101}`,
		`{"type":"video","priority":1.5}`,
		`{"type":"video","priority":"1"}`,
		`{"type":"video","Type":"image"}`,
		`{"type":"video","typo":1}`,
		`{"type":"video"} {"type":"image"}`,
		`{"type":"video","email":"` + strings.Repeat("a", 255) + `"}`,
		`{"prompt":"a cat","duration":8,"resolution":"720p","aspectRatio":"9:16","model":"ltxv-2-pro"}`,
		`{"prompt":"a cat","duration":7}`,
		`{"prompt":"` + strings.Repeat("é", 2001) + `"}`,
		`{"prompt":"","model":"x"}`,
		`{"prompt":"a cat","imageUrl":"ftp://x"}`,
		`{"prompt":"a cat","imageUrl":"https://example.com/a.png","queueTimeout":"10m"}`,
		`{"prompt":"dog","model":"nano-banana","aspectRatio":"4:3"}`,
		`{"prompt":"\u0000\ud800` + leakMarker + `"}`,
		`{"prompt":"` + leakMarker,
		`[]`, `null`, `""`, `1`, ``, ` `, `{`, `{"type":`, `{"type":"video",}`,
		"\xff\xfe{}", `{"type":"video","params":{"x":1e999}}`,
		`{"replyUrl":"http://127.0.0.1/hook","type":"video"}`,
		`{"replyUrl":"https://example.com/` + leakMarker + `","type":"video"}`,
	}
}

// FuzzJobRequest feeds arbitrary bodies to the three job-creation
// endpoints' decoding and validation. Whatever comes in, it must answer
// with a client error (never a panic or an internal error), and whatever
// it accepts must be a job the scheduler can take as is.
func FuzzJobRequest(f *testing.F) {
	for _, b := range jobRequestSeeds() {
		for e := range endpointCount {
			f.Add(uint8(e), []byte(b))
		}
	}
	s := NewServer(Deps{})
	f.Fuzz(func(t *testing.T, endpoint uint8, body []byte) {
		ep := int(endpoint) % endpointCount
		nj, err := checkJobRequest(s, ep, body)
		if err != nil {
			checkClientError(t, body, err)
			return
		}
		checkAcceptedJob(t, ep, nj)
	})
}

// checkClientError requires err to be a well-formed 400 that quotes
// nothing of a malformed body.
func checkClientError(t *testing.T, body []byte, err error) {
	t.Helper()
	e := errs.As(err)
	if e.Kind != errs.KindInvalid {
		t.Fatalf("body %q: error kind %v (%v), want a 400", body, e.Kind, err)
	}
	if e.Code == "" || e.Message == "" {
		t.Fatalf("body %q: error without code or message: %#v", body, e)
	}
	if fields, ok := e.Details.([]errs.FieldError); ok {
		if len(fields) == 0 {
			t.Fatalf("body %q: validation error lists no field", body)
		}
		for _, fe := range fields { // Field may be "": a client can send that key
			if fe.Message == "" {
				t.Fatalf("body %q: field error %+v lacks its message", body, fe)
			}
		}
	}
	if e.Code == "malformed_json" || e.Code == "empty_body" {
		if strings.Contains(e.Message, leakMarker) {
			t.Fatalf("body %q: error message quotes the body: %q", body, e.Message)
		}
	}
}

// checkAcceptedJob states what the scheduler may assume of a job the API
// accepted.
func checkAcceptedJob(t *testing.T, ep int, nj scheduler.NewJob) {
	t.Helper()
	want := map[int][]string{endpointJobs: {"video", "image"}, endpointVideos: {"video"}, endpointImages: {"image"}}[ep]
	if !slices.Contains(want, nj.Type) {
		t.Fatalf("accepted type %q on endpoint %d", nj.Type, ep)
	}
	if len(nj.Params) > 0 {
		var obj map[string]any
		dec := json.NewDecoder(bytes.NewReader(nj.Params))
		dec.UseNumber() // JSON numbers need not fit a float64
		if err := dec.Decode(&obj); err != nil || obj == nil {
			t.Fatalf("accepted params that are not a JSON object: %q (%v)", nj.Params, err)
		}
		if ep != endpointJobs {
			checkTypedParams(t, ep, obj)
		}
	}
	if nj.Priority < -100 || nj.Priority > 100 {
		t.Fatalf("accepted priority %d", nj.Priority)
	}
	if nj.MaxAttempts != 0 && (nj.MaxAttempts < 1 || nj.MaxAttempts > 10) {
		t.Fatalf("accepted maxAttempts %d", nj.MaxAttempts)
	}
	if nj.QueueTimeout != 0 && (nj.QueueTimeout < time.Second || nj.QueueTimeout > maxQueueTimeout) {
		t.Fatalf("accepted queueTimeout %s", nj.QueueTimeout)
	}
	if len(nj.Email) > 254 || nj.Email != strings.ToLower(strings.TrimSpace(nj.Email)) {
		t.Fatalf("accepted email %q: too long or not normalised", nj.Email)
	}
	if len(nj.ReplyURL) > 2048 || len(nj.ReplyRef) > 1024 {
		t.Fatalf("accepted replyUrl/replyRef of %d/%d bytes", len(nj.ReplyURL), len(nj.ReplyRef))
	}
}

func checkTypedParams(t *testing.T, ep int, p map[string]any) {
	t.Helper()
	prompt, _ := p["prompt"].(string)
	if prompt == "" || utf8.RuneCountInString(prompt) > MaxPromptLen {
		t.Fatalf("accepted prompt of %d characters", utf8.RuneCountInString(prompt))
	}
	in := func(field string, set []string) {
		if v, _ := p[field].(string); !slices.Contains(set, v) {
			t.Fatalf("accepted %s %q, not in %v", field, v, set)
		}
	}
	if ep == endpointImages {
		in("model", catalog.ImageModels)
		in("aspectRatio", catalog.ImageAspectRatios)
		return
	}
	in("model", catalog.VideoModels)
	in("resolution", catalog.VideoResolutions)
	in("aspectRatio", catalog.VideoAspectRatios)
	if d, err := p["duration"].(json.Number).Int64(); err != nil || !slices.Contains(catalog.VideoDurations, int(d)) {
		t.Fatalf("accepted duration %v", p["duration"])
	}
}

// FuzzQueueTimeout checks the one duration a job body carries: anything
// accepted is what time.ParseDuration reads, from 1s to 24h; anything
// else is a field error naming queueTimeout.
func FuzzQueueTimeout(f *testing.F) {
	for _, s := range []string{"1s", "24h", "10m", "1h30m", "0", "0s", "-1s", "999ms", "24h0m1s", "1e3s", ".5s",
		"1.5h", "9223372036854775807ns", "9223372036854775808ns", "1µs", "1us", "+5m", " 5m", "5m ", "5", "h", "",
		"2562047h47m16.854775807s", "1000000000000000000000s"} {
		f.Add(s)
	}
	s := NewServer(Deps{})
	f.Fuzz(func(t *testing.T, raw string) {
		nj, err := s.newJob("video", nil, jobOptions{QueueTimeout: raw})
		if raw == "" {
			if err != nil || nj.QueueTimeout != 0 {
				t.Fatalf("no queueTimeout: %v, %s", err, nj.QueueTimeout)
			}
			return
		}
		want, perr := time.ParseDuration(raw)
		ok := perr == nil && want >= time.Second && want <= maxQueueTimeout
		if ok != (err == nil) {
			t.Fatalf("queueTimeout %q: accepted=%v, want %v (ParseDuration: %s, %v)", raw, err == nil, ok, want, perr)
		}
		if err != nil {
			fields, _ := errs.As(err).Details.([]errs.FieldError)
			if len(fields) != 1 || fields[0].Field != "queueTimeout" {
				t.Fatalf("queueTimeout %q: error %v does not name the field", raw, err)
			}
			return
		}
		if nj.QueueTimeout != want {
			t.Fatalf("queueTimeout %q became %s, want %s", raw, nj.QueueTimeout, want)
		}
	})
}
