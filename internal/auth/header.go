package auth

import (
	"strings"

	"github.com/poolgate/poolgate/internal/errs"
)

func unauthenticated(code, msg string) *errs.Error {
	return &errs.Error{Kind: errs.KindUnauthenticated, Code: code, Message: msg}
}

// The 401 answers. Their messages never quote the presented key.
var (
	ErrMissingKey      = unauthenticated("missing_api_key", "no API key: send it as Authorization: Bearer <key>")
	ErrMalformedHeader = unauthenticated("malformed_authorization_header", "the Authorization header must be exactly 'Bearer <key>'")
	ErrInvalidKey      = unauthenticated("invalid_api_key", "the API key is not valid")
	ErrExpiredKey      = unauthenticated("expired_api_key", "the API key has expired")
)

// BearerToken extracts the key from an Authorization header value. The
// scheme is case-insensitive (RFC 9110); everything else is strict: one
// space, then a key with no whitespace in or around it.
func BearerToken(header string) (string, error) {
	if header == "" {
		return "", ErrMissingKey
	}
	scheme, key, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" ||
		strings.ContainsAny(key, " \t\r\n\v\f") {
		return "", ErrMalformedHeader
	}
	return key, nil
}
