package cookies

import (
	"errors"
	"time"
)

// Names of the cookies LTX Studio requires.
const (
	fieldToken        = "lt_token"
	fieldRefreshToken = "lt_refresh_token"
)

// Credentials are a validated LTX Studio cookie.
type Credentials struct {
	Jar                Jar
	Token              string    // lt_token value
	RefreshToken       string    // lt_refresh_token value
	TokenExpiry        time.Time // lt_token exp; zero if the JWT has no exp
	RefreshTokenExpiry time.Time // lt_refresh_token exp if it is a JWT with exp; else zero (unknown)
	Email              string    // lt_token's email claim, "" if absent
}

// ParseLTX parses a cookie string and checks it carries what LTX Studio
// needs: a non-empty lt_token that is a JWT, and a non-empty
// lt_refresh_token. An expired lt_token is accepted; callers decide what
// expiry means for them.
//
// Errors are *SyntaxError, *MissingFieldsError or *MalformedTokenError.
func ParseLTX(s string) (Credentials, error) {
	jar, err := Parse(s)
	if err != nil {
		return Credentials{}, err
	}
	token, refresh, err := requiredFields(jar)
	if err != nil {
		return Credentials{}, err
	}
	claims, err := DecodeJWT(token)
	if err != nil {
		return Credentials{}, withField(err, fieldToken)
	}
	c := Credentials{
		Jar:          jar,
		Token:        token,
		RefreshToken: refresh,
		TokenExpiry:  claims.Expiry,
		Email:        claims.Email,
	}
	// LTX refresh tokens may be opaque, so one that is not a JWT is
	// accepted with an unknown expiry rather than rejected.
	if rc, err := DecodeJWT(refresh); err == nil {
		c.RefreshTokenExpiry = rc.Expiry
	}
	return c, nil
}

func requiredFields(jar Jar) (token, refresh string, err error) {
	token, _ = jar.Get(fieldToken)
	refresh, _ = jar.Get(fieldRefreshToken)
	var missing []string
	if token == "" {
		missing = append(missing, fieldToken)
	}
	if refresh == "" {
		missing = append(missing, fieldRefreshToken)
	}
	if missing != nil {
		return "", "", &MissingFieldsError{Fields: missing}
	}
	return token, refresh, nil
}

// withField names the cookie in a DecodeJWT error.
func withField(err error, field string) error {
	var mt *MalformedTokenError
	if !errors.As(err, &mt) {
		return err
	}
	return &MalformedTokenError{Field: field, Reason: mt.Reason}
}
