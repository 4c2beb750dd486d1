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
	rs := []route{
		{http.MethodGet, "/healthz", public, s.healthz},
		{http.MethodGet, "/readyz", public, s.readyz},
		{http.MethodGet, "/openapi.yaml", public, s.openAPI},

		{http.MethodPost, "/v1/accounts", auth.ScopeAccountsWrite, s.registerAccount},
		{http.MethodGet, "/v1/accounts", auth.ScopeAccountsRead, s.listAccounts},
		{http.MethodGet, "/v1/accounts/:email", auth.ScopeAccountsRead, s.getAccount},
		{http.MethodPatch, "/v1/accounts/:email", auth.ScopeAccountsWrite, s.updateAccount},
		{http.MethodDelete, "/v1/accounts/:email", auth.ScopeAccountsWrite, s.deleteAccount},
		{http.MethodGet, "/v1/accounts/:email/stats", auth.ScopeAccountsRead, s.accountStats},
		{http.MethodGet, "/v1/usage", auth.ScopeAccountsRead, s.getUsage},

		// useapi.net's LTX Studio account endpoint (useapi.go): same store, rules and scopes.
		{http.MethodPost, "/v1/ltxstudio/accounts", auth.ScopeAccountsWrite, s.registerUseapiAccount},
		{http.MethodGet, "/v1/ltxstudio/accounts", auth.ScopeAccountsRead, s.listUseapiAccounts},
		{http.MethodGet, "/v1/ltxstudio/accounts/:email", auth.ScopeAccountsRead, s.getUseapiAccount},
		{http.MethodDelete, "/v1/ltxstudio/accounts/:email", auth.ScopeAccountsWrite, s.deleteUseapiAccount},

		// keys
		{http.MethodPost, "/v1/keys", auth.ScopeKeysAdmin, s.createKey},
		{http.MethodGet, "/v1/keys", auth.ScopeKeysAdmin, s.listKeys},
		{http.MethodGet, "/v1/keys/:id", auth.ScopeKeysAdmin, s.getKey},
		{http.MethodDelete, "/v1/keys/:id", auth.ScopeKeysAdmin, s.revokeKey},
		{http.MethodPost, "/v1/keys/:id/roll", auth.ScopeKeysAdmin, s.rollKey},

		{http.MethodPost, "/v1/jobs", auth.ScopeJobsWrite, s.createJob},
		{http.MethodPost, "/v1/jobs/batch", auth.ScopeJobsWrite, s.createJobs},
		{http.MethodPost, "/v1/videos/create", auth.ScopeJobsWrite, s.createVideo},
		{http.MethodPost, "/v1/images/create", auth.ScopeJobsWrite, s.createImage},
		{http.MethodGet, "/v1/jobs", auth.ScopeJobsRead, s.listJobs},
		{http.MethodGet, "/v1/jobs/:id", auth.ScopeJobsRead, s.getJob},
		{http.MethodGet, "/v1/jobs/:id/result", auth.ScopeJobsRead, s.getJobResult},
		{http.MethodDelete, "/v1/jobs/:id", auth.ScopeJobsWrite, s.cancelJob},
		{http.MethodGet, "/v1/scheduler", auth.ScopeJobsRead, s.schedulerRunning},
		{http.MethodGet, "/v1/scheduler/available", auth.ScopeJobsRead, s.schedulerAvailable},
		{http.MethodGet, "/v1/job-defaults", auth.ScopeJobsRead, s.getJobDefaults},
		{http.MethodPut, "/v1/job-defaults", auth.ScopeKeysAdmin, s.putJobDefaults},

		{http.MethodGet, "/v1/alerts", auth.ScopeAlertsRead, s.listAlerts},
		{http.MethodPost, "/v1/alerts/:id/ack", auth.ScopeAlertsWrite, s.ackAlert},
		{http.MethodGet, "/v1/alerts/config", auth.ScopeAlertsRead, s.getAlertConfig},
		{http.MethodPut, "/v1/alerts/config", auth.ScopeAlertsWrite, s.putAlertConfig},

		{http.MethodGet, "/v1/webhooks/secret", auth.ScopeKeysAdmin, s.getWebhookSecret},
		{http.MethodPost, "/v1/webhooks/secret/rotate", auth.ScopeKeysAdmin, s.rotateWebhookSecret},
	}
	// The operator console (internal/console) authenticates with its own
	// sessions and CSRF tokens and renders its own errors; it is not part of
	// openapi.yaml.
	if s.Console != nil {
		h := echo.WrapHandler(s.Console)
		for _, path := range []string{"/console", "/console/*"} {
			rs = append(rs, route{http.MethodGet, path, public, h}, route{http.MethodPost, path, public, h})
		}
	}
	return rs
}
