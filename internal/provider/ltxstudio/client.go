// Package ltxstudio is the provider.Provider for LTX Studio: an HTTP client
// that runs each call as one account by sending that account's browser
// cookies. Every wire detail lives in wire.go.
package ltxstudio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/poolgate/poolgate/internal/cookies"
	"github.com/poolgate/poolgate/internal/provider"
)

// defaultTimeout bounds a call when the caller neither passes an
// http.Client nor sets a context deadline.
const defaultTimeout = 60 * time.Second

// maxMessageLen bounds how much of an upstream error message is kept.
const maxMessageLen = 300

// Client talks to one LTX Studio deployment.
type Client struct {
	base string
	// baseURL is base parsed once (nil if it does not parse), so that a
	// call builds its URL instead of parsing a string: url.Parse was 3% of
	// the CPU of a replica submitting 9,000 jobs a second.
	baseURL *url.URL
	hc      *http.Client
	now     func() time.Time // for Retry-After dates
}

var _ provider.Provider = (*Client)(nil)

// New returns a client for the service at baseURL (scheme and host, with an
// optional path prefix). hc may be nil for a client with a 60s timeout.
func New(baseURL string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: defaultTimeout, Transport: newTransport()}
	}
	c := &Client{base: strings.TrimRight(baseURL, "/"), hc: hc, now: time.Now}
	if u, err := url.Parse(c.base); err == nil && u.Scheme != "" && u.Host != "" && u.RawQuery == "" && u.Fragment == "" {
		u.Host = strings.TrimSuffix(u.Host, ":") // an empty port, as NewRequest drops it
		c.baseURL = u
	}
	return c
}

// maxIdleConns is how many idle connections to the upstream a replica
// keeps. net/http keeps 2 per host by default; with hundreds of jobs in
// flight that meant a new TCP (and TLS) connection for almost every call.
const maxIdleConns = 512

func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = maxIdleConns, maxIdleConns
	return t
}

// Submit starts a generation, or returns the existing one if the upstream
// has seen s.IdempotencyKey from this account before.
func (c *Client) Submit(ctx context.Context, a provider.Account, s provider.Submission) (provider.Status, error) {
	params := s.Params
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	body, err := json.Marshal(SubmitRequest{Type: s.Type, Params: params, ClientRef: s.JobID})
	if err != nil {
		return provider.Status{}, &provider.Error{Class: provider.ClassInvalid, Message: "job params are not valid JSON", Err: err}
	}
	hdr := http.Header{HeaderIdempotencyKey: {s.IdempotencyKey}}
	var g Generation
	if err := c.do(ctx, "submit", a, RouteSubmit, "", nil, hdr, body, &g); err != nil {
		return provider.Status{}, err
	}
	return statusOf("submit", g)
}

// Status reads one generation.
func (c *Client) Status(ctx context.Context, a provider.Account, upstreamID string) (provider.Status, error) {
	var g Generation
	if err := c.do(ctx, "status", a, RouteGet, upstreamID, nil, nil, nil, &g); err != nil {
		return provider.Status{}, err
	}
	return statusOf("status", g)
}

// Lookup finds the generation this account started with idempotencyKey.
func (c *Client) Lookup(ctx context.Context, a provider.Account, idempotencyKey string) (provider.Status, bool, error) {
	q := url.Values{QueryIdempotencyKey: {idempotencyKey}}
	var g Generation
	err := c.do(ctx, "lookup", a, RouteLookup, "", q, nil, nil, &g)
	if errors.Is(err, errNotFound) {
		return provider.Status{}, false, nil
	}
	if err != nil {
		return provider.Status{}, false, err
	}
	st, err := statusOf("lookup", g)
	return st, err == nil, err
}

// Cancel asks the upstream to stop a generation.
func (c *Client) Cancel(ctx context.Context, a provider.Account, upstreamID string) error {
	return c.do(ctx, "cancel", a, RouteCancel, upstreamID, nil, nil, nil, nil)
}

// Refresh exchanges the account's lt_refresh_token for a new token pair.
func (c *Client) Refresh(ctx context.Context, a provider.Account) (provider.Tokens, error) {
	var r RefreshResponse
	if err := c.do(ctx, "refresh", a, RouteRefresh, "", nil, nil, nil, &r); err != nil {
		return provider.Tokens{}, err
	}
	if r.Token == "" || r.RefreshToken == "" {
		return provider.Tokens{}, &provider.Error{
			Class:   provider.ClassTransient,
			Message: "upstream returned an incomplete token pair",
			Err:     errors.New("ltxstudio refresh: empty token in response"),
		}
	}
	return provider.Tokens{Token: r.Token, RefreshToken: r.RefreshToken}, nil
}

// Probe asks who the account's cookies belong to: the cheapest call that
// needs valid credentials.
func (c *Client) Probe(ctx context.Context, a provider.Account) error {
	var me Me
	return c.do(ctx, "probe", a, RouteMe, "", nil, nil, nil, &me)
}

// errNotFound marks a 404 the upstream itself vouched for (CodeNotFound);
// Lookup turns it into found=false, every other call into ClassPermanent.
var errNotFound = errors.New("not found")

// newRequest builds the request for route with id in its one path
// parameter (escaped into a single segment) and query q.
func (c *Client) newRequest(ctx context.Context, route, id string, q url.Values, body io.Reader) (*http.Request, error) {
	method, path := routeParts(route, url.PathEscape(id))
	if c.baseURL == nil {
		u := c.base + path
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
		return http.NewRequestWithContext(ctx, method, u, body)
	}
	_, plain := routeParts(route, id)
	u := *c.baseURL
	u.Path, u.RawPath = c.baseURL.Path+plain, c.baseURL.EscapedPath()+path
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, "", body)
	if err != nil {
		return nil, err
	}
	req.URL, req.Host = &u, u.Host
	return req, nil
}

// do sends one request as account a and decodes a 2xx JSON body into out
// (if out is non-nil). Every error it returns is a *provider.Error whose
// text was built without the cookie.
func (c *Client) do(ctx context.Context, op string, a provider.Account, route, id string, q url.Values, hdr http.Header, body []byte, out any) error {
	if a.Cookie == "" || strings.ContainsAny(a.Cookie, "\r\n\x00") {
		return &provider.Error{Class: provider.ClassAuth, Message: "account has no usable cookie",
			Err: fmt.Errorf("ltxstudio %s: empty or malformed cookie", op)}
	}
	var rb io.Reader
	if body != nil {
		rb = bytes.NewReader(body)
	}
	req, err := c.newRequest(ctx, route, id, q, rb)
	if err != nil {
		return &provider.Error{Class: provider.ClassPermanent, Message: "cannot build upstream request",
			Err: fmt.Errorf("ltxstudio %s: %w", op, err)}
	}
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v) // Add canonicalizes k; a map write would not
		}
	}
	req.Header.Set(HeaderCookie, a.Cookie)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	resp, err := c.hc.Do(req)
	if err != nil {
		// *url.Error names only the method and URL (net/http strips any
		// userinfo); the cookie travels in a header and never shows up here.
		return &provider.Error{Class: provider.ClassTransient, Message: "upstream unreachable",
			Err: fmt.Errorf("ltxstudio %s: %w", op, err)}
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxResponseBytes))
		resp.Body.Close()
	}()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return &provider.Error{Class: provider.ClassTransient, Message: "upstream response interrupted",
			Err: fmt.Errorf("ltxstudio %s: reading HTTP %d body: %w", op, resp.StatusCode, err)}
	}
	if len(raw) > MaxResponseBytes {
		return &provider.Error{Class: provider.ClassTransient, Message: "upstream response too large",
			Err: fmt.Errorf("ltxstudio %s: HTTP %d body over %d bytes", op, resp.StatusCode, MaxResponseBytes)}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return c.httpError(op, a, resp, raw)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return &provider.Error{Class: provider.ClassTransient, Message: "malformed upstream response",
			Err: fmt.Errorf("ltxstudio %s: decoding HTTP %d body: %w", op, resp.StatusCode, err)}
	}
	return nil
}

// httpError classifies a non-2xx answer.
func (c *Client) httpError(op string, a provider.Account, resp *http.Response, raw []byte) error {
	var er ErrorResponse
	_ = json.Unmarshal(raw, &er) // a body that is not ours just leaves er empty
	if resp.StatusCode == http.StatusNotFound && er.Error.Code == CodeNotFound {
		return &provider.Error{Class: provider.ClassPermanent, Message: "generation not found upstream",
			Err: fmt.Errorf("ltxstudio %s: HTTP 404: %w", op, errNotFound)}
	}
	class := ClassOfHTTP(resp.StatusCode)
	msg := sanitize(er.Error.Message, a.Cookie)
	if msg == "" {
		msg = defaultMessage(class, resp.StatusCode)
	}
	e := &provider.Error{Class: class, Message: msg,
		Err: fmt.Errorf("ltxstudio %s: HTTP %d", op, resp.StatusCode)}
	if er.Error.Code != "" {
		e.Err = fmt.Errorf("ltxstudio %s: HTTP %d (%s)", op, resp.StatusCode, sanitize(er.Error.Code, a.Cookie))
	}
	if class == provider.ClassRateLimited || class == provider.ClassTransient {
		e.RetryAfter = parseRetryAfter(resp.Header.Get(HeaderRetryAfter), c.now())
	}
	if class == provider.ClassRateLimited && er.Error.Code == CodeDailyQuota {
		e.DailyQuota = true
		if reset, err := time.Parse(time.RFC3339, er.Error.ResetAt); err == nil && reset.After(c.now()) {
			e.RetryAfter = reset.Sub(c.now())
		}
	}
	return e
}

func defaultMessage(class provider.Class, code int) string {
	switch class {
	case provider.ClassAuth:
		return "upstream refused the account's credentials"
	case provider.ClassRateLimited:
		return "upstream rate limit reached"
	case provider.ClassInvalid:
		return "upstream rejected the request"
	case provider.ClassPermanent:
		return "upstream refused the request: " + strings.ToLower(http.StatusText(code))
	default:
		return "upstream temporarily unavailable"
	}
}

// statusOf converts a Generation; a 2xx without an id is not usable.
func statusOf(op string, g Generation) (provider.Status, error) {
	if g.ID == "" {
		return provider.Status{}, &provider.Error{Class: provider.ClassTransient, Message: "malformed upstream response",
			Err: fmt.Errorf("ltxstudio %s: generation without id", op)}
	}
	st := provider.Status{UpstreamID: g.ID, State: StateOf(g.Status)}
	switch st.State {
	case provider.StateSucceeded:
		st.Result = g.Result
	case provider.StateFailed:
		st.Error = g.Error
		if st.Error == "" {
			st.Error = "generation failed upstream"
		}
	}
	return st, nil
}

// parseRetryAfter reads a Retry-After value in delta-seconds or HTTP-date
// form; anything else, or a time in the past, is 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		const maxSecs = int64(30 * 24 * time.Hour / time.Second)
		return time.Duration(min(secs, maxSecs)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// sanitize makes an upstream-supplied message safe to show: it removes any
// credential of the account the upstream may have echoed, drops control
// characters and bounds the length.
func sanitize(msg, cookie string) string {
	if msg == "" {
		return ""
	}
	for _, secret := range secretsOf(cookie) {
		msg = strings.ReplaceAll(msg, secret, "[redacted]")
	}
	msg = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, msg)
	msg = strings.TrimSpace(msg)
	if len(msg) > maxMessageLen {
		msg = strings.ToValidUTF8(msg[:maxMessageLen], "") + "…"
	}
	return msg
}

// secretsOf lists the strings that must never be echoed, longest first:
// the whole cookie, every value in it that looks like a credential, and
// each long segment of those that are JWTs (an upstream may quote just the
// signature). A cookie that does not parse is split naively, so a stray
// segment cannot stop its tokens from being found.
func secretsOf(cookie string) []string {
	out := []string{cookie}
	for _, p := range cookiePairs(cookie) {
		if len(p.Value) < minSecretLen || !cookies.IsSecret(p.Name, p.Value) {
			continue
		}
		out = append(out, p.Value)
		if parts := strings.Split(p.Value, "."); len(parts) == 3 {
			for _, part := range parts {
				if len(part) >= minSecretSegmentLen {
					out = append(out, part)
				}
			}
		}
	}
	slices.SortStableFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// Values shorter than these are not redacted: they are too short to be
// credentials and would garble messages.
const (
	minSecretLen        = 8
	minSecretSegmentLen = 16
)

func cookiePairs(cookie string) []cookies.Pair {
	if jar, err := cookies.Parse(cookie); err == nil {
		return jar.Pairs()
	}
	var out []cookies.Pair
	for seg := range strings.SplitSeq(cookie, ";") {
		name, value, ok := strings.Cut(seg, "=")
		if !ok {
			name, value = "", seg // a bare value may still be a token
		}
		out = append(out, cookies.Pair{Name: strings.TrimSpace(name), Value: strings.Trim(value, " \t\"")})
	}
	return out
}
