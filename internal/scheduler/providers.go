package scheduler

import (
	"context"
	"errors"
	"maps"
	"slices"

	"github.com/poolgate/poolgate/internal/provider"
)

// upstream is the provider that runs calls as acct: a provider this
// replica lacks answers with a ClassAuth error that names it (see
// provider.Set.For).
func (s *Scheduler) upstream(acct provider.Account) provider.Provider {
	return s.cfg.Providers.For(acct)
}

// providerNames lists the providers this scheduler can place jobs for.
func (s *Scheduler) providerNames() []string {
	return slices.Collect(maps.Keys(s.cfg.Providers))
}

// unknownOutcome ends an attempt nobody can know the outcome of: the
// upstream cannot be asked (provider.ErrNoLookup) and the request may
// have reached it. It is resubmitted only if the job allows it, and the
// job's error says what happened either way; never silently twice.
func (s *Scheduler) unknownOutcome(ctx context.Context, e *execution, why string) {
	s.log.Warn("attempt outcome unknown", "job", e.id, "attempt", e.attempt, "resubmit", e.resubmitUnknown)
	if e.resubmitUnknown {
		msg := why + "; resubmitted because the job allows it (resubmitUnknown), so it may run twice"
		s.retry(ctx, e, retry{reason: "outcome_unknown", message: msg, warning: "attempt " + itoa(e.attempt) + ": " + msg,
			delay: s.backoff(s.cfg.RetryBase, e.attempt-1)})
		return
	}
	s.finish(e, outcome{state: StateFailed, code: CodeOutcomeUnknown,
		message: why + "; not resubmitted, since that could run it twice (set resubmitUnknown to allow it)"})
}

// lostAnswer reports whether a failed Submit may have run upstream with no
// way to find out: the upstream cannot be looked up, and the error says
// the request went out.
func lostAnswer(err, lookupErr error) bool {
	return errors.Is(lookupErr, provider.ErrNoLookup) && errors.Is(err, provider.ErrOutcomeUnknown)
}
