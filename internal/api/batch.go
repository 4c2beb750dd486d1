package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/scheduler"
)

// batchItem is one job of POST /v1/jobs/batch: the body of POST /v1/jobs
// plus the idempotency key a single request would send as a header.
type batchItem struct {
	createJobRequest
	IdempotencyKey string `json:"idempotencyKey"`
}

type batchRequest struct {
	Jobs []json.RawMessage `json:"jobs" validate:"required,min=1"`
}

// batchResult is one item's answer: the status a single POST /v1/jobs
// would have had, and its job or its error.
type batchResult struct {
	Status   int          `json:"status"`
	Job      *JobModel    `json:"job,omitempty"`
	Replayed bool         `json:"replayed,omitempty"`
	Error    *errorDetail `json:"error,omitempty"`
}

type batchResponse struct {
	Data     []batchResult `json:"data"`
	Accepted int           `json:"accepted"`
	Failed   int           `json:"failed"`
}

// createJobs is POST /v1/jobs/batch: up to 1,000 jobs in one request and
// one transaction. Each item is checked and answered on its own, so one bad
// item fails alone; the response lists the items in request order.
func (s *Server) createJobs(c echo.Context) error {
	var req batchRequest
	if err := s.decodeJSON(c, &req); err != nil {
		return err
	}
	if len(req.Jobs) > scheduler.MaxBatch {
		return errs.Invalid("batch_too_large", "a batch holds at most %d jobs; split it", scheduler.MaxBatch)
	}
	results := make([]batchResult, len(req.Jobs))
	var (
		items []scheduler.BatchItem
		where []int
	)
	for i, raw := range req.Jobs {
		item, err := s.batchItem(raw)
		if err != nil {
			results[i] = failed(err)
			continue
		}
		items, where = append(items, item), append(where, i)
	}
	p := principal(c)
	for i := range items {
		items[i].Job.KeyID = p.KeyID
	}
	created, err := s.Jobs.CreateMany(c.Request().Context(), p.Scope, items)
	if err != nil {
		return err
	}
	resp := batchResponse{Data: results}
	for k, r := range created {
		i := where[k]
		switch {
		case r.Err != nil:
			results[i] = failed(r.Err)
		case r.Replayed:
			m := Job(r.Job)
			results[i] = batchResult{Status: http.StatusOK, Job: &m, Replayed: true}
		default:
			m := Job(r.Job)
			results[i] = batchResult{Status: http.StatusAccepted, Job: &m}
			if s.OnJobCreated != nil {
				s.OnJobCreated(p.KeyID)
			}
		}
	}
	for _, r := range results {
		if r.Error != nil {
			resp.Failed++
		} else {
			resp.Accepted++
		}
	}
	return c.JSON(http.StatusOK, resp)
}

// batchItem decodes and checks one item exactly as POST /v1/jobs checks
// its body.
func (s *Server) batchItem(raw json.RawMessage) (scheduler.BatchItem, error) {
	var it batchItem
	if err := decodeStrict(bytes.NewReader(raw), &it); err != nil {
		return scheduler.BatchItem{}, err
	}
	if err := s.check(&it); err != nil {
		return scheduler.BatchItem{}, err
	}
	if len(it.Params) > 0 && it.Params[0] != '{' {
		return scheduler.BatchItem{}, errs.Fields(errs.FieldError{Field: "params", Message: "must be an object"})
	}
	nj, err := s.newJob(it.Type, it.Params, it.jobOptions)
	if err != nil {
		return scheduler.BatchItem{}, err
	}
	item := scheduler.BatchItem{Job: nj}
	if it.IdempotencyKey != "" {
		if len(it.IdempotencyKey) > 255 {
			return item, errs.Invalid("invalid_idempotency_key", "idempotencyKey must be at most 255 characters")
		}
		// The same hash a single POST /v1/jobs computes, so a job retried
		// alone after a batch (or the reverse) is recognised.
		canonical, _ := json.Marshal(nj)
		sum := sha256.Sum256(append([]byte("/v1/jobs\n"), canonical...))
		item.Idempotency = &scheduler.Idempotency{Key: it.IdempotencyKey, Hash: sum[:]}
	}
	return item, nil
}

// failed is an item's answer for err, with the status and envelope a
// single request would have had.
func failed(err error) batchResult {
	e := errs.As(err)
	if e.Kind == errs.KindInternal {
		e = errs.Unavailable(nil) // never an internal message
	}
	m := kindHTTP[e.Kind]
	return batchResult{Status: m.status, Error: &errorDetail{Type: m.typ, Code: e.Code, Message: e.Message, Details: e.Details}}
}
