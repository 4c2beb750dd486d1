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

// Job is one job. Its wire form (the API's job model, also the webhook
// payload) is internal/api's business.
type Job struct {
	ID              string
	State           State
	Type            string
	Params          json.RawMessage
	Email           *string // the account it runs or ran on, once placed
	PinnedEmail     *string
	Attempt         int
	MaxAttempts     int
	Priority        int
	CreatedAt       time.Time
	StartedAt       *time.Time
	FinishedAt      *time.Time
	QueueDeadline   time.Time
	Result          json.RawMessage
	Error           *JobError
	CancelRequested bool
	ReplyURL        *string
	ReplyRef        *string
	Warning         *string
	KeyID           *string // the API key that created the job, if known
	Provider        *string // the provider the job asked for; nil: any
	ResubmitUnknown bool

	tenantID  int64
	mode      tenant.Mode
	accountID *int64
}

// TenantID is the tenant the job belongs to.
func (j Job) TenantID() int64 { return j.tenantID }

// Mode is the mode (live or test) of the job's pool.
func (j Job) Mode() tenant.Mode { return j.mode }

func (j Job) scope() tenant.Scope { return tenant.Scope{TenantID: j.tenantID, Mode: j.mode} }

// JobError says why a job failed or was canceled.
type JobError struct {
	Code    string
	Message string
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
	// CodeOutcomeUnknown: an attempt went to an upstream that cannot be
	// asked about it (no idempotency key, no lookup) and its answer was
	// lost; it may have run, and been billed. The job was not resubmitted
	// because it did not allow it (resubmitUnknown).
	CodeOutcomeUnknown = "outcome_unknown"
)
