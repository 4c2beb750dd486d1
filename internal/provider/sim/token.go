package sim

import (
	"encoding/base64"
	"encoding/json"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
)

// jwtHeader is the header segment of every token the simulator issues.
var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// jwtSignature is a fixed, well-formed signature segment: the simulator
// never verifies signatures, and neither does poolgate.
var jwtSignature = base64.RawURLEncoding.EncodeToString([]byte("poolgate-sim-unsigned"))

// Token kinds, carried in a "use" claim so that an access token and a
// refresh token with the same exp differ.
const (
	useAccess  = "access"
	useRefresh = "refresh"
)

// Token returns an unsigned but well-formed JWT for email that expires at
// exp, as the simulator issues for lt_token. Its iat is the current time,
// or exp if that is earlier.
func Token(email string, exp time.Time) string {
	return token(email, useAccess, earlier(time.Now(), exp), exp)
}

// Cookie returns a cookie string for email as a browser would copy it:
// "lt_id=…; lt_token=…; lt_refresh_token=…", with the two tokens expiring
// at tokenExp and refreshExp.
func Cookie(email string, tokenExp, refreshExp time.Time) string {
	now := time.Now()
	return cookieString(email,
		token(email, useAccess, earlier(now, tokenExp), tokenExp),
		token(email, useRefresh, earlier(now, refreshExp), refreshExp))
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func cookieString(email, tok, refresh string) string {
	return ltxstudio.CookieID + "=" + userID(email) + "; " +
		ltxstudio.CookieToken + "=" + tok + "; " +
		ltxstudio.CookieRefreshToken + "=" + refresh
}

// token builds a JWT whose payload carries email, use, iat and exp (whole
// seconds, as in real tokens).
func token(email, use string, iat, exp time.Time) string {
	payload, _ := json.Marshal(struct {
		Email string `json:"email"`
		Use   string `json:"use"`
		IAT   int64  `json:"iat"`
		Exp   int64  `json:"exp"`
	}{email, use, iat.Unix(), exp.Unix()})
	return jwtHeader + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + jwtSignature
}

// userID derives a stable, non-secret lt_id from an email.
func userID(email string) string {
	h := fnv.New64a()
	h.Write([]byte(strings.ToLower(strings.TrimSpace(email))))
	return "sim-" + strconv.FormatUint(h.Sum64(), 36)
}
