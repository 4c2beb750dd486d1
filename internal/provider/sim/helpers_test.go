package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
	"github.com/poolgate/poolgate/internal/provider/sim"

	"github.com/poolgate/poolgate/internal/fakeclock"
)

// epoch is where every fake clock starts, on a whole second so token exp
// claims (whole seconds) compare exactly.
var epoch = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// env is one simulator behind a real HTTP server, with the real client.
type env struct {
	t      *testing.T
	sim    *sim.Server
	srv    *httptest.Server
	client *ltxstudio.Client
	clock  *fakeclock.Clock
}

func setup(t *testing.T, cfg sim.Config) *env {
	t.Helper()
	clock := fakeclock.New(epoch)
	s := sim.New(cfg, clock.Now)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	// Keep connections for the concurrent tests instead of redialling.
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr}
	return &env{t: t, sim: s, srv: srv, client: ltxstudio.New(srv.URL, hc), clock: clock}
}

// testConfig is a quiet configuration: ten-second jobs, no jitter, no
// injected failures.
func testConfig() sim.Config {
	c := sim.DefaultConfig()
	c.JobDuration = 10 * time.Second
	c.Jitter = 0
	return c
}

// account returns an account whose tokens are valid for a day of fake time.
func (e *env) account(email string) provider.Account {
	now := e.clock.Now()
	return provider.Account{Email: email, Cookie: sim.Cookie(email, now.Add(24*time.Hour), now.Add(720*time.Hour))}
}

func submission(jobID string, attempt int, params string) provider.Submission {
	if params == "" {
		params = `{"prompt":"a cat on a skateboard"}`
	}
	return provider.Submission{
		IdempotencyKey: fmt.Sprintf("%s/%d", jobID, attempt),
		JobID:          jobID,
		Attempt:        attempt,
		Type:           "video",
		Params:         json.RawMessage(params),
	}
}

func (e *env) submit(a provider.Account, s provider.Submission) provider.Status {
	e.t.Helper()
	st, err := e.client.Submit(context.Background(), a, s)
	if err != nil {
		e.t.Fatalf("Submit(%s): %v", s.IdempotencyKey, err)
	}
	return st
}

func (e *env) status(a provider.Account, id string) provider.Status {
	e.t.Helper()
	st, err := e.client.Status(context.Background(), a, id)
	if err != nil {
		e.t.Fatalf("Status(%s): %v", id, err)
	}
	return st
}

// raw sends one request without the client, for what the client hides
// (status codes, bodies).
func (e *env) raw(method, path, cookie string, hdr map[string]string, body string) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader([]byte(body)))
	if err != nil {
		e.t.Fatal(err)
	}
	if cookie != "" {
		req.Header.Set(ltxstudio.HeaderCookie, cookie)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, b
}

func accountStats(t *testing.T, s *sim.Server, email string) sim.AccountStats {
	t.Helper()
	st, ok := s.Stats().Accounts[email]
	if !ok {
		t.Fatalf("stats have no account %q", email)
	}
	return st
}

func wantClass(t *testing.T, err error, want provider.Class) *provider.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want class %v", want)
	}
	if got := provider.ClassOf(err); got != want {
		t.Fatalf("ClassOf(%v) = %v, want %v", err, got, want)
	}
	pe, ok := errors.AsType[*provider.Error](err)
	if !ok {
		t.Fatalf("error %v is not a *provider.Error", err)
	}
	return pe
}
