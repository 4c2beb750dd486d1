package cookies

import (
	"encoding/base64"
	"strings"
	"testing"
)

// jwtHeader is the header of every test token; signatures are never checked.
const jwtHeader = `{"alg":"HS256","typ":"JWT"}`

// makeJWT returns an unsigned JWT with the given raw JSON payload, encoded
// without padding as real tokens are.
func makeJWT(payload string) string {
	return makeJWTWith(base64.RawURLEncoding, jwtHeader, payload)
}

// makeJWTWith builds a token with any header and encoding, for tests of the
// decoder's edges.
func makeJWTWith(enc *base64.Encoding, header, payload string) string {
	return enc.EncodeToString([]byte(header)) + "." +
		enc.EncodeToString([]byte(payload)) + ".c2lnbmF0dXJl"
}

// assertNoLeak fails the test if msg contains secret, which would put a
// cookie value into an HTTP response or log line.
func assertNoLeak(t *testing.T, msg, secret string) {
	t.Helper()
	if strings.Contains(msg, secret) {
		t.Errorf("error message leaks a secret: %q contains %q", msg, secret)
	}
}
