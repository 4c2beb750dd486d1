package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/ids"
	"github.com/poolgate/poolgate/internal/scheduler"
	"github.com/poolgate/poolgate/internal/webhooks"
)

// jobOptions are the fields every job creation takes, typed or not.
type jobOptions struct {
	Email        string `json:"email" validate:"max=254"`
	ReplyURL     string `json:"replyUrl" validate:"max=2048"`
	ReplyRef     string `json:"replyRef" validate:"max=1024"`
	Priority     int    `json:"priority" validate:"min=-100,max=100"`
	MaxAttempts  *int   `json:"maxAttempts" validate:"omitempty,min=1,max=10"` // nil: the default; 0 is refused, not defaulted
	QueueTimeout string `json:"queueTimeout"`
	// Provider asks for accounts of one upstream; "" lets any upstream
	// whose contract fits the params run the job.
	Provider string `json:"provider" validate:"omitempty,oneof=ltxstudio ltx-api"`
	// ResubmitUnknown allows running an attempt again when its outcome
	// could not be known (see the README's "Unknown outcomes"); left out,
	// the tenant's default (GET /v1/job-defaults) applies.
	ResubmitUnknown *bool `json:"resubmitUnknown"`
}

type createJobRequest struct {
	Type   string          `json:"type" validate:"required,oneof=video image"`
	Params json.RawMessage `json:"params"`
	jobOptions
}

// MaxParamsBytes bounds a job's params: they are stored, listed and sent
// upstream with every attempt, and no LTX request comes near it.
const MaxParamsBytes = 64 << 10

// maxPageBytes bounds the params and results one list page carries, so
// that a page of 500 large jobs cannot hold hundreds of MB per request; a
// page cut short still has a nextCursor.
const maxPageBytes = 1 << 20

// maxQueueTimeout bounds queueTimeout: a job older than a day is not
// something a producer is still waiting for.
const maxQueueTimeout = 24 * time.Hour

// newJob checks the shared options and builds the scheduler's request.
func (s *Server) newJob(typ string, params json.RawMessage, o jobOptions) (scheduler.NewJob, error) {
	nj := scheduler.NewJob{Type: typ, Params: params, Email: strings.ToLower(strings.TrimSpace(o.Email)),
		ReplyURL: o.ReplyURL, ReplyRef: o.ReplyRef, Priority: o.Priority}
	if o.MaxAttempts != nil {
		nj.MaxAttempts = *o.MaxAttempts
	}
	var bad []errs.FieldError
	// Postgres's jsonb cannot store NUL characters; refuse them here rather
	// than fail on insert with a 503.
	if len(params) > MaxParamsBytes {
		bad = append(bad, errs.FieldError{Field: "params", Message: "must be at most " + strconv.Itoa(MaxParamsBytes) + " bytes of JSON"})
	}
	if bytes.Contains(params, []byte(`\u0000`)) {
		bad = append(bad, errs.FieldError{Field: "params", Message: "must not contain NUL characters (\\u0000)"})
	}
	if o.QueueTimeout != "" {
		d, err := time.ParseDuration(o.QueueTimeout)
		if err != nil || d < time.Second || d > maxQueueTimeout {
			bad = append(bad, errs.FieldError{Field: "queueTimeout", Message: "must be a duration from 1s to 24h, like 10m"})
		}
		nj.QueueTimeout = d
	}
	if o.ReplyURL != "" {
		if err := webhooks.CheckURL(o.ReplyURL, s.AllowPrivateWebhooks); err != nil {
			bad = append(bad, errs.FieldError{Field: "replyUrl", Message: errs.As(err).Message})
		}
	}
	nj.ResubmitUnknown = o.ResubmitUnknown
	nj.Provider = fitProvider(typ, params, o.Provider, &bad)
	if len(bad) > 0 {
		return nj, errs.Fields(bad...)
	}
	return nj, nil
}

// createJob is POST /v1/jobs: any job type with free-form params.
func (s *Server) createJob(c echo.Context) error {
	var req createJobRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	if len(req.Params) > 0 && (req.Params[0] != '{') {
		return errs.Fields(errs.FieldError{Field: "params", Message: "must be an object"})
	}
	nj, err := s.newJob(req.Type, req.Params, req.jobOptions)
	if err != nil {
		return err
	}
	return s.submitJob(c, nj)
}

type videoRequest struct {
	Prompt      string `json:"prompt" validate:"required"`
	Model       string `json:"model"`
	Duration    *int   `json:"duration"` // nil: the catalog's default; 0 is refused
	Resolution  string `json:"resolution"`
	AspectRatio string `json:"aspectRatio"`
	ImageURL    string `json:"imageUrl" validate:"omitempty,http_url,max=2048"`
	jobOptions
}

// createVideo is POST /v1/videos/create: a video job with checked fields.
func (s *Server) createVideo(c echo.Context) error {
	var req videoRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	var bad []errs.FieldError
	checkPrompt(req.Prompt, &bad)
	oneOf("model", &req.Model, catalog.VideoModels, &bad)
	duration := oneOfInt("duration", req.Duration, catalog.VideoDurations, &bad)
	oneOf("resolution", &req.Resolution, catalog.VideoResolutions, &bad)
	oneOf("aspectRatio", &req.AspectRatio, catalog.VideoAspectRatios, &bad)
	if len(bad) > 0 {
		return errs.Fields(bad...)
	}
	p := map[string]any{"prompt": req.Prompt, "model": req.Model, "duration": duration,
		"resolution": req.Resolution, "aspectRatio": req.AspectRatio}
	if req.ImageURL != "" {
		p["imageUrl"] = req.ImageURL
	}
	params, _ := json.Marshal(p)
	nj, err := s.newJob("video", params, req.jobOptions)
	if err != nil {
		return err
	}
	return s.submitJob(c, nj)
}

type imageRequest struct {
	Prompt      string `json:"prompt" validate:"required"`
	Model       string `json:"model"`
	AspectRatio string `json:"aspectRatio"`
	jobOptions
}

// createImage is POST /v1/images/create: an image job with checked fields.
func (s *Server) createImage(c echo.Context) error {
	var req imageRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	var bad []errs.FieldError
	checkPrompt(req.Prompt, &bad)
	oneOf("model", &req.Model, catalog.ImageModels, &bad)
	oneOf("aspectRatio", &req.AspectRatio, catalog.ImageAspectRatios, &bad)
	if len(bad) > 0 {
		return errs.Fields(bad...)
	}
	params, _ := json.Marshal(map[string]any{"prompt": req.Prompt, "model": req.Model, "aspectRatio": req.AspectRatio})
	nj, err := s.newJob("image", params, req.jobOptions)
	if err != nil {
		return err
	}
	return s.submitJob(c, nj)
}

func checkPrompt(p string, bad *[]errs.FieldError) {
	if n := utf8.RuneCountInString(p); n > MaxPromptLen {
		*bad = append(*bad, errs.FieldError{Field: "prompt", Message: "must be at most " + strconv.Itoa(MaxPromptLen) + " characters"})
	}
}

// submitJob queues nj, honouring Idempotency-Key: a replay answers 200
// with the original job and Idempotent-Replayed: true.
func (s *Server) submitJob(c echo.Context, nj scheduler.NewJob) error {
	var idem *scheduler.Idempotency
	if key := c.Request().Header.Get("Idempotency-Key"); key != "" {
		if len(key) > 255 || !printableASCII(key) {
			return errs.Invalid("invalid_idempotency_key", "Idempotency-Key must be at most 255 printable ASCII characters")
		}
		canonical, _ := json.Marshal(nj)
		sum := sha256.Sum256(append([]byte(c.Path()+"\n"), canonical...))
		idem = &scheduler.Idempotency{Key: key, Hash: sum[:]}
	}
	p := principal(c)
	nj.KeyID = p.KeyID // after the idempotency hash: a tenant's keys share their Idempotency-Keys
	job, replayed, err := s.Jobs.Create(c.Request().Context(), p.Scope, nj, idem)
	if err != nil {
		return err
	}
	if replayed {
		c.Response().Header().Set("Idempotent-Replayed", "true")
		return c.JSON(http.StatusOK, Job(job))
	}
	if s.OnJobCreated != nil {
		s.OnJobCreated(p.KeyID)
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/jobs/"+job.ID)
	return c.JSON(http.StatusAccepted, Job(job))
}

// maxWait bounds ?wait= long-polls (below the server's write timeout).
const maxWait = 60 * time.Second

// getJob is GET /v1/jobs/{id}, with ?wait=30s to hold the answer until the
// job ends or the wait is over.
func (s *Server) getJob(c echo.Context) error {
	scope := principal(c).Scope
	w := c.QueryParam("wait")
	if w == "" {
		j, err := s.Jobs.Get(c.Request().Context(), scope, c.Param("id"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, Job(j))
	}
	d, err := time.ParseDuration(w)
	if err != nil || d < 0 || d > maxWait {
		return errs.Invalid("invalid_wait", "wait must be a duration up to %s, like 30s", maxWait)
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), d)
	defer cancel()
	j, err := s.Jobs.Wait(ctx, scope, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, Job(j))
}

// errInvalidCursor answers a cursor no page ever gave out: an empty page
// would look like the end of the list, and the first page like progress.
var errInvalidCursor = errs.Invalid("invalid_cursor", "cursor must be the nextCursor of a previous page")

type jobPage struct {
	Data       []JobModel `json:"data"`
	NextCursor *string    `json:"nextCursor"`
}

// listJobs is GET /v1/jobs?state=&limit=&cursor=, newest first.
func (s *Server) listJobs(c echo.Context) error {
	f := scheduler.ListFilter{State: c.QueryParam("state"), Cursor: c.QueryParam("cursor"), Limit: 50}
	if f.Cursor != "" && !ids.Valid("job", f.Cursor) {
		return errInvalidCursor
	}
	if f.State != "" && !scheduler.ValidState(f.State) {
		return errs.Invalid("invalid_state", "state must be queued, dispatching, running, succeeded, failed or canceled")
	}
	if l := c.QueryParam("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 500 {
			return errs.Invalid("invalid_limit", "limit must be an integer from 1 to 500")
		}
		f.Limit = n
	}
	f.MaxBytes = maxPageBytes
	jobs, next, err := s.Jobs.List(c.Request().Context(), principal(c).Scope, f)
	if err != nil {
		return err
	}
	page := jobPage{Data: jobModels(jobs)}
	size := 0 // as sent; the scheduler's cut counts bytes as stored
	for i, j := range jobs {
		if size += len(j.Params) + len(j.Result); size > maxPageBytes && i > 0 {
			page.Data, next = page.Data[:i], jobs[i-1].ID
			break
		}
	}
	if next != "" {
		page.NextCursor = &next
	}
	return c.JSON(http.StatusOK, page)
}

// cancelJob is DELETE /v1/jobs/{id}.
func (s *Server) cancelJob(c echo.Context) error {
	j, err := s.Jobs.Cancel(c.Request().Context(), principal(c).Scope, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, Job(j))
}

// schedulerRunning is GET /v1/scheduler: the jobs holding slots now.
func (s *Server) schedulerRunning(c echo.Context) error {
	running, err := s.Jobs.Running(c.Request().Context(), principal(c).Scope)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, runningModels(running, s.Now()))
}

// schedulerAvailable is GET /v1/scheduler/available: free slots per account.
func (s *Server) schedulerAvailable(c echo.Context) error {
	a, err := s.Jobs.Available(c.Request().Context(), principal(c).Scope)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, availability(a))
}

// printableASCII reports whether s holds only visible ASCII and spaces.
func printableASCII(s string) bool {
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
