// Package provider defines what poolgate needs from an upstream
// generative-media service: submit a job with one account's credentials,
// read its status, find it again after a crash, cancel it, refresh the
// account's tokens, and classify every failure so the scheduler knows whom
// to blame (the account, the job, or nobody).
//
// Implementations live in subpackages: ltxstudio speaks HTTP to LTX Studio
// (or anything speaking its contract), and sim is an in-process simulator of
// that same HTTP contract for tests and benchmarks.
package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"
)

// Names of the upstreams poolgate speaks; an account belongs to one.
const (
	NameLTXStudio = "ltxstudio" // LTX Studio's web app, by browser cookies
	NameLTXAPI    = "ltx-api"   // Lightricks' LTX-2 API, by API key
)

// Account is the identity a call runs as.
type Account struct {
	// Email is the account's identity: the email of a cookie account, the
	// name of an API-key account.
	Email string
	// Provider names the upstream the account belongs to (NameLTXStudio
	// when empty).
	Provider string
	// Cookie is the full "k=v; k2=v2" Cookie header value. It is a
	// credential: never log it and never put it in an error.
	Cookie string
	// APIKey is the bearer key of an API-key account; a credential too.
	APIKey string
}

// ProviderName is a's provider, NameLTXStudio for accounts that predate
// providers.
func (a Account) ProviderName() string {
	if a.Provider == "" {
		return NameLTXStudio
	}
	return a.Provider
}

// Submission is one attempt of one poolgate job.
type Submission struct {
	// IdempotencyKey is "<jobID>/<attempt>", unique per job attempt. The
	// upstream uses it to deduplicate, and Lookup finds the attempt by it.
	IdempotencyKey string
	JobID          string
	Attempt        int
	Type           string          // "video" | "image"
	Params         json.RawMessage // opaque to poolgate
}

// State is where an upstream generation stands, as poolgate sees it.
type State string

// The states an upstream generation can be in. Every state but StateRunning
// is terminal.
const (
	StateRunning   State = "running"
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
	StateCanceled  State = "canceled"
)

// Terminal reports whether a generation in state s will never change again,
// i.e. whether its account slot may be released.
func (s State) Terminal() bool {
	return s == StateSucceeded || s == StateFailed || s == StateCanceled
}

// Status is a snapshot of one upstream generation.
type Status struct {
	UpstreamID string
	State      State
	Result     json.RawMessage // set when State is StateSucceeded
	Error      string          // set when State is StateFailed: the upstream's reason, safe to show users
}

// Tokens are freshly issued credentials (the new lt_token and
// lt_refresh_token cookie values) that replace the account's old ones.
type Tokens struct {
	Token        string
	RefreshToken string
}

// Provider is an upstream service. Every method returns errors that ClassOf
// can classify; implementations return *Error where they know better than
// the defaults.
type Provider interface {
	// Submit starts a generation. It may return a terminal Status at once.
	// Submitting the same IdempotencyKey twice on the same account returns
	// the existing generation instead of starting a second one.
	Submit(ctx context.Context, a Account, s Submission) (Status, error)
	// Status reads the current state of a generation.
	Status(ctx context.Context, a Account, upstreamID string) (Status, error)
	// Lookup finds the generation started with idempotencyKey. found is
	// false only if the upstream positively says it never saw that key; it
	// is what poolgate asks after a crash left a submit's outcome unknown.
	// An upstream that cannot be asked returns ErrNoLookup.
	Lookup(ctx context.Context, a Account, idempotencyKey string) (st Status, found bool, err error)
	// Cancel asks the upstream to stop a generation. Cancelling one that
	// has already ended is not an error.
	Cancel(ctx context.Context, a Account, upstreamID string) error
	// Refresh exchanges the account's refresh token for new tokens.
	Refresh(ctx context.Context, a Account) (Tokens, error)
	// Probe makes the cheapest authenticated call the upstream offers, to
	// learn whether an account out of rotation may take jobs again; nil
	// means it may. Its errors classify like any other call's.
	Probe(ctx context.Context, a Account) error
}

// ErrNoLookup is Lookup's answer from an upstream that takes no
// idempotency key and keeps no record poolgate could query: after a crash
// the outcome of a submission is unknown and stays so.
var ErrNoLookup = errors.New("the upstream cannot look up a submission")

// ErrOutcomeUnknown marks a Submit error after which the upstream may or
// may not have run (and billed) the generation: the request was sent and
// the answer was lost. A provider without Lookup wraps such errors in it.
var ErrOutcomeUnknown = errors.New("the request reached the upstream but its answer was lost")

// Class says what a failure means for the job and the account.
type Class int

const (
	// ClassTransient: nobody is to blame (timeouts, connection errors, 5xx,
	// anything unrecognised); retry the job, elsewhere, with backoff. It is
	// the zero value on purpose: an error nobody classified must not fail a
	// job or take an account out of the pool, and retries are bounded by the
	// scheduler anyway.
	ClassTransient Class = iota
	// ClassAuth: the account's credentials were refused; the account needs a
	// token refresh or operator attention. The job itself is not at fault.
	ClassAuth
	// ClassRateLimited: the upstream throttles this account; quarantine it
	// for Error.RetryAfter (or a default) and retry the job elsewhere.
	ClassRateLimited
	// ClassPermanent: the job cannot succeed upstream; fail it.
	ClassPermanent
	// ClassInvalid: the input was rejected (bad parameters or moderation);
	// fail the job and tell the producer why.
	ClassInvalid
)

// String returns a short snake_case name, stable for logs and metrics.
func (c Class) String() string {
	switch c {
	case ClassTransient:
		return "transient"
	case ClassAuth:
		return "auth"
	case ClassRateLimited:
		return "rate_limited"
	case ClassPermanent:
		return "permanent"
	case ClassInvalid:
		return "invalid"
	default:
		return "unknown"
	}
}

// Error is a classified upstream failure.
type Error struct {
	Class Class
	// Message is safe to show users: it never contains credentials.
	Message string
	// RetryAfter is how long the upstream asked us to wait, if it said.
	RetryAfter time.Duration
	// DailyQuota marks a ClassRateLimited refusal because the account's
	// daily quota is spent; RetryAfter then runs to the quota's reset.
	DailyQuota bool
	// Err is the underlying cause, for logs. It never contains credentials
	// either, but may name URLs and status codes.
	Err error
}

func (e *Error) Error() string {
	s := e.Class.String()
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// ClassOf classifies err. A *Error anywhere in the chain decides. Everything
// else (context cancellation and deadlines, network errors, anything
// unrecognised) is ClassTransient, because none of it says anything about the
// job or the account. ClassOf(nil) is ClassTransient too, so check err first.
func ClassOf(err error) Class {
	if pe, ok := errors.AsType[*Error](err); ok {
		return pe.Class
	}
	return ClassTransient
}

// RetryAfterOf returns the wait the upstream asked for, or 0 if err carries
// none.
func RetryAfterOf(err error) time.Duration {
	if pe, ok := errors.AsType[*Error](err); ok {
		return pe.RetryAfter
	}
	return 0
}

// DailyQuotaOf reports whether err is a refusal because the account's
// daily quota is spent.
func DailyQuotaOf(err error) bool {
	pe, ok := errors.AsType[*Error](err)
	return ok && pe.DailyQuota
}

// KeyFingerprint names an API key without revealing it: "key-" and the
// first 12 hex digits of its SHA-256. It is stable, so it can serve as the
// identity of an account registered without a name.
func KeyFingerprint(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "key-" + hex.EncodeToString(sum[:6])
}
