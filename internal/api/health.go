package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/poolgate/poolgate/internal/errs"
)

// healthz says the process is up; it touches nothing else.
func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyz says whether this replica can serve: the database must answer.
func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := s.DB.Ping(ctx); err != nil {
		e := errs.Unavailable(fmt.Errorf("readyz: database ping: %w", err))
		e.Code, e.Message = "database_unreachable", "the database does not answer"
		return e
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}
