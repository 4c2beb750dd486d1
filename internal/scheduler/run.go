package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/backoff"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/tenant"
)

// FinishHook runs inside the transaction that ends jobs (one or a batch);
// an error rolls the transitions back (they are retried later).
type FinishHook func(ctx context.Context, tx pgx.Tx, jobs []Job) error

const executionColumns = `tenant_id, mode, id, type, params, attempt, max_attempts, account_id,
	account_email, upstream_id, started_at, cancel_requested, created_at, key_id, resubmit_unknown`

// executionColumnsJ is executionColumns qualified for statements that alias
// jobs as j.
const executionColumnsJ = `j.tenant_id, j.mode, j.id, j.type, j.params, j.attempt, j.max_attempts, j.account_id,
	j.account_email, j.upstream_id, j.started_at, j.cancel_requested, j.created_at, j.key_id, j.resubmit_unknown`

// execution is a job this replica follows while it holds a slot.
type execution struct {
	scope           tenant.Scope
	id, typ         string
	params          json.RawMessage
	attempt         int
	maxAttempts     int
	accountID       int64
	email           string
	upstreamID      *string
	startedAt       time.Time
	cancelRequested bool
	createdAt       time.Time
	keyID           *string // the API key that created the job, for usage
	resubmitUnknown bool    // an attempt of unknown outcome may be submitted again
	acct            provider.Account
	credVersion     string // the account's cookie version at placement ("" unknown)
	// poke cuts a wait for the next status read short (a cancel came).
	poke chan struct{}
}

func scanExecution(row pgx.Row) (*execution, error) {
	var e execution
	err := row.Scan(&e.scope.TenantID, &e.scope.Mode, &e.id, &e.typ, &e.params, &e.attempt, &e.maxAttempts,
		&e.accountID, &e.email, &e.upstreamID, &e.startedAt, &e.cancelRequested, &e.createdAt, &e.keyID, &e.resubmitUnknown)
	if err != nil {
		return nil, err
	}
	return &e, nil
}

func (e *execution) idempotencyKey() string { return e.id + "/" + strconv.Itoa(e.attempt) }

// follow runs start for e in its own goroutine unless this replica
// already follows e. While it runs, the renewer keeps e's lease alive;
// when it returns without ending the job, the lease lapses and the rescuer
// (here or elsewhere) takes over.
func (s *Scheduler) follow(e *execution, start func(context.Context, *execution)) {
	s.mu.Lock()
	if _, dup := s.inflight[e.id]; dup || s.runCtx == nil {
		s.mu.Unlock()
		return
	}
	e.poke = make(chan struct{}, 1)
	s.inflight[e.id] = e
	s.execs.Add(1)
	ctx := s.runCtx
	s.mu.Unlock()
	go func() {
		defer func() {
			s.mu.Lock()
			delete(s.inflight, e.id)
			s.mu.Unlock()
			s.execs.Done()
		}()
		start(ctx, e)
	}()
}

// credentials loads the account's cookie; false means the job was settled
// or handed off instead.
func (s *Scheduler) credentials(ctx context.Context, e *execution) bool {
	acct, err := s.cfg.Accounts.CredentialsAt(ctx, e.scope, e.accountID, e.credVersion)
	if errors.Is(err, accounts.ErrGone) {
		s.finish(e, outcome{state: StateFailed, code: CodeAccountDeleted,
			message: "the account this job ran on was deleted"})
		return false
	}
	if errors.Is(err, accounts.ErrUnreadable) { // take it out of rotation, run the job elsewhere
		s.retry(ctx, e, retry{reason: "auth", message: err.Error(), accountError: err.Error(), unconsumed: true})
		return false
	}
	if err != nil {
		if !isShutdown(ctx, err) {
			s.log.Error("load account credentials", "job", e.id, "err", err)
		}
		return false
	}
	e.acct = acct
	return true
}

// reloadCredentials re-reads the account's cookie, keeping the old one if
// that fails.
func (s *Scheduler) reloadCredentials(ctx context.Context, e *execution) {
	if acct, err := s.cfg.Accounts.Credentials(ctx, e.scope, e.accountID); err == nil {
		e.acct = acct
	}
}

// submit starts a freshly placed attempt upstream and follows it.
func (s *Scheduler) submit(ctx context.Context, e *execution) {
	if !s.credentials(ctx, e) {
		return
	}
	st, err := s.upstream(e.acct).Submit(ctx, e.acct, provider.Submission{
		IdempotencyKey: e.idempotencyKey(), JobID: e.id, Attempt: e.attempt, Type: e.typ, Params: e.params,
	})
	if err != nil {
		if isShutdown(ctx, err) {
			return // outcome unknown: the rescuer looks the attempt up
		}
		if provider.ClassOf(err) != provider.ClassTransient {
			s.settleError(ctx, e, err)
			return
		}
		// A timeout or 5xx may hide a generation that did start: ask
		// before retrying, or the retry could run twice at once.
		found, ferr := s.lookup(ctx, e)
		if lostAnswer(err, ferr) {
			s.unknownOutcome(ctx, e, "the upstream's answer was lost after the request went out ("+errorMessage(err)+")")
			return
		}
		if errors.Is(ferr, provider.ErrNoLookup) { // it answered: nothing ran
			s.settleError(ctx, e, err)
			return
		}
		if ferr != nil {
			return // still unknown: leave it to the rescuer
		}
		if found == nil {
			s.settleError(ctx, e, err)
			return
		}
		st = *found
	}
	if st.State.Terminal() {
		// The submission already told the outcome: no "running" write.
		e.upstreamID = &st.UpstreamID
		s.ended(e, st)
		return
	}
	if s.markRunning(ctx, e, st.UpstreamID) {
		s.track(ctx, e, st)
	}
}

// lookup asks the upstream whether the attempt exists: (status, nil) if it
// does, (nil, nil) if the upstream says it never saw it.
func (s *Scheduler) lookup(ctx context.Context, e *execution) (*provider.Status, error) {
	st, found, err := s.upstream(e.acct).Lookup(ctx, e.acct, e.idempotencyKey())
	if err != nil {
		if !isShutdown(ctx, err) && !errors.Is(err, provider.ErrNoLookup) {
			s.log.Warn("upstream lookup failed; will retry", "job", e.id, "err", err)
		}
		return nil, err
	}
	if !found {
		return nil, nil
	}
	return &st, nil
}

// markRunning records the upstream id (through the completer's next
// batch). It returns false if this replica no longer owns the job, or if a
// cancellation was waiting (then it is carried out here).
func (s *Scheduler) markRunning(ctx context.Context, e *execution, upstreamID string) bool {
	r := s.done.runningNow(ctx, e, upstreamID)
	if r.err != nil || !r.owned {
		if r.err != nil && !isShutdown(ctx, r.err) {
			s.log.Error("mark job running", "job", e.id, "err", r.err)
		}
		return false
	}
	e.cancelRequested = r.cancelRequested
	e.upstreamID = &upstreamID
	if e.cancelRequested {
		s.cancelRunning(ctx, e)
		return false
	}
	return true
}

// cancelRunning stops e upstream, then ends it as canceled.
func (s *Scheduler) cancelRunning(ctx context.Context, e *execution) {
	if err := s.upstream(e.acct).Cancel(ctx, e.acct, *e.upstreamID); err != nil {
		s.log.Warn("upstream cancel failed; will retry", "job", e.id, "err", err)
		return
	}
	s.finish(e, outcome{state: StateCanceled, code: CodeCanceled, message: "canceled by request"})
}

// track polls the upstream until the attempt ends, then records how. The
// reads follow a pollPlan (poll.go): the first shortly before the job is
// expected to end, then backing off up to PollMaxInterval.
func (s *Scheduler) track(ctx context.Context, e *execution, st provider.Status) {
	kind := kindOf(e.typ, e.params)
	plan := newPollPlan(s.cfg.PollInterval, s.cfg.PollMaxInterval, s.expect.of(kind), e.startedAt, s.now())
	seenRunning := s.now() // the last time the upstream said it still ran
	failures := 0
	for !st.State.Terminal() {
		if s.now().Sub(e.startedAt) > s.cfg.JobTimeout {
			s.upstream(e.acct).Cancel(ctx, e.acct, *e.upstreamID)
			s.finish(e, outcome{state: StateFailed, code: "timeout",
				message: "the upstream did not finish within " + s.cfg.JobTimeout.String()})
			return
		}
		wait := plan.next()
		if failures > 0 {
			wait = backoff.Exp(failures, s.cfg.PollInterval, s.cfg.PollMaxInterval)
		}
		// An expectation longer than JobTimeout must not delay the timeout.
		wait = min(wait, max(s.cfg.PollInterval, e.startedAt.Add(s.cfg.JobTimeout).Sub(s.now())))
		if !s.pollWait(ctx, e, wait) {
			return
		}
		asked := s.now()
		next, err := s.upstream(e.acct).Status(ctx, e.acct, *e.upstreamID)
		if err != nil {
			if isShutdown(ctx, err) {
				return
			}
			if provider.ClassOf(err) == provider.ClassAuth {
				// The token may have been refreshed since the job started.
				s.reloadCredentials(ctx, e)
			}
			failures++
			s.log.Warn("upstream status failed", "job", e.id, "class", provider.ClassOf(err).String(), "err", err)
			continue
		}
		failures = 0
		st = next
		if !st.State.Terminal() {
			seenRunning = asked
		} else if st.State != provider.StateCanceled {
			// It ended between the last two reads: take the middle.
			s.expect.learn(kind, seenRunning.Add(asked.Sub(seenRunning)/2).Sub(e.startedAt))
		}
	}
	s.ended(e, st)
}

// pollWait waits d before the next status read, less if a cancel pokes e;
// false means ctx ended (shutdown).
func (s *Scheduler) pollWait(ctx context.Context, e *execution, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-e.poke:
		return true
	case <-s.cfg.After(d):
		return true
	}
}

// pokeExecution makes the execution of job id, if this replica follows it,
// read its status now rather than after its poll wait.
func (s *Scheduler) pokeExecution(id string) {
	s.mu.Lock()
	e := s.inflight[id]
	s.mu.Unlock()
	if e != nil {
		select {
		case e.poke <- struct{}{}:
		default:
		}
	}
}

// ended records how a finished upstream generation ended.
func (s *Scheduler) ended(e *execution, st provider.Status) {
	switch st.State {
	case provider.StateSucceeded:
		s.finish(e, outcome{state: StateSucceeded, result: st.Result})
	case provider.StateCanceled:
		s.finish(e, outcome{state: StateCanceled, code: CodeCanceled, message: "canceled upstream"})
	default:
		s.finish(e, outcome{state: StateFailed, code: CodeUpstreamFailed, message: st.Error})
	}
}

// backoff is base·2^failures, capped at RetryMax, with ±25% jitter.
func (s *Scheduler) backoff(base time.Duration, failures int) time.Duration {
	return backoff.Exp(failures, base, s.cfg.RetryMax)
}

// settleError decides what an upstream error means for the job and the
// account, and records it.
func (s *Scheduler) settleError(ctx context.Context, e *execution, err error) {
	msg := errorMessage(err)
	switch provider.ClassOf(err) {
	case provider.ClassAuth:
		s.retry(ctx, e, retry{reason: "auth", message: msg, accountError: "upstream refused the credentials: " + msg, probe: true})
	case provider.ClassRateLimited:
		wait := provider.RetryAfterOf(err)
		if wait <= 0 {
			wait = s.cfg.Quarantine
		}
		why := accounts.QuarantineRateLimited
		if provider.DailyQuotaOf(err) {
			why = accounts.QuarantineDailyQuota
		}
		s.retry(ctx, e, retry{reason: "rate_limited", message: msg, quarantine: wait, quarantineAs: why})
	case provider.ClassInvalid:
		s.finish(e, outcome{state: StateFailed, code: CodeInvalidInput, message: msg})
	case provider.ClassPermanent:
		s.finish(e, outcome{state: StateFailed, code: CodeRejected, message: msg})
	default:
		r := retry{reason: "transient", message: msg, delay: s.backoff(s.cfg.RetryBase, e.attempt-1), breaker: true}
		if wait := provider.RetryAfterOf(err); wait > 0 { // the upstream asked this account to pause
			r.quarantine, r.quarantineAs, r.breaker = wait, accounts.QuarantineUpstreamUnavailable, false
		}
		s.retry(ctx, e, r)
	}
}

// errorMessage is the user-safe part of an upstream error.
func errorMessage(err error) string {
	if pe, ok := errors.AsType[*provider.Error](err); ok && pe.Message != "" {
		return pe.Message
	}
	return "upstream unavailable"
}
