package api

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/tenant"
	"github.com/poolgate/poolgate/internal/timefmt"
	"github.com/poolgate/poolgate/internal/webhooks"
)

// webhookSecretJSON is the tenant's signing secret as its admins see it.
type webhookSecretJSON struct {
	Secret             string  `json:"secret"`
	PreviousExpiresUTC *string `json:"previousExpiresUTC"`
}

// errLiveOnly refuses test keys on tenant-wide secrets: the signing secret
// signs live deliveries too, so a test key that read it could forge them.
var errLiveOnly = errs.New(errs.KindForbidden, "mode_not_allowed", "only a live-mode key may read or rotate the webhook signing secret")

// secretsFor is the caller's tenant, once it may see the signing secret.
func (s *Server) secretsFor(c echo.Context) (int64, error) {
	p := principal(c)
	switch {
	case s.Secrets == nil:
		return 0, errs.NotFound("route_not_found", "webhook signing is not configured on this server")
	case p.Mode != tenant.Live:
		return 0, errLiveOnly
	}
	return p.TenantID, nil
}

// getWebhookSecret is GET /v1/webhooks/secret.
func (s *Server) getWebhookSecret(c echo.Context) error {
	tenantID, err := s.secretsFor(c)
	if err != nil {
		return err
	}
	info, err := s.Secrets.Info(c.Request().Context(), tenantID)
	if err != nil {
		return err
	}
	return secretOut(c, http.StatusOK, info)
}

type rotateSecretRequest struct {
	ExpireOldIn string `json:"expireOldIn" validate:"required"`
}

// rotateWebhookSecret is POST /v1/webhooks/secret/rotate: a new secret;
// deliveries carry signatures under both until expireOldIn has passed.
func (s *Server) rotateWebhookSecret(c echo.Context) error {
	tenantID, err := s.secretsFor(c)
	if err != nil {
		return err
	}
	var req rotateSecretRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	grace, err := time.ParseDuration(req.ExpireOldIn)
	if err != nil || grace < 0 || grace > webhooks.MaxRotationGrace {
		return errs.Fields(errs.FieldError{Field: "expireOldIn", Message: "must be a duration from 0 to 168h, like 24h"})
	}
	info, err := s.Secrets.Rotate(c.Request().Context(), tenantID, grace)
	if err != nil {
		return err
	}
	return secretOut(c, http.StatusOK, info)
}

func secretOut(c echo.Context, status int, info webhooks.SecretInfo) error {
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(status, webhookSecretJSON{Secret: info.Secret, PreviousExpiresUTC: timefmt.UTCPtr(info.PreviousExpiresAt)})
}
