package api

import (
	"github.com/labstack/echo/v4"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/errs"
)

// registerAPIKey is a registration with provider "ltx-api": add or update
// an account by LTX-2 API key. The key is never echoed.
func (s *Server) registerAPIKey(c echo.Context, req registerAccountRequest) (accounts.Account, error) {
	var bad []errs.FieldError
	if req.APIKey == "" {
		bad = append(bad, errs.FieldError{Field: "apiKey", Message: "is required with provider ltx-api"})
	}
	if req.Cookie != "" {
		bad = append(bad, errs.FieldError{Field: "cookie", Message: "is for provider ltxstudio; an ltx-api account takes apiKey"})
	}
	if req.Email != "" {
		bad = append(bad, errs.FieldError{Field: "email", Message: "is for provider ltxstudio; an ltx-api account is named by name"})
	}
	if len(bad) > 0 {
		return accounts.Account{}, errs.Fields(bad...)
	}
	return s.Accounts.RegisterAPIKey(c.Request().Context(), principal(c).Scope, accounts.KeyRegistration{
		APIKey: req.APIKey, Name: req.Name, MaxJobs: req.MaxJobs,
	})
}

// cookieFieldsError says what a cookie registration lacks or has too
// much of.
func cookieFieldsError(req registerAccountRequest) error {
	var bad []errs.FieldError
	if req.Cookie == "" {
		bad = append(bad, errs.FieldError{Field: "cookie", Message: "is required"})
	}
	if req.APIKey != "" || req.Name != "" {
		bad = append(bad, errs.FieldError{Field: "provider", Message: `must be "ltx-api" to register an apiKey`})
	}
	return errs.Fields(bad...)
}
