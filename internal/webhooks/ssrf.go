package webhooks

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/poolgate/poolgate/internal/errs"
)

// MaxURLLength bounds a webhook URL.
const MaxURLLength = 2048

// CheckURL validates a webhook URL before it is accepted (a job's replyUrl):
// http or https, a host, no userinfo, at most MaxURLLength characters, and,
// unless allowPrivate, no literal IP address in a private range. Host names
// are not resolved here; the Deliverer checks every address it actually
// dials, which also defeats DNS rebinding. Errors are *errs.Error of kind
// invalid with code "invalid_webhook_url" and a message safe to show.
func CheckURL(raw string, allowPrivate bool) error {
	if len(raw) > MaxURLLength {
		return invalidURL("webhook URL is longer than %d characters", MaxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return invalidURL("webhook URL does not parse")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return invalidURL("webhook URL must use http or https")
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return invalidURL("webhook URL must have a host")
	}
	if u.User != nil {
		return invalidURL("webhook URL must not carry a user name or password")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return invalidURL("webhook URL has an invalid port")
		}
	}
	if allowPrivate {
		return nil
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil {
		if why := blockedReason(ip); why != "" {
			return invalidURL("webhook URL points at a %s address, which is not allowed", why)
		}
	}
	return nil
}

func invalidURL(format string, args ...any) *errs.Error {
	return errs.Invalid("invalid_webhook_url", format, args...)
}

// refusedError is returned by the dial guard; a delivery that meets it
// fails at once instead of retrying, since the address will not change
// into an allowed one by waiting.
type refusedError struct {
	addr netip.Addr
	why  string
}

func (e *refusedError) Error() string {
	return "dial " + e.addr.String() + ": " + e.why + " addresses are not allowed"
}

// Ranges IsPrivate and friends do not cover.
var (
	blockedPrefixes = []struct {
		prefix netip.Prefix
		why    string
	}{
		{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
		{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT"},
		{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol"},
		{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
		{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
		{netip.MustParsePrefix("fec0::/10"), "site-local"},
	}
	// Prefixes that embed an IPv4 address in their last 32 bits; the
	// embedded address is checked too, since a NAT64 or 6to4 gateway would
	// forward to it.
	nat64Prefixes = []netip.Prefix{
		netip.MustParsePrefix("64:ff9b::/96"),
		netip.MustParsePrefix("64:ff9b:1::/48"),
	}
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// blockedReason says why ip must not be dialed, or "" when it may.
func blockedReason(ip netip.Addr) string {
	ip = ip.Unmap().WithZone("")
	switch {
	case !ip.IsValid():
		return "invalid"
	case ip.IsUnspecified():
		return "unspecified"
	case ip.IsLoopback():
		return "loopback"
	case ip.IsPrivate():
		return "private"
	case ip.IsLinkLocalUnicast():
		return "link-local"
	case ip.IsMulticast():
		return "multicast"
	}
	for _, b := range blockedPrefixes {
		if b.prefix.Contains(ip) {
			return b.why
		}
	}
	if ip.Is6() {
		a := ip.As16()
		for _, p := range nat64Prefixes {
			if p.Contains(ip) {
				return blockedReason(netip.AddrFrom4([4]byte(a[12:16])))
			}
		}
		if sixToFour.Contains(ip) {
			return blockedReason(netip.AddrFrom4([4]byte(a[2:6])))
		}
	}
	return ""
}

// guardControl runs after DNS resolution and before connect, on the exact
// address about to be dialed.
func guardControl(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return err
	}
	if why := blockedReason(ip); why != "" {
		return &refusedError{addr: ip.Unmap(), why: why}
	}
	return nil
}

// newClient builds the delivery HTTP client: no proxy (it would dial on our
// behalf, past the guard), no redirects (a 3xx counts as a failed attempt),
// and, unless allowPrivate, the dial guard.
func newClient(allowPrivate bool, concurrency int) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		dialer.Control = guardControl
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = dialer.DialContext
	tr.MaxIdleConnsPerHost = concurrency
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// isRefused reports whether err came from the dial guard.
func isRefused(err error) (*refusedError, bool) {
	var r *refusedError
	ok := errors.As(err, &r)
	return r, ok
}

// RedactURL is raw as logs may show it: scheme and host (with port), the
// path replaced by "/…" and no user info, query or fragment. Webhook URLs
// often carry their secret in the path (Slack's /services/T…/B…/token) or
// the query, so neither may reach a log line or a stored error.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparsable URL)"
	}
	out := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		out += "/…"
	}
	return out
}
