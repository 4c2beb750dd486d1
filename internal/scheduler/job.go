package scheduler

import (
	"encoding/json"
	"time"

	"github.com/poolgate/poolgate/internal/tenant"
)

// State is where a job is in its lifecycle:
//
//	queued → dispatching → running → succeeded | failed | canceled
//
// A retried job goes back to queued (usually to run on another account).
// A job holds a slot of its account exactly while dispatching or running.
type State string

// Job states.
const (
	StateQueued      State = "queued"
	StateDispatching State = "dispatching"
	StateRunning     State = "running"
	StateSucceeded   State = "succeeded"
	StateFailed      State = "failed"
	StateCanceled    State = "canceled"
)

// Terminal reports whether s never changes again.
func (s State) Terminal() bool {
	return s == StateSucceeded || s == StateFailed || s == StateCanceled
}

// ValidState reports whether s names a state (for list filters).
func ValidState(s string) bool {
	switch State(s) {
	case StateQueued, StateDispatching, StateRunning, StateSucceeded, StateFailed, StateCanceled:
		return true
	}
	return false
}

// Job is one job as producers see it. It is also the webhook payload, so
// its JSON form is the API's job model.
type Job struct {
	ID              string          `json:"id"`
	State           State           `json:"state"`
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
	Error           *JobError       `json:"error"`
	CancelRequested bool            `json:"cancelRequested,omitempty"`
	ReplyURL        *string         `json:"replyUrl"`
	ReplyRef        *string         `json:"replyRef"`
	Warning         *string         `json:"warning,omitempty"`

	tenantID  int64
	mode      tenant.Mode
	accountID *int64
	createdAt time.Time
	startedAt *time.Time
}

// TenantID is the tenant the job belongs to.
func (j Job) TenantID() int64 { return j.tenantID }

func (j Job) scope() tenant.Scope { return tenant.Scope{TenantID: j.tenantID, Mode: j.mode} }

// JobError says why a job failed or was canceled.
type JobError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error codes of failed jobs.
const (
	CodeNoCapacity      = "no_capacity"       // still queued when its queueTimeout passed
	CodeUpstreamFailed  = "upstream_failed"   // the upstream generation failed
	CodeRejected        = "upstream_rejected" // the upstream refused the job for good
	CodeInvalidInput    = "invalid_input"     // refused as invalid or moderated
	CodeRetriesExceeded = "retries_exhausted" // every attempt hit a retryable failure
	CodeAccountDeleted  = "account_deleted"   // its account was deleted and its replica died
	CodeCanceled        = "canceled"          // canceled by the producer
)
