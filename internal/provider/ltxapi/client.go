// Package ltxapi is the provider.Provider for Lightricks' LTX-2 API: each
// account is an API key, each job one synchronous call whose answer is the
// MP4 itself, streamed into poolgate's result store. Every wire detail
// lives in wire.go.
package ltxapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"time"

	"github.com/poolgate/poolgate/internal/provider"
)

// Sink is where results go: the one method of poolgate's result store
// this package needs. Put streams r to key without buffering it whole and
// returns the bytes written; a second Put to the same key replaces it.
type Sink interface {
	Put(ctx context.Context, key string, r io.Reader, contentType string) (int64, error)
}

// DefaultTimeout bounds one generation call, answer streamed included.
const DefaultTimeout = 15 * time.Minute

// Client talks to one LTX-2 API deployment.
type Client struct {
	base    string
	hc      *http.Client
	sink    Sink
	now     func() time.Time
	timeout time.Duration
}

var _ provider.Provider = (*Client)(nil)

// New returns a client for the API at baseURL that stores every video in
// sink under its job id. hc may be nil; its Timeout should be 0, since a
// call lasts as long as the generation (the client bounds each call by
// DefaultTimeout instead).
func New(baseURL string, sink Sink, hc *http.Client) *Client {
	if hc == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns, t.MaxIdleConnsPerHost = 256, 256
		hc = &http.Client{Transport: t}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), hc: hc, sink: sink, now: time.Now, timeout: DefaultTimeout}
}

// WithTimeout returns c bounding each call by d.
func (c *Client) WithTimeout(d time.Duration) *Client {
	c.timeout = d
	return c
}

// Submit runs the generation and stores its video under s.JobID; it
// returns a terminal Status. An error wrapping provider.ErrOutcomeUnknown
// means the request went out and the answer was lost: the generation may
// have run, and been billed.
func (c *Client) Submit(ctx context.Context, a provider.Account, s provider.Submission) (provider.Status, error) {
	gen, problems := ParseParams(s.Type, s.Params)
	if len(problems) > 0 {
		return provider.Status{}, &provider.Error{Class: provider.ClassInvalid, Message: problemText(problems)}
	}
	body, err := json.Marshal(gen)
	if err != nil {
		return provider.Status{}, &provider.Error{Class: provider.ClassInvalid, Message: "job params do not encode", Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.post(ctx, a, gen.Route(), body)
	if err != nil {
		return provider.Status{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return provider.Status{}, c.answerError(resp)
	}
	reqID := resp.Header.Get(HeaderRequestID)
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != ContentTypeMP4 {
		return provider.Status{}, &provider.Error{Class: provider.ClassPermanent,
			Message: fmt.Sprintf("LTX-2 API answered %q instead of %s (request %s)", mt, ContentTypeMP4, reqID)}
	}
	n, err := c.sink.Put(ctx, s.JobID, resp.Body, ContentTypeMP4)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("stored %d of %d bytes", n, resp.ContentLength)
	}
	if err != nil {
		// The generation ran; its video is lost (a broken stream, a
		// timeout, a shutdown, a full disk). Running it again costs another
		// generation, which only the job may allow. A context error stays
		// visible through the wrapping, so a shutdown is still seen as one.
		return provider.Status{}, &provider.Error{Class: provider.ClassTransient,
			Message: "the generation ran (request " + reqID + ") but its video could not be stored",
			Err:     errors.Join(provider.ErrOutcomeUnknown, err)}
	}
	result, _ := json.Marshal(Result{URL: ResultURL(s.JobID), ContentType: ContentTypeMP4, Size: n, UpstreamRequestID: reqID})
	return provider.Status{UpstreamID: reqID, State: provider.StateSucceeded, Result: result}, nil
}

// post sends one authenticated request. A transport error after the
// request was written wraps provider.ErrOutcomeUnknown.
func (c *Client) post(ctx context.Context, a provider.Account, route string, body []byte) (*http.Response, error) {
	path := strings.TrimPrefix(route, "POST ")
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, &provider.Error{Class: provider.ClassPermanent, Message: "bad LTX-2 API URL", Err: err}
	}
	req.Header.Set(HeaderAuthorization, BearerPrefix+a.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err == nil {
		return resp, nil
	}
	// url.Error names the URL, never the Authorization header.
	if wrote.Load() {
		err = errors.Join(provider.ErrOutcomeUnknown, err)
	}
	if ctx.Err() != nil {
		return nil, err // shutdown or timeout: the caller's context says which
	}
	return nil, &provider.Error{Class: provider.ClassTransient, Message: "LTX-2 API unreachable", Err: err}
}

// answerError reads and classifies a non-200 answer.
func (c *Client) answerError(resp *http.Response) error {
	var body ErrorBody
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, MaxErrorBytes))
	_ = json.Unmarshal(raw, &body)
	if len(body.Error.Message) > 300 {
		body.Error.Message = body.Error.Message[:300]
	}
	pe := classify(resp.StatusCode, ParseRetryAfter(resp.Header.Get(HeaderRetryAfter), c.now()), body)
	pe.Err = fmt.Errorf("HTTP %d (request %s)", resp.StatusCode, resp.Header.Get(HeaderRequestID))
	return pe
}

func problemText(ps []Problem) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		if p.Field == "" {
			parts[i] = p.Message
		} else {
			parts[i] = p.Field + " " + p.Message
		}
	}
	return "params do not fit the LTX-2 API: " + strings.Join(parts, "; ")
}

// errSynchronous answers calls that only make sense for generations that
// outlive their request.
var errSynchronous = &provider.Error{Class: provider.ClassPermanent,
	Message: "LTX-2 API calls are synchronous: there is no generation to poll"}

// Status is never needed: Submit returns a terminal status.
func (c *Client) Status(context.Context, provider.Account, string) (provider.Status, error) {
	return provider.Status{}, errSynchronous
}

// Lookup cannot be answered: the API takes no idempotency key and lists
// no past calls.
func (c *Client) Lookup(context.Context, provider.Account, string) (provider.Status, bool, error) {
	return provider.Status{}, false, provider.ErrNoLookup
}

// Cancel has nothing to stop once Submit has returned; a call in flight
// ends with its request.
func (c *Client) Cancel(context.Context, provider.Account, string) error { return nil }

// Refresh does not apply: API keys do not expire on a schedule.
func (c *Client) Refresh(context.Context, provider.Account) (provider.Tokens, error) {
	return provider.Tokens{}, &provider.Error{Class: provider.ClassPermanent, Message: "API keys are not refreshed"}
}

// Probe checks that the key is accepted without paying for a generation:
// the API has no cheaper authenticated call, so it sends a text-to-video
// request with an empty body, which an accepted key gets refused as
// invalid (400, nothing generated, nothing billed). 401 and 429 come back
// classified as from Submit.
func (c *Client) Probe(ctx context.Context, a provider.Account) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := c.post(ctx, a, RouteTextToVideo, []byte("{}"))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnprocessableEntity {
		return nil
	}
	if resp.StatusCode == http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, MaxErrorBytes))
		return nil
	}
	return c.answerError(resp)
}
