package api

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/tenant"
	"github.com/poolgate/poolgate/internal/timefmt"
)

// usageDays is how many recent days GET /v1/keys/{id} itemises.
const usageDays = 30

// keyJSON is an API key as shown to its tenant. Secret is set only in the
// answer that creates the key.
type keyJSON struct {
	ID          string         `json:"id"`
	Secret      string         `json:"secret,omitempty"`
	Name        string         `json:"name"`
	Start       string         `json:"start"`
	Mode        tenant.Mode    `json:"mode"`
	Scopes      []string       `json:"scopes"`
	Status      string         `json:"status"`
	CreatedUTC  string         `json:"createdUTC"`
	ExpiresUTC  *string        `json:"expiresUTC"`
	RevokedUTC  *string        `json:"revokedUTC"`
	ReplacedBy  *string        `json:"replacedBy"`
	RateLimit   *rateLimitJSON `json:"rateLimit"`
	LastUsedUTC *string        `json:"lastUsedUTC"`
	Usage       *usageJSON     `json:"usage,omitempty"`
	Replaces    *replacedJSON  `json:"replaces,omitempty"`
}

type rateLimitJSON struct {
	Requests int    `json:"requests"`
	Per      string `json:"per"`
}

type usageJSON struct {
	Requests      int64     `json:"requests"`
	JobsSubmitted int64     `json:"jobsSubmitted"`
	Days          []dayJSON `json:"days"`
}

type dayJSON struct {
	Day           string `json:"day"`
	Requests      int64  `json:"requests"`
	JobsSubmitted int64  `json:"jobsSubmitted"`
}

// replacedJSON tells a roll's caller until when the old key works.
type replacedJSON struct {
	ID         string `json:"id"`
	RevokedUTC string `json:"revokedUTC"`
}

func (s *Server) keyOut(k auth.Key) keyJSON {
	out := keyJSON{
		ID: k.ID, Name: k.Name, Start: k.Start, Mode: k.Mode, Scopes: k.Scopes,
		Status: k.Status(s.Now()), CreatedUTC: timefmt.UTC(k.CreatedAt),
	}
	out.ExpiresUTC = timefmt.UTCPtr(k.ExpiresAt)
	out.RevokedUTC = timefmt.UTCPtr(k.RevokedAt)
	out.LastUsedUTC = timefmt.UTCPtr(k.LastUsedAt)
	if k.ReplacedBy != "" {
		out.ReplacedBy = &k.ReplacedBy
	}
	if k.RateLimit != nil {
		out.RateLimit = &rateLimitJSON{Requests: k.RateLimit.Requests, Per: auth.FormatPer(k.RateLimit.Per)}
	}
	return out
}

type createKeyRequest struct {
	Name      string         `json:"name" validate:"required,max=100"`
	Scopes    []string       `json:"scopes" validate:"max=20"`
	Mode      tenant.Mode    `json:"mode" validate:"omitempty,oneof=live test"`
	ExpiresAt *string        `json:"expiresAt"`
	RateLimit *rateLimitJSON `json:"rateLimit"`
}

// params turns the request into key settings, reporting every field that
// does not parse at once.
func (r createKeyRequest) params() (auth.KeyParams, error) {
	p := auth.KeyParams{Name: r.Name, Mode: r.Mode, Scopes: r.Scopes}
	var fields []errs.FieldError
	if !auth.ValidName(r.Name) {
		fields = append(fields, errs.FieldError{Field: "name", Message: "must be 1 to 100 characters of text without control characters"})
	}
	if r.Scopes != nil && len(r.Scopes) == 0 {
		// [] reading as "all of mine" would widen a key by omission.
		fields = append(fields, errs.FieldError{Field: "scopes", Message: "must name at least one scope (leave it out for the caller's scopes)"})
	}
	if r.ExpiresAt != nil {
		t, err := time.Parse(time.RFC3339Nano, *r.ExpiresAt)
		if err != nil {
			fields = append(fields, errs.FieldError{Field: "expiresAt", Message: "must be an RFC 3339 time like 2030-01-02T15:04:05Z"})
		}
		p.ExpiresAt = &t
	}
	if r.RateLimit != nil {
		per, err := time.ParseDuration(r.RateLimit.Per)
		if err != nil {
			fields = append(fields, errs.FieldError{Field: "rateLimit.per", Message: "must be a duration like 1s or 1m"})
		}
		p.RateLimit = &auth.RateLimit{Requests: r.RateLimit.Requests, Per: per}
	}
	if len(fields) > 0 {
		return auth.KeyParams{}, errs.Fields(fields...)
	}
	return p, nil
}

// createKey is POST /v1/keys. The answer is the only time the secret is
// ever shown, so it must not be cached anywhere on the way.
func (s *Server) createKey(c echo.Context) error {
	var req createKeyRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	p, err := req.params()
	if err != nil {
		return err
	}
	k, secret, err := s.Keys.Create(c.Request().Context(), principal(c), p)
	if err != nil {
		return err
	}
	out := s.keyOut(k)
	out.Secret = secret
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusCreated, out)
}

// listKeys is GET /v1/keys: every key the caller may see, newest first.
func (s *Server) listKeys(c echo.Context) error {
	list, err := s.Keys.List(c.Request().Context(), principal(c))
	if err != nil {
		return err
	}
	out := make([]keyJSON, 0, len(list))
	for _, k := range list {
		out = append(out, s.keyOut(k))
	}
	return c.JSON(http.StatusOK, map[string]any{"data": out})
}

// getKey is GET /v1/keys/{id}, with its usage.
func (s *Server) getKey(c echo.Context) error {
	ctx, p := c.Request().Context(), principal(c)
	k, err := s.Keys.Get(ctx, p, c.Param("id"))
	if err != nil {
		return err
	}
	u, err := s.Keys.UsageReport(ctx, p, k.ID, usageDays)
	if err != nil {
		return err
	}
	out := s.keyOut(k)
	out.Usage = &usageJSON{Requests: u.Requests, JobsSubmitted: u.Jobs, Days: make([]dayJSON, 0, len(u.Days))}
	for _, d := range u.Days {
		out.Usage.Days = append(out.Usage.Days, dayJSON{Day: d.Day.Format(time.DateOnly), Requests: d.Requests, JobsSubmitted: d.Jobs})
	}
	return c.JSON(http.StatusOK, out)
}

// revokeKey is DELETE /v1/keys/{id}: the key stops working on every
// replica within a second.
func (s *Server) revokeKey(c echo.Context) error {
	if err := s.Keys.Revoke(c.Request().Context(), principal(c), c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

type rollKeyRequest struct {
	ExpireOldIn string `json:"expireOldIn" validate:"required"`
}

// rollKey is POST /v1/keys/{id}/roll: a replacement with the same settings;
// the old key keeps working for expireOldIn ("0" ends it now).
func (s *Server) rollKey(c echo.Context) error {
	var req rollKeyRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	grace, err := time.ParseDuration(req.ExpireOldIn)
	if err != nil {
		return errs.Fields(errs.FieldError{Field: "expireOldIn", Message: "must be a duration like 24h, 30m or 0"})
	}
	k, secret, err := s.Keys.Roll(c.Request().Context(), principal(c), c.Param("id"), grace)
	if err != nil {
		return err
	}
	out := s.keyOut(k)
	out.Secret = secret
	out.Replaces = &replacedJSON{ID: c.Param("id"), RevokedUTC: timefmt.UTC(k.CreatedAt.Add(grace))}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusCreated, out)
}
