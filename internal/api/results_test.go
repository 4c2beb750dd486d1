package api_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/poolgate/poolgate/internal/results"
	"github.com/poolgate/poolgate/internal/results/resultstest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	resultstest.Stop()
	os.Exit(code)
}

// storeResult makes job id's result a stored file, as a provider that
// stores results (the LTX-2 API one) does: the bytes under the job id and
// result.url pointing at GET /v1/jobs/{id}/result.
func (e *env) storeResult(id string, data []byte) {
	e.t.Helper()
	if _, err := e.results.Put(context.Background(), id, bytes.NewReader(data), "video/mp4"); err != nil {
		e.t.Fatal(err)
	}
	result := fmt.Sprintf(`{"url":%q,"contentType":"video/mp4","size":%d,"upstreamRequestId":"req-1"}`, results.URLPath(id), len(data))
	if _, err := e.pool.Exec(context.Background(), `UPDATE jobs SET result = $2 WHERE id = $1 AND state = 'succeeded'`, id, result); err != nil {
		e.t.Fatal(err)
	}
}

// TestJobResult downloads a stored MP4 through GET /v1/jobs/{id}/result
// from the directory store and from S3: byte-identical, playable, ranges
// right, and only for the job's own tenant.
func TestJobResult(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"dir", "s3"} {
		t.Run(store, func(t *testing.T) {
			var s results.Store
			if store == "s3" {
				s = resultstest.S3(t)
			}
			e := setupWith(t, s)
			video := resultstest.MP4(t)
			key := e.key("acme")
			e.addSimAccount(key, "a@x.io", 2)
			id := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key, body: `{"type":"video"}`}), 202).json(t)["id"].(string)
			expect(t, e.do(req{method: "GET", path: "/v1/jobs/" + id + "?wait=20s", key: key}), 200)
			path := "/v1/jobs/" + id + "/result"
			if c := expect(t, e.do(req{method: "GET", path: path, key: key}), 404).errorCode(t); c != "result_not_stored" {
				t.Errorf("an LTX Studio job's result (upstream URL) answered %s; want result_not_stored", c)
			}
			e.storeResult(id, video)

			r := expect(t, e.do(req{method: "GET", path: path, key: key}), 200)
			if !bytes.Equal(r.body, video) {
				t.Fatalf("downloaded %d bytes that differ from the %d stored", len(r.body), len(video))
			}
			if d := resultstest.Duration(t, r.body); d < resultstest.MP4Seconds-0.1 || d > resultstest.MP4Seconds+0.1 {
				t.Errorf("ffprobe reads %.3fs from the download; the clip lasts %.0fs", d, resultstest.MP4Seconds)
			}
			if got := r.header.Get("Content-Type"); got != "video/mp4" {
				t.Errorf("Content-Type = %q", got)
			}
			if got := r.header.Get("Content-Length"); got != strconv.Itoa(len(video)) {
				t.Errorf("Content-Length = %q; want %d", got, len(video))
			}
			if r.header.Get("Last-Modified") == "" || r.header.Get("Accept-Ranges") != "bytes" {
				t.Errorf("Last-Modified %q, Accept-Ranges %q", r.header.Get("Last-Modified"), r.header.Get("Accept-Ranges"))
			}

			n := len(video)
			for _, c := range []struct {
				rng        string
				from, to   int // inclusive
				contentRng string
			}{
				{"bytes=100-1123", 100, 1123, fmt.Sprintf("bytes 100-1123/%d", n)},
				{"bytes=-10", n - 10, n - 1, fmt.Sprintf("bytes %d-%d/%d", n-10, n-1, n)},
				{fmt.Sprintf("bytes=%d-", n-1), n - 1, n - 1, fmt.Sprintf("bytes %d-%d/%d", n-1, n-1, n)},
				{fmt.Sprintf("bytes=5-%d", n+1000), 5, n - 1, fmt.Sprintf("bytes 5-%d/%d", n-1, n)},
			} {
				r := expect(t, e.do(req{method: "GET", path: path, key: key, header: map[string]string{"Range": c.rng}}), 206)
				if !bytes.Equal(r.body, video[c.from:c.to+1]) {
					t.Errorf("Range %s returned %d bytes that are not bytes %d-%d", c.rng, len(r.body), c.from, c.to)
				}
				if got := r.header.Get("Content-Range"); got != c.contentRng {
					t.Errorf("Range %s: Content-Range %q; want %q", c.rng, got, c.contentRng)
				}
			}
			// Several ranges: the whole file, not a multipart body.
			if r := expect(t, e.do(req{method: "GET", path: path, key: key, header: map[string]string{"Range": "bytes=0-9,20-29"}}), 200); !bytes.Equal(r.body, video) {
				t.Errorf("a multi-range request returned %d bytes, not the whole file", len(r.body))
			}
			for _, rng := range []string{fmt.Sprintf("bytes=%d-", n), "bytes=-0"} {
				r := expect(t, e.do(req{method: "GET", path: path, key: key, header: map[string]string{"Range": rng}}), 416)
				if c := r.errorCode(t); c != "range_not_satisfiable" || r.header.Get("Content-Range") != fmt.Sprintf("bytes */%d", n) {
					t.Errorf("Range %s: %s with Content-Range %q", rng, c, r.header.Get("Content-Range"))
				}
			}
			etag := r.header.Get("ETag")
			if etag == "" {
				t.Error("no ETag")
			} else {
				expect(t, e.do(req{method: "GET", path: path, key: key, header: map[string]string{"If-None-Match": etag}}), 304)
			}

			// Another tenant's key: the job does not exist for it.
			if c := expect(t, e.do(req{method: "GET", path: path, key: e.key("globex")}), 404).errorCode(t); c != "job_not_found" {
				t.Errorf("another tenant got %s; want job_not_found", c)
			}
			// The object gone while the job still points at it.
			if err := e.results.Delete(context.Background(), id); err != nil {
				t.Fatal(err)
			}
			if c := expect(t, e.do(req{method: "GET", path: path, key: key}), 404).errorCode(t); c != "result_not_found" {
				t.Errorf("a missing object answered %s; want result_not_found", c)
			}
		})
	}
}

// TestJobResultBeforeSuccess: a job that has not succeeded has no result.
func TestJobResultBeforeSuccess(t *testing.T) {
	t.Parallel()
	e := setup(t)
	key := e.key("acme") // no accounts: the job stays queued
	id := expect(t, e.do(req{method: "POST", path: "/v1/jobs", key: key, body: `{"type":"video"}`}), 202).json(t)["id"].(string)
	r := expect(t, e.do(req{method: "GET", path: "/v1/jobs/" + id + "/result", key: key}), 409)
	if c := r.errorCode(t); c != "job_not_succeeded" {
		t.Errorf("a queued job's result answered %s; want job_not_succeeded", c)
	}
	expect(t, e.do(req{method: "DELETE", path: "/v1/jobs/" + id, key: key}), 200)
	if c := expect(t, e.do(req{method: "GET", path: "/v1/jobs/" + id + "/result", key: key}), 409).errorCode(t); c != "job_not_succeeded" {
		t.Errorf("a canceled job's result answered %s; want job_not_succeeded", c)
	}
}
