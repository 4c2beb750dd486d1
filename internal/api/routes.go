package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/poolgate/poolgate/internal/auth"
)

// public marks a route that needs no API key.
const public = ""

type route struct {
	method, path string
	scope        string // the scope a key needs, or public
	handler      echo.HandlerFunc
}

// routes is the whole API surface. Every /v1 route names the scope it
// requires; openapi.yaml documents exactly these routes (a test checks).
func (s *Server) routes() []route {
	return []route{
		{http.MethodGet, "/healthz", public, s.healthz},
		{http.MethodGet, "/readyz", public, s.readyz},
		{http.MethodGet, "/openapi.yaml", public, s.openAPI},

		{http.MethodPost, "/v1/accounts", auth.ScopeAccountsWrite, s.registerAccount},
		{http.MethodGet, "/v1/accounts", auth.ScopeAccountsRead, s.listAccounts},
		{http.MethodGet, "/v1/accounts/:email", auth.ScopeAccountsRead, s.getAccount},
		{http.MethodPatch, "/v1/accounts/:email", auth.ScopeAccountsWrite, s.updateAccount},
		{http.MethodDelete, "/v1/accounts/:email", auth.ScopeAccountsWrite, s.deleteAccount},
	}
}
