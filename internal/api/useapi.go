package api

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/provider"
)

// useapi.net's LTX Studio account endpoint, served as a compatibility
// surface so a client written against https://api.useapi.net/v1/ltxstudio
// only changes its base URL. The routes share /v1/accounts' storage, rules
// and scopes (the same store calls and the same binder); only the response
// and error shapes are useapi's.

// useapiPrefix is where the compatibility surface lives; every error under
// it, routing errors included, is written in useapi's shape.
const useapiPrefix = "/v1/ltxstudio"

// isUseapiPath reports whether path belongs to the compatibility surface.
func isUseapiPath(path string) bool {
	return path == useapiPrefix || strings.HasPrefix(path, useapiPrefix+"/")
}

// useapiAccountJSON is useapi's LTX Studio account model: the fields its
// documentation lists, nothing more; unknown times and a healthy account's
// error are left out, as useapi leaves them out.
type useapiAccountJSON struct {
	Email                 string            `json:"email"`
	Cookie                map[string]string `json:"cookie"`
	MaxJobs               int               `json:"maxJobs"`
	Updated               int64             `json:"updated"`
	UpdatedUTC            string            `json:"updatedUTC"`
	TokenExpire           *int64            `json:"tokenExpire,omitempty"`
	TokenExpireUTC        *string           `json:"tokenExpireUTC,omitempty"`
	RefreshTokenExpire    *int64            `json:"refreshTokenExpire,omitempty"`
	RefreshTokenExpireUTC *string           `json:"refreshTokenExpireUTC,omitempty"`
	Error                 *string           `json:"error,omitempty"`
}

// useapiAccount narrows poolgate's account model to useapi's, so which
// reason counts as an error (and not a warning) is decided once, in
// accountOut.
func useapiAccount(a accountJSON) useapiAccountJSON {
	return useapiAccountJSON{
		Email: a.Email, Cookie: a.Cookie, MaxJobs: a.MaxJobs,
		Updated: a.Updated, UpdatedUTC: a.UpdatedUTC,
		TokenExpire: a.TokenExpire, TokenExpireUTC: a.TokenExpireUTC,
		RefreshTokenExpire: a.RefreshTokenExpire, RefreshTokenExpireUTC: a.RefreshTokenExpireUTC,
		Error: a.Error,
	}
}

// useapiErrorBody is useapi's error shape: {"error": "<message>", "code": <status>}.
type useapiErrorBody struct {
	Error string `json:"error"`
	Code  int    `json:"code"`
}

// useapi's own texts for the answers its documentation spells out.
const (
	useapiUnauthorized  = "Unauthorized"
	useapiNoAccounts    = "Configuration not found. To create configuration use POST /accounts."
	useapiNoSuchAccount = "Account configuration not found for the specified email address."
)

// useapiError renders e, already mapped to status, in useapi's shape. The
// texts useapi documents are kept word for word; other messages are
// poolgate's, with a validation failure's fields spelled out since the
// shape has no room for details.
func useapiError(e *errs.Error, status int) useapiErrorBody {
	msg := e.Message
	switch {
	case e.Kind == errs.KindUnauthenticated:
		msg = useapiUnauthorized
	case e.Code == "account_not_found":
		msg = useapiNoSuchAccount
	default:
		if fields, ok := e.Details.([]errs.FieldError); ok && len(fields) > 0 {
			parts := make([]string, len(fields))
			for i, f := range fields {
				parts[i] = f.Field + " " + f.Message
			}
			msg += ": " + strings.Join(parts, "; ")
		}
	}
	return useapiErrorBody{Error: msg, Code: status}
}

// registerUseapiAccount is POST /v1/ltxstudio/accounts: /v1/accounts'
// registration (JSON, multipart or urlencoded) answered in useapi's model.
func (s *Server) registerUseapiAccount(c echo.Context) error {
	a, err := s.register(c, true)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, useapiAccount(accountOut(a)))
}

// listUseapiAccounts is GET /v1/ltxstudio/accounts: every LTX Studio
// account keyed by email (API-key accounts of other providers are not
// useapi's to show). Like useapi, a tenant with none gets 404, not an
// empty object.
func (s *Server) listUseapiAccounts(c echo.Context) error {
	list, err := s.Accounts.List(c.Request().Context(), principal(c).Scope)
	if err != nil {
		return err
	}
	out := make(map[string]useapiAccountJSON, len(list))
	for _, a := range list {
		if a.Provider == provider.NameLTXStudio {
			out[a.Email] = useapiAccount(accountOut(a))
		}
	}
	if len(out) == 0 {
		return errs.NotFound("no_accounts", useapiNoAccounts)
	}
	return c.JSON(http.StatusOK, out)
}

// getUseapiAccount is GET /v1/ltxstudio/accounts/{email}.
func (s *Server) getUseapiAccount(c echo.Context) error {
	a, err := s.useapiAccount(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, useapiAccount(accountOut(a)))
}

// deleteUseapiAccount is DELETE /v1/ltxstudio/accounts/{email}.
func (s *Server) deleteUseapiAccount(c echo.Context) error {
	if _, err := s.useapiAccount(c); err != nil {
		return err
	}
	return s.deleteAccount(c)
}

// useapiAccount reads the path's account, answering for one of another
// provider exactly as for a missing one.
func (s *Server) useapiAccount(c echo.Context) (accounts.Account, error) {
	a, err := s.Accounts.Get(c.Request().Context(), principal(c).Scope, c.Param("email"))
	if err == nil && a.Provider != provider.NameLTXStudio {
		return accounts.Account{}, accounts.NotFound(c.Param("email"))
	}
	return a, err
}
