package api

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/timefmt"
)

// accountJSON is useapi.net's LTX Studio account model plus poolgate's
// health fields. Times come twice: ms since the epoch and ISO-8601 UTC.
type accountJSON struct {
	Email                 string            `json:"email"` // an API-key account's name
	Provider              string            `json:"provider"`
	Cookie                map[string]string `json:"cookie"`
	APIKey                string            `json:"apiKey,omitempty"` // "…secured…" for API-key accounts
	MaxJobs               int               `json:"maxJobs"`
	Enabled               bool              `json:"enabled"`
	Status                accounts.Status   `json:"status"`
	Error                 *string           `json:"error"`   // why it is out of rotation; null while it takes jobs
	Warning               *string           `json:"warning"` // what needs doing while it still takes jobs
	Running               int               `json:"running"`
	Updated               int64             `json:"updated"`
	UpdatedUTC            string            `json:"updatedUTC"`
	TokenExpire           *int64            `json:"tokenExpire"`
	TokenExpireUTC        *string           `json:"tokenExpireUTC"`
	RefreshTokenExpire    *int64            `json:"refreshTokenExpire"`
	RefreshTokenExpireUTC *string           `json:"refreshTokenExpireUTC"`
	LastRefreshUTC        *string           `json:"lastRefreshUTC"`
	NextRefreshUTC        *string           `json:"nextRefreshUTC"`
	accountHealthJSON
}

func accountOut(a accounts.Account) accountJSON {
	out := accountJSON{
		Email: a.Email, Provider: a.Provider, Cookie: a.Cookie, APIKey: a.APIKey, MaxJobs: a.MaxJobs, Enabled: a.Enabled,
		Status: a.Status, Running: a.Running,
	}
	// useapi clients read a non-null error as a broken account, so an
	// account that still takes jobs carries its reason as a warning.
	switch {
	case a.Reason == "":
	case a.Status == accounts.StatusExpiring:
		out.Warning = &a.Reason
	default:
		out.Error = &a.Reason
	}
	out.Updated, out.UpdatedUTC = a.UpdatedAt.UnixMilli(), timefmt.UTC(a.UpdatedAt)
	out.TokenExpire, out.TokenExpireUTC = optionalTime(a.TokenExpiresAt)
	out.RefreshTokenExpire, out.RefreshTokenExpireUTC = optionalTime(a.RefreshTokenExpiresAt)
	out.LastRefreshUTC = timefmt.UTCPtr(a.LastRefreshAt)
	out.NextRefreshUTC = timefmt.UTCPtr(a.NextRefreshAt)
	out.accountHealthJSON = accountHealthOut(a)
	return out
}

func optionalTime(t *time.Time) (*int64, *string) {
	if t == nil {
		return nil, nil
	}
	ms, s := t.UnixMilli(), timefmt.UTC(*t)
	return &ms, &s
}

type registerAccountRequest struct {
	// Provider is "ltxstudio" (the default: a cookie account) or "ltx-api"
	// (an LTX-2 API key, named by Name).
	Provider string `json:"provider" validate:"omitempty,oneof=ltxstudio ltx-api"`
	Cookie   string `json:"cookie" validate:"max=16384"`
	APIKey   string `json:"apiKey" validate:"max=512"`
	Name     string `json:"name" validate:"max=64"`
	MaxJobs  *int   `json:"maxJobs" validate:"omitempty,min=1,max=100"`
	Email    string `json:"email" validate:"max=254"` // format checked by accounts, after trimming
}

// registerAccount is POST /v1/accounts: add or update an account from its
// cookie string, as JSON or as a form (useapi accepts both), or from an
// LTX-2 API key.
func (s *Server) registerAccount(c echo.Context) error {
	a, err := s.register(c, false)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, accountOut(a))
}

// register binds a registration (JSON or form) and stores it: the one path
// POST /v1/accounts and useapi's POST /v1/ltxstudio/accounts share.
//
// cookiesOnly keeps it to LTX Studio cookie accounts (useapi's route).
func (s *Server) register(c echo.Context, cookiesOnly bool) (accounts.Account, error) {
	var req registerAccountRequest
	if err := s.bindRegistration(c, &req); err != nil {
		return accounts.Account{}, err
	}
	switch {
	case cookiesOnly && req.Provider != "" && req.Provider != provider.NameLTXStudio:
		return accounts.Account{}, errs.Fields(errs.FieldError{Field: "provider",
			Message: "this route registers LTX Studio cookie accounts only; register LTX-2 API keys with POST /v1/accounts"})
	case req.Provider == provider.NameLTXAPI:
		return s.registerAPIKey(c, req)
	case req.Cookie == "" || req.APIKey != "" || req.Name != "":
		return accounts.Account{}, cookieFieldsError(req)
	}
	return s.Accounts.Register(c.Request().Context(), principal(c).Scope, accounts.Registration{
		Cookie: req.Cookie, MaxJobs: req.MaxJobs, Email: req.Email,
	})
}

func (s *Server) bindRegistration(c echo.Context, req *registerAccountRequest) error {
	switch mediaType(c) {
	case echo.MIMEMultipartForm, echo.MIMEApplicationForm:
	default:
		return s.decodeJSON(c, req)
	}
	form, err := formValues(c)
	if err != nil {
		return err
	}
	for name := range form {
		if name != "cookie" && name != "maxJobs" && name != "email" && name != "provider" && name != "apiKey" && name != "name" {
			return errs.Fields(errs.FieldError{Field: name, Message: "is not a known field"})
		}
	}
	req.Cookie, req.Email = form.Get("cookie"), form.Get("email")
	req.Provider, req.APIKey, req.Name = form.Get("provider"), form.Get("apiKey"), form.Get("name")
	if v := strings.TrimSpace(form.Get("maxJobs")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return errs.Fields(errs.FieldError{Field: "maxJobs", Message: "must be an integer"})
		}
		req.MaxJobs = &n
	}
	return s.check(req)
}

// formValues parses a multipart or urlencoded body; files are refused.
func formValues(c echo.Context) (url.Values, error) {
	r := c.Request()
	var err error
	if mediaType(c) == echo.MIMEMultipartForm {
		err = r.ParseMultipartForm(MaxBodyBytes)
	} else {
		err = r.ParseForm()
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, errTooLarge
	case err != nil:
		return nil, errs.Invalid("malformed_form", "request body is not a valid form")
	}
	if r.MultipartForm != nil && len(r.MultipartForm.File) > 0 {
		return nil, errs.Invalid("malformed_form", "file uploads are not accepted; send cookie as a text field")
	}
	return r.PostForm, nil
}

// listAccounts is GET /v1/accounts: every account keyed by email, as useapi
// returns them.
func (s *Server) listAccounts(c echo.Context) error {
	list, err := s.Accounts.List(c.Request().Context(), principal(c).Scope)
	if err != nil {
		return err
	}
	out := make(map[string]accountJSON, len(list))
	for _, a := range list {
		out[a.Email] = accountOut(a)
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getAccount(c echo.Context) error {
	a, err := s.Accounts.Get(c.Request().Context(), principal(c).Scope, c.Param("email"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, accountOut(a))
}

type updateAccountRequest struct {
	MaxJobs *int  `json:"maxJobs" validate:"omitempty,min=1,max=100"`
	Enabled *bool `json:"enabled"`
	Probe   *bool `json:"probe"`
}

func (s *Server) updateAccount(c echo.Context) error {
	var req updateAccountRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	a, err := s.Accounts.Update(c.Request().Context(), principal(c).Scope, c.Param("email"),
		accounts.Patch{MaxJobs: req.MaxJobs, Enabled: req.Enabled, Probe: req.Probe})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, accountOut(a))
}

func (s *Server) deleteAccount(c echo.Context) error {
	if err := s.Accounts.Delete(c.Request().Context(), principal(c).Scope, c.Param("email")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
