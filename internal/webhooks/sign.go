package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultTolerance is the clock skew Verify accepts when given none.
const DefaultTolerance = 5 * time.Minute

var (
	// ErrBadTimestamp means the timestamp header is missing, malformed, or
	// too far from the receiver's clock (a possible replay).
	ErrBadTimestamp = errors.New("webhooks: missing or stale timestamp")
	// ErrBadSignature means no v1 signature matches the body.
	ErrBadSignature = errors.New("webhooks: signature does not match")
)

// Sign returns the Poolgate-Signature header value for body signed at ts:
// "v1=" + hex(HMAC-SHA256(secret, "<ts>.<body>")).
func Sign(secret string, ts int64, body []byte) string {
	return "v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret string, ts int64, body []byte) []byte {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(strconv.FormatInt(ts, 10)))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks a delivery as a receiver should: the timestamp must be
// within tolerance of now (DefaultTolerance when tolerance <= 0), and one of
// the comma-separated v1 signatures must match body under secret. The
// comparison is constant-time.
func Verify(secret string, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	ts, err := strconv.ParseInt(header.Get(HeaderTimestamp), 10, 64)
	if err != nil {
		return ErrBadTimestamp
	}
	if skew := now.Sub(time.Unix(ts, 0)); skew > tolerance || skew < -tolerance {
		return ErrBadTimestamp
	}
	want := mac(secret, ts, body)
	for _, v := range header.Values(HeaderSignature) {
		for _, part := range strings.Split(v, ",") {
			sig, ok := strings.CutPrefix(strings.TrimSpace(part), "v1=")
			if !ok {
				continue
			}
			got, err := hex.DecodeString(sig)
			if err == nil && hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return ErrBadSignature
}
