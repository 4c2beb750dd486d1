package ltxstudio

// This file holds every detail of the LTX Studio wire contract: routes,
// header, query and cookie names, JSON bodies, upstream status strings and
// the HTTP status → provider.Class mapping. Pointing poolgate at the real
// service, or at a changed one, is a change to this file only. The
// simulator (internal/provider/sim) serves these same definitions, so the
// two cannot drift apart.

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/poolgate/poolgate/internal/provider"
)

// Routes, as "METHOD /path" patterns that http.ServeMux accepts directly.
// "{id}" stands for a generation id.
const (
	RouteSubmit  = "POST /api/v1/generations"
	RouteGet     = "GET /api/v1/generations/{id}"
	RouteLookup  = "GET /api/v1/generations" // with QueryIdempotencyKey
	RouteCancel  = "POST /api/v1/generations/{id}/cancel"
	RouteRefresh = "POST /api/v1/auth/refresh"
	// RouteMe answers who the cookies belong to: the cheapest
	// authenticated call, used to probe an account before it takes jobs
	// again.
	RouteMe = "GET /api/v1/me"

	// PathParamID is the wildcard name used for generation ids in routes.
	PathParamID = "id"
)

// Header, query parameter and cookie names.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderRetryAfter     = "Retry-After"
	HeaderCookie         = "Cookie"
	QueryIdempotencyKey  = "idempotencyKey"

	CookieToken        = "lt_token"         // short-lived access JWT
	CookieRefreshToken = "lt_refresh_token" // long-lived refresh token
	CookieID           = "lt_id"            // stable user id, not a credential
)

// MaxResponseBytes bounds how much of any upstream response is read.
const MaxResponseBytes = 1 << 20

// SubmitRequest is the body of RouteSubmit.
type SubmitRequest struct {
	Type   string          `json:"type"`
	Params json.RawMessage `json:"params"`
	// ClientRef is poolgate's job id, so generations can be traced back
	// from the upstream's side.
	ClientRef string `json:"clientRef,omitempty"`
}

// Generation is the body returned by RouteSubmit (201 when created, 200
// when the Idempotency-Key was seen before), RouteGet, RouteLookup and
// RouteCancel.
type Generation struct {
	ID             string          `json:"id"`
	Status         string          `json:"status"` // one of the Status* constants
	Result         json.RawMessage `json:"result,omitempty"`
	Error          string          `json:"error,omitempty"`
	Type           string          `json:"type,omitempty"`
	ClientRef      string          `json:"clientRef,omitempty"`
	IdempotencyKey string          `json:"idempotencyKey,omitempty"`
}

// Upstream generation status strings.
const (
	StatusQueued     = "queued"
	StatusProcessing = "processing"
	StatusCompleted  = "completed"
	StatusFailed     = "failed"
	StatusCanceled   = "canceled"
)

// StateOf maps an upstream status string to a provider.State. A status this
// file does not know is treated as still running: the generation may be
// holding the account's slot, so releasing it on a guess would break the
// concurrency limit, while the scheduler's job timeout bounds the wait.
func StateOf(status string) provider.State {
	switch status {
	case StatusCompleted:
		return provider.StateSucceeded
	case StatusFailed:
		return provider.StateFailed
	case StatusCanceled:
		return provider.StateCanceled
	default:
		return provider.StateRunning
	}
}

// RefreshResponse is the body returned by RouteRefresh.
type RefreshResponse struct {
	Token        string `json:"lt_token"`
	RefreshToken string `json:"lt_refresh_token"`
}

// ErrorResponse is the body of every non-2xx answer.
type ErrorResponse struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail describes one upstream error.
type ErrorDetail struct {
	Code    string `json:"code"` // one of the Code* constants
	Message string `json:"message"`
	// ResetAt comes with CodeDailyQuota: when the account's quota resets
	// (RFC 3339).
	ResetAt string `json:"resetAt,omitempty"`
}

// Me is the body returned by RouteMe.
type Me struct {
	Email string `json:"email"`
}

// Upstream error codes.
const (
	CodeUnauthorized = "unauthorized"
	CodeRateLimited  = "rate_limited"
	// CodeDailyQuota on a 429 says the account's daily quota is spent;
	// the body's resetAt says when it comes back.
	CodeDailyQuota  = "daily_quota_exceeded"
	CodeUnavailable = "unavailable"
	CodeInvalid     = "invalid_request"
	CodeModerated   = "moderated"
	// CodeNotFound on a 404 is what distinguishes "no such generation" from
	// a 404 of a proxy or a wrong base URL: only the former lets Lookup say
	// the key was never seen.
	CodeNotFound = "not_found"
)

// ClassOfHTTP maps a non-2xx HTTP status to a provider.Class.
func ClassOfHTTP(code int) provider.Class {
	switch {
	case code == http.StatusUnauthorized, code == http.StatusForbidden:
		return provider.ClassAuth
	case code == http.StatusTooManyRequests:
		return provider.ClassRateLimited
	case code == http.StatusBadRequest, code == http.StatusUnprocessableEntity:
		return provider.ClassInvalid
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly:
		return provider.ClassTransient
	case code >= 400 && code < 500:
		return provider.ClassPermanent
	default:
		return provider.ClassTransient
	}
}

// routeParts splits a route into its method and a path with id filled in.
func routeParts(route, id string) (method, path string) {
	method, path, _ = strings.Cut(route, " ")
	return method, strings.Replace(path, "{"+PathParamID+"}", id, 1)
}
