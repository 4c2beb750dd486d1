package api

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/scheduler"
	"github.com/poolgate/poolgate/internal/timefmt"
	"github.com/poolgate/poolgate/internal/webhooks"
)

// JobModel is a job on the wire: the API's responses and the webhook
// payload (openapi.yaml's Job).
type JobModel struct {
	ID              string          `json:"id"`
	State           scheduler.State `json:"state"`
	Type            string          `json:"type"`
	Params          json.RawMessage `json:"params"`
	Email           *string         `json:"email"` // the account it runs or ran on, once placed
	PinnedEmail     *string         `json:"pinnedEmail,omitempty"`
	Attempt         int             `json:"attempt"`
	MaxAttempts     int             `json:"maxAttempts"`
	Priority        int             `json:"priority"`
	Created         int64           `json:"created"`
	CreatedUTC      string          `json:"createdUTC"`
	StartedUTC      *string         `json:"startedUTC"`
	FinishedUTC     *string         `json:"finishedUTC"`
	QueueDeadline   string          `json:"queueDeadlineUTC"`
	Result          json.RawMessage `json:"result"`
	Error           *JobErrorModel  `json:"error"`
	CancelRequested bool            `json:"cancelRequested,omitempty"`
	ReplyURL        *string         `json:"replyUrl"`
	ReplyRef        *string         `json:"replyRef"`
	Warning         *string         `json:"warning,omitempty"`
	Provider        *string         `json:"provider,omitempty"` // the provider the job asked for (or was limited to by its params)
	ResubmitUnknown bool            `json:"resubmitUnknown,omitempty"`
}

// JobErrorModel says why a job failed or was canceled.
type JobErrorModel struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Job is j's wire model.
func Job(j scheduler.Job) JobModel {
	m := JobModel{
		ID: j.ID, State: j.State, Type: j.Type, Params: j.Params, Email: j.Email, PinnedEmail: j.PinnedEmail,
		Attempt: j.Attempt, MaxAttempts: j.MaxAttempts, Priority: j.Priority,
		Created: j.CreatedAt.UnixMilli(), CreatedUTC: timefmt.UTC(j.CreatedAt),
		StartedUTC: timefmt.UTCPtr(j.StartedAt), FinishedUTC: timefmt.UTCPtr(j.FinishedAt),
		QueueDeadline: timefmt.UTC(j.QueueDeadline), Result: j.Result, CancelRequested: j.CancelRequested,
		ReplyURL: j.ReplyURL, ReplyRef: j.ReplyRef, Warning: j.Warning,
		Provider: j.Provider, ResubmitUnknown: j.ResubmitUnknown,
	}
	if j.Error != nil {
		m.Error = &JobErrorModel{Code: j.Error.Code, Message: j.Error.Message}
	}
	return m
}

func jobModels(jobs []scheduler.Job) []JobModel {
	out := make([]JobModel, len(jobs))
	for i, j := range jobs {
		out[i] = Job(j)
	}
	return out
}

// runningModel is one job holding a slot, as useapi's scheduler view
// shows it.
type runningModel struct {
	JobID    string  `json:"jobId"`
	Email    string  `json:"email"`
	Started  string  `json:"started"`
	Elapsed  string  `json:"elapsed"`
	ReplyURL *string `json:"replyUrl,omitempty"`
	ReplyRef *string `json:"replyRef,omitempty"`
}

func runningModels(rs []scheduler.RunningJob, now time.Time) []runningModel {
	out := make([]runningModel, len(rs))
	for i, r := range rs {
		out[i] = runningModel{JobID: r.JobID, Email: r.Email, Started: timefmt.UTC(r.StartedAt),
			Elapsed: now.Sub(r.StartedAt).Round(time.Second).String(), ReplyURL: r.ReplyURL, ReplyRef: r.ReplyRef}
	}
	return out
}

// capacityModel is useapi's scheduler/available view of one account.
type capacityModel struct {
	Email     string `json:"email"`
	MaxJobs   int    `json:"maxJobs"`
	Executing int    `json:"executing"`
	Available int    `json:"available"`
}

type availabilityModel struct {
	Executing int             `json:"executing"`
	Available []capacityModel `json:"available"`
}

func availability(a scheduler.Availability) availabilityModel {
	m := availabilityModel{Executing: a.Executing, Available: make([]capacityModel, len(a.Available))}
	for i, c := range a.Available {
		m.Available[i] = capacityModel{Email: c.Email, MaxJobs: c.MaxJobs, Executing: c.Executing, Available: c.Available}
	}
	return m
}

// JobWebhook is the scheduler's finish hook that queues each ended job's
// model for its replyUrl in the transaction that ends it, so a finished
// job and its notification commit together; wake (optional) nudges the
// deliverer afterwards.
func JobWebhook(wake func()) scheduler.FinishHook {
	return func(ctx context.Context, tx pgx.Tx, jobs []scheduler.Job) error {
		queued := false
		for _, j := range jobs {
			if j.ReplyURL == nil {
				continue
			}
			if _, err := webhooks.Enqueue(ctx, tx, j.TenantID(), *j.ReplyURL, "job."+string(j.State), Job(j), time.Now()); err != nil {
				return err
			}
			queued = true
		}
		if queued && wake != nil {
			wake()
		}
		return nil
	}
}
