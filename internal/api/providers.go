package api

import (
	"encoding/json"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/ltxapi"
	"github.com/poolgate/poolgate/internal/scheduler"
)

// fitProvider decides which providers may run a job: the one it asked
// for, whose contract its params must then fit (LTX Studio takes its
// params as they are; the LTX-2 API checks them, see ltxapi.ParseParams),
// or, when it asked for none, any provider ("") if the params fit the
// LTX-2 API too and LTX Studio alone otherwise.
func fitProvider(typ string, params json.RawMessage, asked string, bad *[]errs.FieldError) string {
	_, problems := ltxapi.ParseParams(typ, params)
	switch asked {
	case provider.NameLTXAPI:
		for _, p := range problems {
			field := "params"
			switch {
			case p.Field != "":
				field = "params." + p.Field
			case typ != "video":
				field = "type"
			}
			*bad = append(*bad, errs.FieldError{Field: field, Message: p.Message})
		}
		return asked
	case "":
		if len(problems) == 0 {
			return ""
		}
		return provider.NameLTXStudio
	default:
		return asked
	}
}

// jobDefaultsJSON is a tenant's defaults for the jobs it creates.
type jobDefaultsJSON struct {
	ResubmitUnknown *bool `json:"resubmitUnknown" validate:"required"`
}

// getJobDefaults is GET /v1/job-defaults.
func (s *Server) getJobDefaults(c echo.Context) error {
	d, err := s.Jobs.JobDefaults(c.Request().Context(), principal(c).TenantID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, jobDefaultsJSON{ResubmitUnknown: &d.ResubmitUnknown})
}

// putJobDefaults is PUT /v1/job-defaults: the defaults of the tenant's
// jobs created from now on (live and test alike).
func (s *Server) putJobDefaults(c echo.Context) error {
	var req jobDefaultsJSON
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	d, err := s.Jobs.SetJobDefaults(c.Request().Context(), principal(c).TenantID, scheduler.Defaults{ResubmitUnknown: *req.ResubmitUnknown})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, jobDefaultsJSON{ResubmitUnknown: &d.ResubmitUnknown})
}
