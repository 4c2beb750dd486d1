package webhooks

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/poolgate/poolgate/internal/errs"
)

func TestCheckURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		url          string
		allowPrivate bool
		wantErr      string // substring of the message; "" means accepted
	}{
		{"https", "https://hooks.example.com/poolgate?x=1", false, ""},
		{"http with port", "http://hooks.example.com:8080/cb", false, ""},
		{"public IPv4", "https://93.184.216.34/cb", false, ""},
		{"public IPv6", "https://[2606:2800:220:1::1]/cb", false, ""},
		{"host name is not resolved here", "http://localhost:8080/cb", false, ""},
		{"loopback allowed when private allowed", "http://127.0.0.1:8080/cb", true, ""},
		{"ftp", "ftp://example.com/x", false, "http or https"},
		{"no scheme", "example.com/cb", false, "http or https"},
		{"no host", "https:///cb", false, "must have a host"},
		{"opaque", "http:example.com", false, "must have a host"},
		{"userinfo", "https://user:pw@example.com/cb", false, "user name or password"},
		{"userinfo even when private allowed", "https://user@example.com/cb", true, "user name or password"},
		{"bad port", "https://example.com:99999/cb", false, "invalid port"},
		{"too long", "https://example.com/" + strings.Repeat("a", MaxURLLength), false, "longer than"},
		{"control character", "https://example.com/\x00", false, "does not parse"},
		{"loopback", "http://127.0.0.1:8080/cb", false, "loopback"},
		{"loopback v6", "http://[::1]/cb", false, "loopback"},
		{"v4-mapped loopback", "http://[::ffff:127.0.0.1]/cb", false, "loopback"},
		{"rfc1918 10/8", "http://10.1.2.3/cb", false, "private"},
		{"rfc1918 172.16/12", "http://172.31.0.1/cb", false, "private"},
		{"rfc1918 192.168/16", "http://192.168.1.1/cb", false, "private"},
		{"unique local v6", "http://[fd00::1]/cb", false, "private"},
		{"link-local metadata", "http://169.254.169.254/latest/meta-data", false, "link-local"},
		{"link-local v6", "http://[fe80::1]/cb", false, "link-local"},
		{"unspecified", "http://0.0.0.0/cb", false, "unspecified"},
		{"multicast", "http://224.0.0.1/cb", false, "multicast"},
		{"cgnat", "http://100.64.0.1/cb", false, "carrier-grade NAT"},
		{"nat64 of private", "http://[64:ff9b::a00:1]/cb", false, "private"},
		{"6to4 of loopback", "http://[2002:7f00:1::]/cb", false, "loopback"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := CheckURL(tc.url, tc.allowPrivate)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckURL(%q) = %v, want accepted", tc.url, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckURL(%q) accepted it, want an error about %q", tc.url, tc.wantErr)
			}
			e := errs.As(err)
			if e.Kind != errs.KindInvalid || e.Code != "invalid_webhook_url" || !strings.Contains(e.Message, tc.wantErr) {
				t.Fatalf("CheckURL(%q) = %v, want invalid_webhook_url mentioning %q", tc.url, err, tc.wantErr)
			}
		})
	}
}

func TestBlockedReasonAllowsPublic(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"1.1.1.1", "8.8.8.8", "100.128.0.1", "2001:4860:4860::8888", "64:ff9b::808:808"} {
		if why := blockedReason(netip.MustParseAddr(s)); why != "" {
			t.Errorf("%s refused as %s, want allowed", s, why)
		}
	}
}

// The guard sits in the dialer, below name resolution, so it sees the
// address actually dialed whatever URL led there.
func TestGuardedClientRefusesAtDial(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	for _, host := range []string{rc.Listener.Addr().String(), strings.Replace(rc.Listener.Addr().String(), "127.0.0.1", "localhost", 1)} {
		t.Run(host, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+host+"/", nil)
			resp, err := newClient(false, 1).Do(req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("guarded client reached %s", host)
			}
			if _, ok := isRefused(err); !ok {
				t.Fatalf("error %v is not a dial refusal", err)
			}
		})
	}
	if n := len(rc.got()); n != 0 {
		t.Fatalf("receiver saw %d requests, want 0", n)
	}
}
