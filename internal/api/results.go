package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/results"
	"github.com/poolgate/poolgate/internal/scheduler"
)

// ResultOpener reads stored job results (a results.Store).
type ResultOpener interface {
	Open(ctx context.Context, key string) (*results.Object, error)
}

// resultWriteTimeout replaces the server's write timeout for a result
// download: a large video to a slow client takes longer than any JSON
// answer, and the request was authenticated before the clock started.
const resultWriteTimeout = time.Hour

// getJobResult is GET /v1/jobs/{id}/result: the stored file of a job that
// succeeded, with Range support. The job is looked up in the caller's
// tenant first, so another tenant's id answers 404 like an unknown one.
func (s *Server) getJobResult(c echo.Context) error {
	ctx := c.Request().Context()
	j, err := s.Jobs.Get(ctx, principal(c).Scope, c.Param("id"))
	if err != nil {
		return err
	}
	if j.State != scheduler.StateSucceeded {
		return errs.Conflict("job_not_succeeded", "job %s is %s; it has a result once it has succeeded", j.ID, j.State)
	}
	var r struct {
		URL string `json:"url"`
	}
	if json.Unmarshal(j.Result, &r) != nil || r.URL != results.URLPath(j.ID) || s.Results == nil {
		return errs.NotFound("result_not_stored", "job %s's result is not stored by poolgate; its result.url says where it is", j.ID)
	}
	obj, err := s.Results.Open(ctx, j.ID)
	if errors.Is(err, results.ErrNotFound) {
		// A retained job never points at a deleted object, so this is a
		// replica reading another store (POOLGATE_RESULTS_DIR not shared).
		s.Logger.Warn("stored result missing", "request_id", requestIDOf(c), "job", j.ID)
		return errs.NotFound("result_not_found", "job %s's result is missing from the result store", j.ID)
	}
	if err != nil {
		return &errs.Error{Kind: errs.KindUnavailable, Code: "result_store_unavailable",
			Message: "the result store did not answer; retry shortly", Err: err, RetryAfter: time.Second}
	}
	defer obj.Close()
	if strings.Contains(c.Request().Header.Get("Range"), ",") {
		// Several ranges would be a multipart/byteranges body; RFC 9110
		// lets a server ignore Range, and the whole file is the answer.
		c.Request().Header.Del("Range")
	}
	if err := checkRange(c.Request().Header.Get("Range"), obj.Size); err != nil {
		c.Response().Header().Set("Content-Range", "bytes */"+strconv.FormatInt(obj.Size, 10))
		return err
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, obj.ContentType)
	h.Set("ETag", obj.ETag)
	h.Set("Cache-Control", "private, max-age=3600")
	http.NewResponseController(c.Response()).SetWriteDeadline(time.Now().Add(resultWriteTimeout))
	// ServeContent answers Range (206), If-Range, If-None-Match (304) and
	// sets Content-Length and Last-Modified; it copies in small chunks.
	http.ServeContent(c.Response(), c.Request(), "", obj.ModTime, obj)
	return nil
}

// checkRange refuses a single byte range that lies wholly outside a file of
// size bytes, with the envelope (net/http would answer in plain text).
// Anything else, satisfiable or malformed (which is ignored, as RFC 9110
// allows), is left to http.ServeContent.
func checkRange(header string, size int64) error {
	spec, ok := strings.CutPrefix(header, "bytes=")
	if !ok {
		return nil
	}
	first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return nil
	}
	unsatisfiable := errs.New(errs.KindRangeNotSatisfiable, "range_not_satisfiable",
		"the range %s lies outside the result's %d bytes", header, size)
	if first == "" { // a suffix: the last n bytes
		if n, err := strconv.ParseInt(last, 10, 64); err == nil && n == 0 {
			return unsatisfiable
		}
		return nil
	}
	if start, err := strconv.ParseInt(first, 10, 64); err == nil && start >= size {
		return unsatisfiable
	}
	return nil
}
