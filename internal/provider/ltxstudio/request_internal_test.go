package ltxstudio

import (
	"context"
	"net/http"
	"net/url"
	"testing"
)

// TestRequestURLsMatchParsedOnes: a request built from the base URL parsed
// once goes to exactly the URL that parsing the whole string gave, whatever
// the base's path prefix and whatever the id and query hold.
func TestRequestURLsMatchParsedOnes(t *testing.T) {
	bases := []string{"http://127.0.0.1:8080", "https://ltx.example.com/prefix/", "http://h:1/p%20q", "http://[::1]:9/", "http://h:/"}
	ids := []string{"gen_123", "a/b?c", "ü é#", "%2F", ""}
	queries := []url.Values{nil, {QueryIdempotencyKey: {"job_1/2 &x"}}}
	for _, base := range bases {
		c := New(base, nil)
		if c.baseURL == nil {
			t.Fatalf("%s did not parse", base)
		}
		for _, route := range []string{RouteSubmit, RouteGet, RouteCancel, RouteLookup} {
			for _, id := range ids {
				for _, q := range queries {
					got, err := c.newRequest(context.Background(), route, id, q, nil)
					if err != nil {
						t.Fatal(err)
					}
					method, path := routeParts(route, url.PathEscape(id))
					s := c.base + path
					if len(q) > 0 {
						s += "?" + q.Encode()
					}
					want, err := http.NewRequest(method, s, nil)
					if err != nil {
						t.Fatal(err)
					}
					if got.Method != want.Method || got.URL.String() != want.URL.String() || got.Host != want.Host ||
						got.URL.EscapedPath() != want.URL.EscapedPath() || got.URL.RequestURI() != want.URL.RequestURI() {
						t.Errorf("%s %s id %q query %v: built %s %s (host %s), parsed %s %s (host %s)", base, route, id, q,
							got.Method, got.URL, got.Host, want.Method, want.URL, want.Host)
					}
				}
			}
		}
	}
	// A base that does not parse keeps the old path, which reports it.
	c := New("http://bad host", nil)
	if _, err := c.newRequest(context.Background(), RouteGet, "x", nil, nil); err == nil {
		t.Error("a base URL with a space built a request")
	}
}
