// Package errs defines the one error type poolgate's domain packages return
// to callers. Each error has a Kind, which internal/api maps to an HTTP
// status in one place, and a stable machine-readable Code that clients can
// switch on. Messages are shown to users, so they never carry secrets.
package errs

import (
	"errors"
	"fmt"
	"time"
)

// Kind is the class of an error; it decides the HTTP status.
type Kind int

const (
	// KindInternal is anything unexpected. Its message is never shown.
	KindInternal Kind = iota
	KindInvalid
	KindUnauthenticated
	KindForbidden
	KindNotFound
	KindConflict
	KindMethodNotAllowed
	KindTooLarge
	KindRateLimited
	KindUnavailable
	// KindGone is a resource that existed and was deleted for good (410).
	KindGone
	KindHeadersTooLarge
	// KindRangeNotSatisfiable is a Range header outside the resource (416).
	KindRangeNotSatisfiable
)

// Error is a user-facing error.
type Error struct {
	Kind    Kind
	Code    string // stable, snake_case, e.g. "missing_api_key"
	Message string // safe to show to the caller
	Details any    // optional structured detail, e.g. field errors
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter time.Duration
	// Err is the underlying cause; it is logged, never shown.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an error of the given kind and code with a formatted message.
func New(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid is a 400-class error about the request's content.
func Invalid(code, format string, args ...any) *Error {
	return New(KindInvalid, code, format, args...)
}

// NotFound is the answer for ids that do not exist and, identically, for ids
// that belong to another tenant.
func NotFound(code, format string, args ...any) *Error {
	return New(KindNotFound, code, format, args...)
}

// Conflict reports a request that contradicts the current state.
func Conflict(code, format string, args ...any) *Error {
	return New(KindConflict, code, format, args...)
}

// Internal wraps an unexpected error; callers see only a generic message.
func Internal(err error) *Error {
	return &Error{Kind: KindInternal, Code: "internal_error", Message: "internal error", Err: err}
}

// FieldError describes one invalid field of a request body.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Fields is a 400 listing every invalid field at once.
func Fields(fields ...FieldError) *Error {
	return &Error{Kind: KindInvalid, Code: "validation_failed", Message: "request has invalid fields", Details: fields}
}

// As returns err as an *Error, wrapping unknown errors as internal ones.
// err must not be nil: As(nil) is an internal error, so never end a function
// with `return errs.As(err)` (dbx.Classify is the storage boundary's way).
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Internal(err)
}

// Is reports whether err is an *Error with the given code.
func Is(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// Unavailable reports that a dependency (usually the database) failed; the
// caller may retry. The cause is logged, never shown.
func Unavailable(err error) *Error {
	return &Error{Kind: KindUnavailable, Code: "service_unavailable", Message: "the service is temporarily unavailable; retry shortly", Err: err}
}
