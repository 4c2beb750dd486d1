package api

import (
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/errs"
)

// The rate-limit headers of draft-ietf-httpapi-ratelimit-headers, in the
// three-field form most clients read. Reset is in seconds.
const (
	headerRateLimit          = "RateLimit-Limit"
	headerRateLimitRemaining = "RateLimit-Remaining"
	headerRateLimitReset     = "RateLimit-Reset"
)

// admit runs once per authenticated request, before the scope check: it
// counts the request for the key's usage and applies the key's rate limit,
// setting the RateLimit-* headers on whatever answer follows (errors too).
func (s *Server) admit(c echo.Context, p auth.Principal) error {
	s.Usage.Request(p)
	if s.Limits == nil {
		return nil
	}
	d, ok := s.Limits.Allow(p.KeyID, p.RateLimit)
	if !ok {
		return nil
	}
	h := c.Response().Header()
	h.Set(headerRateLimit, strconv.Itoa(d.Limit))
	h.Set(headerRateLimitRemaining, strconv.Itoa(d.Remaining))
	h.Set(headerRateLimitReset, strconv.Itoa(ceilSeconds(d.Reset)))
	if d.Allowed {
		return nil
	}
	return &errs.Error{
		Kind:       errs.KindRateLimited,
		Code:       "rate_limited",
		Message:    "this API key is over its rate limit; retry after the Retry-After header's seconds",
		Details:    map[string]any{"limit": d.Limit, "retryAfterSeconds": ceilSeconds(d.RetryAfter)},
		RetryAfter: d.RetryAfter,
	}
}

func ceilSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}
