// Package api is poolgate's HTTP interface: it translates requests into calls
// on the domain packages and their results and errors into JSON. It holds no
// business rules and never sees SQL.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-playground/validator/v10"
	"github.com/labstack/echo/v4"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/alerts"
	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/scheduler"
	"github.com/poolgate/poolgate/internal/usage"
	"github.com/poolgate/poolgate/internal/webhooks"
)

// MaxBodyBytes is the largest request body accepted; bigger ones get 413.
const MaxBodyBytes = 1 << 20

// Pinger reports whether the database answers; it backs /readyz.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Deps are what the API needs from the rest of poolgate.
type Deps struct {
	Logger   *slog.Logger
	DB       Pinger
	Keys     *auth.Store
	Accounts *accounts.Store
	Jobs     *scheduler.Scheduler
	Alerts   *alerts.Store
	// Secrets are the tenants' webhook signing secrets (the deliverer's).
	Secrets *webhooks.Secrets
	Now     func() time.Time
	// AllowPrivateWebhooks lets replyUrl point at private and loopback
	// addresses (POOLGATE_WEBHOOK_ALLOW_PRIVATE).
	AllowPrivateWebhooks bool
	// OnJobCreated, if set, is told which key created a job (usage counts).
	OnJobCreated func(keyID string)
	// UsageStats reads per-account and per-key usage (GET /v1/usage,
	// GET /v1/accounts/{email}/stats).
	UsageStats *usage.Store
	// Console serves the operator console under /console; nil serves none.
	Console http.Handler
	// Results holds stored job results (GET /v1/jobs/{id}/result); nil
	// serves none.
	Results ResultOpener

	// keys: Verifier checks Bearer keys (an *auth.Cache); nil means Keys,
	// uncached. Limits applies per-key rate limits; nil means none. Usage
	// counts requests per key; nil counts nothing.
	Verifier Verifier
	Limits   *auth.Limiter
	Usage    *auth.Usage
}

// Verifier turns a presented key into the principal it speaks for.
type Verifier interface {
	Verify(ctx context.Context, secret string) (auth.Principal, error)
}

// Server holds the handlers' dependencies.
type Server struct {
	Deps
	validate *validator.Validate
}

// New returns the HTTP handler for the whole API.
func New(d Deps) http.Handler {
	return NewServer(d).Echo()
}

// NewServer returns a Server; Echo builds its router.
func NewServer(d Deps) *Server {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Verifier == nil && d.Keys != nil {
		d.Verifier = d.Keys
	}
	return &Server{Deps: d, validate: newValidator()}
}

// Echo builds the router with every route of routes.go and the middleware
// every request goes through.
func (s *Server) Echo() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.Use(s.requestID, s.logRequests, limitBody(MaxBodyBytes), cleanInput)
	for _, r := range s.routes() {
		h := r.handler
		if r.scope != public {
			h = s.authenticate(r.scope, h)
		}
		e.Add(r.method, r.path, h)
	}
	return e
}
