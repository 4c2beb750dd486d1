package ltxapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/ltxapi"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/results/resultstest"
)

func setup(t *testing.T, cfg sim.Config) (*ltxapi.Client, *sim.Server, string) {
	t.Helper()
	s := sim.New(cfg, nil)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	return ltxapi.New(srv.URL, resultstest.Dir(t, dir), nil), s, dir
}

func quickConfig() sim.Config {
	c := sim.Config{LTXAPIDelay: 10 * time.Millisecond, LTXAPIKeyLimit: 2, LTXAPIVideoBytes: 100_000, Seed: 1}
	return c
}

func key(name string) provider.Account {
	return provider.Account{Email: name, Provider: provider.NameLTXAPI, APIKey: "ltxv_test_" + name}
}

func video(jobID, params string) provider.Submission {
	return provider.Submission{IdempotencyKey: jobID + "/1", JobID: jobID, Attempt: 1, Type: "video", Params: json.RawMessage(params)}
}

func TestSubmitStoresTheVideoByteForByte(t *testing.T) {
	c, s, dir := setup(t, quickConfig())
	st, err := c.Submit(context.Background(), key("a"), video("job_1", `{"prompt":"an eagle","model":"ltx-2-pro","duration":8,"resolution":"1920x1080"}`))
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if st.State != provider.StateSucceeded || !strings.HasPrefix(st.UpstreamID, "simreq_") {
		t.Fatalf("status = %+v, want succeeded with the upstream request id", st)
	}
	var res ltxapi.Result
	if err := json.Unmarshal(st.Result, &res); err != nil {
		t.Fatal(err)
	}
	want := ltxapi.Result{URL: "/v1/jobs/job_1/result", ContentType: "video/mp4", Size: 100_000, UpstreamRequestID: st.UpstreamID}
	if res != want {
		t.Fatalf("result = %+v, want %+v", res, want)
	}
	got, err := os.ReadFile(filepath.Join(dir, "objects", "job_1"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, sim.VideoBytes(100_000)) {
		t.Fatalf("stored %d bytes that differ from the %d the simulator sent", len(got), 100_000)
	}
	if k := s.Stats().APIKeys[provider.KeyFingerprint("ltxv_test_a")]; k.Requests != 1 || k.Successes != 1 || k.Peak != 1 {
		t.Fatalf("simulator saw %+v, want one successful request", k)
	}
	ffprobe, err := exec.LookPath("ffprobe")
	if err != nil {
		t.Skip("ffprobe not installed: stored bytes checked, playback not")
	}
	out, err := exec.Command(ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", filepath.Join(dir, "objects", "job_1")).Output()
	if err != nil {
		t.Fatalf("ffprobe cannot read the stored video: %v", err)
	}
	if d, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err != nil || d < 0.9 || d > 1.1 {
		t.Fatalf("ffprobe duration = %q, want about 1s", out)
	}
}

func TestImageToVideoAndTypedEndpointAliases(t *testing.T) {
	req, problems := ltxapi.ParseParams("video", json.RawMessage(
		`{"prompt":"p","model":"ltxv-2-fast","resolution":"1080p","aspectRatio":"16:9","duration":6,"imageUrl":"https://example.com/a.jpg"}`))
	if len(problems) > 0 {
		t.Fatalf("problems: %+v", problems)
	}
	if req.Model != "ltx-2-fast" || req.Resolution != "1920x1080" || req.ImageURI != "https://example.com/a.jpg" || req.Route() != ltxapi.RouteImageToVideo {
		t.Fatalf("request = %+v, route %s", req, req.Route())
	}
	c, _, dir := setup(t, quickConfig())
	if _, err := c.Submit(context.Background(), key("i"), video("job_i", `{"prompt":"clouds","image_uri":"https://example.com/s.jpg"}`)); err != nil {
		t.Fatalf("image-to-video: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "objects", "job_i")); err != nil {
		t.Fatalf("image-to-video stored nothing: %v", err)
	}
}

func TestParamsThatDoNotFitAreInvalid(t *testing.T) {
	for name, tc := range map[string]struct{ typ, params, field string }{
		"image job":        {"image", `{"prompt":"p"}`, ""},
		"no prompt":        {"video", `{}`, "prompt"},
		"unknown model":    {"video", `{"prompt":"p","model":"ltxv-13b"}`, "model"},
		"odd duration":     {"video", `{"prompt":"p","duration":7}`, "duration"},
		"portrait":         {"video", `{"prompt":"p","aspectRatio":"9:16"}`, "aspectRatio"},
		"unknown field":    {"video", `{"prompt":"p","seed":3}`, ""},
		"bad image":        {"video", `{"prompt":"p","image_uri":"file:///etc/passwd"}`, "image_uri"},
		"last frame alone": {"video", `{"prompt":"p","model":"ltx-2-3-pro","last_frame_uri":"https://x/y.png"}`, "last_frame_uri"},
		"fps":              {"video", `{"prompt":"p","fps":30}`, "fps"},
	} {
		t.Run(name, func(t *testing.T) {
			_, problems := ltxapi.ParseParams(tc.typ, json.RawMessage(tc.params))
			if len(problems) == 0 || problems[0].Field != tc.field {
				t.Fatalf("problems = %+v, want one about %q", problems, tc.field)
			}
		})
	}
	c, s, _ := setup(t, quickConfig())
	_, err := c.Submit(context.Background(), key("a"), video("job_x", `{"prompt":"p","duration":7}`))
	if provider.ClassOf(err) != provider.ClassInvalid {
		t.Fatalf("err = %v, want ClassInvalid", err)
	}
	if n := len(s.Stats().APIKeys); n != 0 {
		t.Fatalf("invalid params reached the upstream (%d keys seen)", n)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	t.Run("revoked key is an auth failure", func(t *testing.T) {
		c, s, _ := setup(t, quickConfig())
		s.RevokeAPIKey("ltxv_test_r")
		_, err := c.Submit(context.Background(), key("r"), video("job_r", `{"prompt":"p"}`))
		if provider.ClassOf(err) != provider.ClassAuth || !strings.Contains(err.Error(), "Invalid API key") {
			t.Fatalf("err = %v, want ClassAuth naming the documented message", err)
		}
		if strings.Contains(err.Error(), "ltxv_test_r") {
			t.Fatalf("the error quotes the key: %v", err)
		}
		if err := c.Probe(context.Background(), key("r")); provider.ClassOf(err) != provider.ClassAuth || err == nil {
			t.Fatalf("Probe of a revoked key = %v, want ClassAuth", err)
		}
		if err := c.Probe(context.Background(), key("fine")); err != nil {
			t.Fatalf("Probe of a good key = %v", err)
		}
		if got := s.Stats().APIKeys[provider.KeyFingerprint("ltxv_test_fine")].Successes; got != 0 {
			t.Fatalf("the probe generated %d videos", got)
		}
	})
	t.Run("injected 429 carries Retry-After", func(t *testing.T) {
		cfg := quickConfig()
		cfg.RateLimitRate, cfg.RateLimitRetryAfter = 1, 7*time.Second
		c, _, _ := setup(t, cfg)
		_, err := c.Submit(context.Background(), key("l"), video("job_l", `{"prompt":"p"}`))
		if provider.ClassOf(err) != provider.ClassRateLimited || provider.RetryAfterOf(err) != 7*time.Second {
			t.Fatalf("err = %v (retry after %v), want rate limited for 7s", err, provider.RetryAfterOf(err))
		}
	})
	t.Run("over the key's concurrency is a 429", func(t *testing.T) {
		cfg := quickConfig()
		cfg.LTXAPIDelay = 300 * time.Millisecond
		c, s, _ := setup(t, cfg)
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Go(func() {
				_, errs[i] = c.Submit(context.Background(), key("c"), video("job_c"+strconv.Itoa(i), `{"prompt":"p"}`))
			})
		}
		wg.Wait()
		limited := 0
		for _, err := range errs {
			if provider.ClassOf(err) == provider.ClassRateLimited && err != nil {
				limited++
			}
		}
		st := s.Stats().APIKeys[provider.KeyFingerprint("ltxv_test_c")]
		if st.Peak > 2 || st.Limited != limited || limited == 0 {
			t.Fatalf("stats %+v, %d calls refused as rate limited; want peak <= 2 and the third refused", st, limited)
		}
	})
	t.Run("5xx is transient and its outcome is known", func(t *testing.T) {
		cfg := quickConfig()
		cfg.TransientRate = 1
		c, _, _ := setup(t, cfg)
		_, err := c.Submit(context.Background(), key("t"), video("job_t", `{"prompt":"p"}`))
		if err == nil || provider.ClassOf(err) != provider.ClassTransient || errors.Is(err, provider.ErrOutcomeUnknown) {
			t.Fatalf("err = %v, want transient with a known outcome (the upstream answered)", err)
		}
	})
}

// A connection that breaks after the request went out leaves the outcome
// unknown; one that never connected does not.
func TestLostAnswerIsAnUnknownOutcome(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "video/mp4")
		w.Header().Set("Content-Length", "5000")
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, 100))
		w.(http.Flusher).Flush()
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	}))
	defer srv.Close()
	c := ltxapi.New(srv.URL, resultstest.Dir(t, t.TempDir()), nil)
	_, err := c.Submit(context.Background(), key("u"), video("job_u", `{"prompt":"p"}`))
	if !errors.Is(err, provider.ErrOutcomeUnknown) {
		t.Fatalf("err = %v, want ErrOutcomeUnknown", err)
	}
	_, _, err = c.Lookup(context.Background(), key("u"), "job_u/1")
	if !errors.Is(err, provider.ErrNoLookup) {
		t.Fatalf("Lookup err = %v, want ErrNoLookup", err)
	}

	// An answer that stalls mid-video past the call's timeout is lost too.
	release := make(chan struct{})
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "video/mp4")
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, 100))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer stall.Close()
	defer close(release)
	_, err = ltxapi.New(stall.URL, resultstest.Dir(t, t.TempDir()), nil).WithTimeout(200*time.Millisecond).
		Submit(context.Background(), key("u"), video("job_s", `{"prompt":"p"}`))
	if !errors.Is(err, provider.ErrOutcomeUnknown) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stalled answer: err = %v, want ErrOutcomeUnknown from the deadline", err)
	}

	ln := httptest.NewServer(http.NotFoundHandler())
	url := ln.URL
	ln.Close() // nothing listens there now
	_, err = ltxapi.New(url, resultstest.Dir(t, t.TempDir()), nil).Submit(context.Background(), key("u"), video("job_v", `{"prompt":"p"}`))
	if err == nil || errors.Is(err, provider.ErrOutcomeUnknown) || provider.ClassOf(err) != provider.ClassTransient {
		t.Fatalf("refused connection: err = %v, want transient with a known outcome", err)
	}
}
