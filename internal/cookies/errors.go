package cookies

import (
	"fmt"
	"strings"
)

// SyntaxError means a cookie string could not be read at all. Msg names the
// problem and, at most, the cookie's name or position; never a value.
type SyntaxError struct{ Msg string }

func (e *SyntaxError) Error() string { return "invalid cookie string: " + e.Msg }

func syntaxErrorf(format string, args ...any) *SyntaxError {
	return &SyntaxError{Msg: fmt.Sprintf(format, args...)}
}

// MissingFieldsError lists the required LTX cookies that are absent or
// empty, in the order lt_token, lt_refresh_token.
type MissingFieldsError struct{ Fields []string }

func (e *MissingFieldsError) Error() string {
	return "Missing required cookie fields: " + strings.Join(e.Fields, " | ")
}

// MalformedTokenError means a token is not a usable JWT. Field is the cookie
// name ("" when DecodeJWT is called directly); Reason is a fixed phrase that
// never quotes the token.
type MalformedTokenError struct{ Field, Reason string }

func (e *MalformedTokenError) Error() string {
	field := e.Field
	if field == "" {
		field = "token"
	}
	return field + " is not a valid JWT: " + e.Reason
}
