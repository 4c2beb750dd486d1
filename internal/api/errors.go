package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/poolgate/poolgate/internal/errs"
)

// errorBody is the envelope every error is sent in.
type errorBody struct {
	Error     errorDetail `json:"error"`
	RequestID string      `json:"request_id"`
}

type errorDetail struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details,omitempty"`
}

// kindHTTP maps each error kind to its status and envelope type. It is the
// one place that decides what status an error gets.
var kindHTTP = map[errs.Kind]struct {
	status int
	typ    string
}{
	errs.KindInternal:            {http.StatusInternalServerError, "api_error"},
	errs.KindInvalid:             {http.StatusBadRequest, "invalid_request_error"},
	errs.KindUnauthenticated:     {http.StatusUnauthorized, "authentication_error"},
	errs.KindForbidden:           {http.StatusForbidden, "permission_error"},
	errs.KindNotFound:            {http.StatusNotFound, "invalid_request_error"},
	errs.KindConflict:            {http.StatusConflict, "invalid_request_error"},
	errs.KindMethodNotAllowed:    {http.StatusMethodNotAllowed, "invalid_request_error"},
	errs.KindTooLarge:            {http.StatusRequestEntityTooLarge, "invalid_request_error"},
	errs.KindRateLimited:         {http.StatusTooManyRequests, "rate_limit_error"},
	errs.KindUnavailable:         {http.StatusServiceUnavailable, "api_error"},
	errs.KindGone:                {http.StatusGone, "invalid_request_error"},
	errs.KindHeadersTooLarge:     {http.StatusRequestHeaderFieldsTooLarge, "invalid_request_error"},
	errs.KindRangeNotSatisfiable: {http.StatusRequestedRangeNotSatisfiable, "invalid_request_error"},
}

// fromEcho translates the errors echo raises itself (routing, its own
// binders) into domain errors.
func fromEcho(he *echo.HTTPError) *errs.Error {
	switch he.Code {
	case http.StatusNotFound:
		return errs.NotFound("route_not_found", "no such route")
	case http.StatusMethodNotAllowed:
		return errs.New(errs.KindMethodNotAllowed, "method_not_allowed", "method not allowed on this route")
	case http.StatusRequestEntityTooLarge:
		return errTooLarge
	default:
		return errs.Internal(he)
	}
}

var errTooLarge = errs.New(errs.KindTooLarge, "request_too_large", "request body exceeds %d bytes", MaxBodyBytes)

// handleError is echo's HTTPErrorHandler: it writes err in the envelope and
// logs internal errors with the request id (their text is never shown).
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var e *errs.Error
	var he *echo.HTTPError
	switch {
	case errors.As(err, &e):
	case errors.As(err, &he):
		e = fromEcho(he)
	default:
		e = errs.Internal(err)
	}
	m := kindHTTP[e.Kind]
	status := m.status
	if e.Kind == errs.KindInternal || e.Kind == errs.KindUnavailable {
		s.Logger.Error("request failed", "request_id", requestIDOf(c), "code", e.Code, "err", e.Err)
	}
	h := c.Response().Header()
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((e.RetryAfter+999_999_999)/1_000_000_000)))
	}
	if e.Kind == errs.KindUnauthenticated {
		h.Set("WWW-Authenticate", `Bearer realm="poolgate"`)
	}
	if unreadBody(c) {
		h.Set(echo.HeaderConnection, "close") // answer now rather than drain the body first
	}
	var body any = errorBody{
		Error:     errorDetail{Type: m.typ, Code: e.Code, Message: e.Message, Details: e.Details},
		RequestID: requestIDOf(c),
	}
	if isUseapiPath(c.Request().URL.Path) {
		body = useapiError(e, status) // the compatibility surface keeps useapi's shape
	}
	if c.Request().Method == http.MethodHead {
		err = c.NoContent(status)
	} else {
		err = c.JSON(status, body)
	}
	if err != nil {
		s.Logger.Error("write error response", "request_id", requestIDOf(c), "err", err)
	}
}
