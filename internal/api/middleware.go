package api

import (
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/poolgate/poolgate/internal/auth"
)

const (
	headerRequestID = "X-Request-Id"
	ctxRequestID    = "poolgate.request_id"
	ctxPrincipal    = "poolgate.principal"
	ctxBody         = "poolgate.body"
)

// saneRequestID is what an incoming X-Request-Id must look like to be kept;
// anything else (too long, odd characters that could forge log lines) is
// replaced by a fresh id.
var saneRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// requestID gives every request an id, honouring a sane incoming one, and
// echoes it in X-Request-Id.
func (s *Server) requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(headerRequestID)
		if !saneRequestID.MatchString(id) {
			id = "req_" + rand.Text()
		}
		c.Set(ctxRequestID, id)
		c.Response().Header().Set(headerRequestID, id)
		return next(c)
	}
}

func requestIDOf(c echo.Context) string {
	id, _ := c.Get(ctxRequestID).(string)
	return id
}

// logRequests writes one structured line per request. It logs the route
// pattern and path but never headers, query strings or bodies, which is
// where keys and cookies travel.
func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		if err := next(c); err != nil {
			c.Error(err)
		}
		attrs := []slog.Attr{
			slog.String("request_id", requestIDOf(c)),
			slog.String("method", c.Request().Method),
			slog.String("route", c.Path()),
			slog.String("path", c.Request().URL.Path),
			slog.Int("status", c.Response().Status),
			slog.Int64("bytes", c.Response().Size),
			slog.Duration("duration", time.Since(start)),
		}
		if p, ok := c.Get(ctxPrincipal).(auth.Principal); ok {
			attrs = append(attrs, slog.Int64("tenant", p.TenantID), slog.String("key", p.KeyID))
		}
		level := slog.LevelInfo
		if c.Response().Status >= 500 {
			level = slog.LevelError
		}
		s.Logger.LogAttrs(c.Request().Context(), level, "request", attrs...)
		return nil
	}
}

// limitBody refuses bodies over limit: at once when Content-Length says so,
// otherwise when reading crosses it (decode sees *http.MaxBytesError). It
// also notes whether the body was read to its end (see unreadBody).
func limitBody(limit int64) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if r.ContentLength > limit {
				return errTooLarge
			}
			b := &trackedBody{ReadCloser: http.MaxBytesReader(c.Response(), r.Body, limit)}
			r.Body = b
			c.Set(ctxBody, b)
			return next(c)
		}
	}
}

// trackedBody remembers whether its reader reached the end.
type trackedBody struct {
	io.ReadCloser
	done bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.done = true
	}
	return n, err
}

// unreadBody reports whether the request announced a body that nobody
// read. Answering such a request, net/http first drains the body to keep
// the connection, so a client that announces Content-Length: 10 and sends
// nothing would wait for its 401 until the read timeout. Closing the
// connection instead answers at once.
func unreadBody(c echo.Context) bool {
	if c.Request().ContentLength == 0 {
		return false
	}
	b, ok := c.Get(ctxBody).(*trackedBody)
	return !ok || !b.done
}

// authenticate verifies the Bearer key, applies its rate limit and checks
// that it holds scope, then runs h.
func (s *Server) authenticate(scope string, h echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		key, err := auth.BearerToken(c.Request().Header.Get(echo.HeaderAuthorization))
		if err != nil {
			return err
		}
		p, err := s.Verifier.Verify(c.Request().Context(), key)
		if err != nil {
			return err
		}
		c.Set(ctxPrincipal, p)
		if err := s.admit(c, p); err != nil {
			return err
		}
		if err := p.Require(scope); err != nil {
			return err
		}
		return h(c)
	}
}

// principal is the verified caller of an authenticated route.
func principal(c echo.Context) auth.Principal {
	p, _ := c.Get(ctxPrincipal).(auth.Principal)
	return p
}
