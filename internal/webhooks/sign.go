package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Deliveries are signed as Standard Webhooks (standardwebhooks.com) sign
// them, so receivers verify with the official library of their language:
//
//	webhook-id:        the delivery id (stable across retries)
//	webhook-timestamp: Unix seconds of this attempt
//	webhook-signature: "v1,<base64 HMAC-SHA256(key, id + "." + timestamp + "." + body)>",
//	                   space-separated when more than one key signs
//
// The key is the bytes the secret "whsec_<base64>" encodes.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// DefaultTolerance is the clock skew Verify accepts when given none.
const DefaultTolerance = 5 * time.Minute

var (
	// ErrBadTimestamp means the timestamp header is missing, malformed, or
	// too far from the receiver's clock (a possible replay).
	ErrBadTimestamp = errors.New("webhooks: missing or stale timestamp")
	// ErrBadSignature means no v1 signature matches the body.
	ErrBadSignature = errors.New("webhooks: signature does not match")
	// ErrBadSecret means a secret is not "whsec_" followed by base64.
	ErrBadSecret = errors.New("webhooks: secret is not whsec_<base64>")
)

// KeyOf returns the HMAC key a secret encodes. Secrets made before
// poolgate signed as Standard Webhooks used unpadded base64url; both read.
func KeyOf(secret string) ([]byte, error) {
	raw, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, ErrBadSecret
	}
	if k, err := base64.StdEncoding.DecodeString(raw); err == nil && len(k) > 0 {
		return k, nil
	}
	if k, err := base64.RawURLEncoding.DecodeString(raw); err == nil && len(k) > 0 {
		return k, nil
	}
	return nil, ErrBadSecret
}

// FormatSecret shows key as receivers' libraries read it: "whsec_" and
// standard, padded base64.
func FormatSecret(key []byte) string {
	return SecretPrefix + base64.StdEncoding.EncodeToString(key)
}

// Sign returns one "v1,<signature>" of body as delivery id sent at ts.
func Sign(key []byte, id string, ts int64, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(mac(key, id, ts, body))
}

// SignatureHeader is the webhook-signature value: one signature per key,
// space-separated (during a secret's rotation, both secrets sign).
func SignatureHeader(keys [][]byte, id string, ts int64, body []byte) string {
	sigs := make([]string, len(keys))
	for i, k := range keys {
		sigs[i] = Sign(k, id, ts, body)
	}
	return strings.Join(sigs, " ")
}

func mac(key []byte, id string, ts int64, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write([]byte(strconv.FormatInt(ts, 10)))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks a delivery as a receiver should: the timestamp must be
// within tolerance of now (DefaultTolerance when tolerance <= 0), and one of
// the space-separated v1 signatures must match id, timestamp and body under
// secret. The comparison is constant-time.
func Verify(secret string, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	key, err := KeyOf(secret)
	if err != nil {
		return err
	}
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
	id := header.Get(HeaderID)
	if id == "" {
		return ErrBadSignature
	}
	want := mac(key, id, ts, body)
	for _, part := range strings.Fields(header.Get(HeaderSignature)) {
		sig, ok := strings.CutPrefix(part, "v1,")
		if !ok {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrBadSignature
}
