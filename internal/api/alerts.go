package api

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/poolgate/poolgate/internal/alerts"
	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/ids"
)

type alertPage struct {
	Data       []alerts.View `json:"data"`
	NextCursor *string       `json:"nextCursor"`
}

// listAlerts is GET /v1/alerts?state=&limit=&cursor=, newest first.
func (s *Server) listAlerts(c echo.Context) error {
	f := alerts.Filter{State: c.QueryParam("state"), Cursor: c.QueryParam("cursor"), Limit: 50}
	if f.Cursor != "" && !ids.Valid("alr", f.Cursor) {
		return errInvalidCursor
	}
	if l := c.QueryParam("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 500 {
			return errs.Invalid("invalid_limit", "limit must be an integer from 1 to 500")
		}
		f.Limit = n
	}
	list, next, err := s.Alerts.List(c.Request().Context(), principal(c).Scope, f)
	if err != nil {
		return err
	}
	page := alertPage{Data: make([]alerts.View, 0, len(list))}
	for _, a := range list {
		page.Data = append(page.Data, a.View())
	}
	if next != "" {
		page.NextCursor = &next
	}
	return c.JSON(http.StatusOK, page)
}

// ackAlert is POST /v1/alerts/{id}/ack.
func (s *Server) ackAlert(c echo.Context) error {
	a, err := s.Alerts.Ack(c.Request().Context(), principal(c).Scope, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, a.View())
}

type alertConfigRequest struct {
	URL    string `json:"url" validate:"max=2048"`
	Format string `json:"format"`
}

// putAlertConfig is PUT /v1/alerts/config: where this tenant's alerts go
// (an empty url removes it).
func (s *Server) putAlertConfig(c echo.Context) error {
	var req alertConfigRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	d, err := s.Alerts.SetDestination(c.Request().Context(), principal(c).Scope, alerts.Destination{URL: req.URL, Format: req.Format})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

// getAlertConfig is GET /v1/alerts/config.
func (s *Server) getAlertConfig(c echo.Context) error {
	d, err := s.Alerts.Destination(c.Request().Context(), principal(c).Scope)
	if err != nil {
		return err
	}
	if d == nil {
		d = &alerts.Destination{}
	}
	return c.JSON(http.StatusOK, d)
}
