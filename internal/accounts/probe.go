package accounts

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/loop"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/tenant"
)

// ProberConfig configures a Prober.
type ProberConfig struct {
	Store    *Store
	Provider provider.Provider
	Logger   *slog.Logger
	Now      func() time.Time // nil: time.Now
	// Interval is how often due probes are looked for (default 5s).
	Interval time.Duration
	// Quarantine is how long a probe answered by a rate limit without
	// Retry-After waits before the next one (default 30m, like the
	// scheduler's).
	Quarantine time.Duration
	// OnOutcome, if set, is told each probe's outcome: "recovered",
	// "failed" or "unreadable".
	OnOutcome func(outcome string)
}

// Prober brings accounts back into rotation: it probes a quarantined
// account once its quarantine has passed, and an account in error (when
// the refusal may be temporary) on a growing backoff, and returns it to
// rotation when the probe succeeds. It also ends the quarantines that
// passed of accounts whose probes are off (they end on the clock), and
// records the "expired" event of accounts whose refresh token lapsed. Any
// number of replicas may run one: a short lease on the account row, taken
// just before its probe, makes one replica probe a given account.
// Operator-disabled accounts and those with probes turned off are never
// probed, nor is an account whose lt_token lapsed: the refresher renews
// it first (also for an account in error waiting for its probe).
type Prober struct {
	cfg  ProberConfig
	log  *slog.Logger
	loop loop.Every
}

// NewProber returns a Prober; Start runs it.
func NewProber(cfg ProberConfig) *Prober {
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.Quarantine <= 0 {
		cfg.Quarantine = 30 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Prober{cfg: cfg, log: cfg.Logger.With("component", "prober")}
}

// Start probes due accounts every Interval until Stop.
func (p *Prober) Start(ctx context.Context) error {
	return p.loop.Start(ctx, p.cfg.Interval, p.log, "probe round failed", func(ctx context.Context) error {
		_, err := p.RunOnce(ctx)
		return err
	})
}

// Stop ends the loop after the probes in progress, or when ctx ends.
func (p *Prober) Stop(ctx context.Context) { p.loop.Stop(ctx) }

// probeLease bounds how long a replica holds an account it is probing.
// It is taken for one account at a time, just before its probe, so a
// round that waits on the upstream (timeouts, the request budget) never
// lets the leases of accounts it has yet to probe lapse.
const probeLease = 2 * time.Minute

// probeDue is the rule for "account a's probe is due at $1". A probe is
// due at probe_at or, for a quarantined account that has none planned, at
// the quarantine's end, so no quarantined row can be missed; an account
// in error is probed only when its error planned a probe. Never before a
// quarantine ends, never with an lt_token that lapsed (it could only be
// refused: the refresher renews it first), never on an account the
// operator disabled or turned probes off for, never under another
// replica's lease. (The second line is accounts_probe_due_idx's
// predicate, spelled out so the planner reads that index.)
const probeDue = `coalesce(a.probe_at, a.quarantined_until) <= $1
	AND (a.probe_at IS NOT NULL OR a.quarantined_until IS NOT NULL)
	AND (a.probe_at IS NOT NULL OR a.status = 'active')
	AND (a.quarantined_until IS NULL OR a.quarantined_until <= $1)
	AND (a.token_expires_at IS NULL OR a.token_expires_at > $1)
	AND a.enabled AND a.probe_enabled
	AND (a.probe_lock_until IS NULL OR a.probe_lock_until <= $1)`

// accountClaimProbe takes a lease on the account whose probe has been due
// longest. It waits for the row lock rather than skipping it: a placement
// locks the account of a pinned job even while it is out of rotation, and
// skipping would let such an account miss its probe round after round.
// The UPDATE re-checks the rule on the row it locked, so two replicas
// never both take one account; it answers one row whenever an account
// was due, with claimed false if another replica took it meanwhile.
const accountClaimProbe = `
WITH due AS (
	SELECT a.tenant_id, a.id FROM accounts a
	WHERE ` + probeDue + `
	ORDER BY coalesce(a.probe_at, a.quarantined_until)
	LIMIT 1
), claimed AS (
	UPDATE accounts a SET probe_lock_until = $2
	FROM due
	WHERE a.tenant_id = due.tenant_id AND a.id = due.id AND ` + probeDue + `
	RETURNING a.tenant_id, a.mode, a.id, a.email, a.cookie, a.provider, a.probe_failures
)
SELECT c.id IS NOT NULL, coalesce(c.tenant_id, 0), coalesce(c.mode, ''), coalesce(c.id, 0),
	coalesce(c.email, ''), coalesce(c.cookie, ''::bytea), coalesce(c.provider, ''), coalesce(c.probe_failures, 0)
FROM due LEFT JOIN claimed c ON true`

type probeDueAccount struct {
	scope    tenant.Scope
	id       int64
	email    string
	sealed   []byte
	provider string
	failures int
	lease    time.Time
}

// RunOnce probes every account whose probe is due, ends the quarantines
// that passed of accounts whose probes are off, records the expiries that
// passed, and reports how many accounts it returned to rotation by probe.
func (p *Prober) RunOnce(ctx context.Context) (int, error) {
	if err := p.noteExpired(ctx); err != nil {
		return 0, err
	}
	if err := p.endLapsed(ctx); err != nil {
		return 0, err
	}
	if _, err := p.cfg.Store.pool.Exec(ctx, accountBreakerResetsOrphaned); err != nil {
		return 0, err
	}
	recovered := 0
	for {
		d, found, err := p.claim(ctx)
		if err != nil || !found {
			return recovered, err
		}
		if d == nil {
			continue // another replica took it; look for the next one
		}
		ok, err := p.probe(ctx, *d)
		if err != nil {
			return recovered, err
		}
		if ok {
			recovered++
		}
	}
}

// claim leases the next due account: found is false when none is due, d
// nil when another replica took the one that was.
func (p *Prober) claim(ctx context.Context) (d *probeDueAccount, found bool, err error) {
	now := p.cfg.Now().UTC()
	c := probeDueAccount{lease: now.Add(probeLease)}
	var claimed bool
	err = p.cfg.Store.pool.QueryRow(ctx, accountClaimProbe, now, c.lease).Scan(&claimed,
		&c.scope.TenantID, &c.scope.Mode, &c.id, &c.email, &c.sealed, &c.provider, &c.failures)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, false, nil
	case err != nil || !claimed:
		return nil, err == nil, err
	}
	return &c, true, nil
}

// endLapsed ends, in batches, the quarantines that passed of accounts
// whose probes are off.
func (p *Prober) endLapsed(ctx context.Context) error {
	for {
		n, err := p.cfg.Store.EndLapsedQuarantines(ctx, p.cfg.Now().UTC())
		if err != nil || n < 100 {
			return err
		}
	}
}

// probe runs one probe and records its outcome.
func (p *Prober) probe(ctx context.Context, d probeDueAccount) (bool, error) {
	st := p.cfg.Store
	acct, err := st.openCredential(d.scope, d.email, d.provider, d.sealed)
	if err != nil { // no probe can mend that: only fresh cookies do
		p.outcome("unreadable")
		return false, st.InTx(ctx, st.pool, func(tx pgx.Tx) error {
			if err := st.MarkError(ctx, tx, d.scope, d.id, unreadableReason, false, p.cfg.Now().UTC()); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, accountProbeStop, d.scope.TenantID, d.id, d.lease)
			return err
		})
	}
	perr := p.cfg.Provider.Probe(ctx, acct)
	if ctx.Err() != nil {
		return false, nil // shutting down: the lease lapses and the probe runs again
	}
	now := p.cfg.Now().UTC()
	if perr == nil {
		ok := false
		err := st.InTx(ctx, st.pool, func(tx pgx.Tx) error {
			var err error
			ok, err = st.recover(ctx, tx, d, now)
			return err
		})
		if ok {
			p.outcome("recovered")
			p.log.Info("probe succeeded; account back in rotation", "account", d.email)
		}
		return ok, err
	}
	p.outcome("failed")
	p.log.Warn("probe failed; account stays out of rotation", "account", d.email,
		"class", provider.ClassOf(perr).String(), "err", perr)
	return false, st.InTx(ctx, st.pool, func(tx pgx.Tx) error {
		return p.failed(ctx, tx, d, perr, now)
	})
}

const (
	accountRecover = `
WITH old AS (
	SELECT id, status = 'error' OR quarantined_until IS NOT NULL AS out FROM accounts
	WHERE tenant_id = $1 AND id = $2 AND probe_lock_until = $3 FOR UPDATE
)
UPDATE accounts a SET status = 'active', status_reason = NULL, quarantined_until = NULL,
	quarantine_reason = NULL, consecutive_failures = 0, probe_at = NULL, probe_failures = 0,
	probe_lock_until = NULL, health_since = CASE WHEN old.out THEN $4 ELSE a.health_since END
FROM old WHERE a.tenant_id = $1 AND a.id = old.id
RETURNING old.out`

	// accountProbeFailed plans the next probe; a rate-limited probe of a
	// quarantined account ($5) lengthens the quarantine to match.
	accountProbeFailed = `
UPDATE accounts SET probe_failures = probe_failures + 1, probe_at = $4, probe_lock_until = NULL,
	quarantined_until = CASE WHEN $5 AND quarantined_until IS NOT NULL THEN greatest(quarantined_until, $4)
		ELSE quarantined_until END
WHERE tenant_id = $1 AND id = $2 AND probe_lock_until = $3`

	// accountProbeStop releases the lease and plans no further probe:
	// the account is in error for a cause only fresh cookies mend.
	accountProbeStop = `UPDATE accounts SET probe_lock_until = NULL, probe_at = NULL WHERE tenant_id = $1 AND id = $2 AND probe_lock_until = $3`
)

// recover returns a probed account to rotation; false if the lease was
// lost meanwhile or the account was not out of rotation.
func (s *Store) recover(ctx context.Context, tx pgx.Tx, d probeDueAccount, now time.Time) (bool, error) {
	var out bool
	err := tx.QueryRow(ctx, accountRecover, d.scope.TenantID, d.id, d.lease, now).Scan(&out)
	if err != nil || !out {
		return false, ignoreGone(err)
	}
	return true, s.record(ctx, tx, Event{Scope: d.scope, AccountID: d.id, Email: d.email, Kind: EventRecovered,
		Reason: "probe_succeeded", Message: "a probe succeeded; the account is back in rotation", At: now})
}

// failed records a failed probe: a refusal of the credentials puts the
// account in error; anything else plans the next probe on a growing
// backoff, or when the upstream said to come back.
func (p *Prober) failed(ctx context.Context, tx pgx.Tx, d probeDueAccount, perr error, now time.Time) error {
	st := p.cfg.Store
	if provider.ClassOf(perr) == provider.ClassAuth {
		if err := st.MarkError(ctx, tx, d.scope, d.id, "probe refused the credentials: "+errorText(perr), true, now); err != nil {
			return err
		}
	}
	next := now.Add(st.probeDelay(d.failures + 1))
	limited := provider.ClassOf(perr) == provider.ClassRateLimited
	if limited {
		wait := provider.RetryAfterOf(perr)
		if wait <= 0 {
			wait = p.cfg.Quarantine
		}
		next = now.Add(wait)
	}
	_, err := tx.Exec(ctx, accountProbeFailed, d.scope.TenantID, d.id, d.lease, next, limited)
	return err
}

// errorText is the user-safe part of a provider error.
func errorText(err error) string {
	if pe, ok := errors.AsType[*provider.Error](err); ok && pe.Message != "" {
		return pe.Message
	}
	return provider.ClassOf(err).String()
}

const accountsNoteExpired = `
WITH due AS (
	SELECT tenant_id, id FROM accounts
	WHERE enabled AND refresh_token_expires_at <= $1
		AND expired_noted IS DISTINCT FROM refresh_token_expires_at
	ORDER BY refresh_token_expires_at
	LIMIT 100 FOR UPDATE SKIP LOCKED
)
UPDATE accounts a SET expired_noted = a.refresh_token_expires_at
FROM due WHERE a.tenant_id = due.tenant_id AND a.id = due.id
RETURNING a.tenant_id, a.mode, a.id, a.email, a.refresh_token_expires_at`

// noteExpired records an "expired" event for each enabled account whose
// refresh token lapsed since it was last looked at, once per expiry.
func (p *Prober) noteExpired(ctx context.Context) error {
	st := p.cfg.Store
	for {
		n := 0
		err := st.InTx(ctx, st.pool, func(tx pgx.Tx) error {
			now := p.cfg.Now().UTC()
			rows, err := tx.Query(ctx, accountsNoteExpired, now)
			if err != nil {
				return err
			}
			evs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Event, error) {
				ev := Event{Kind: EventExpired, Reason: "refresh_token_expired", At: now}
				var until time.Time
				err := row.Scan(&ev.Scope.TenantID, &ev.Scope.Mode, &ev.AccountID, &ev.Email, &until)
				ev.Until = &until
				ev.Message = "lt_refresh_token expired at " + until.UTC().Format(time.RFC3339) + "; register fresh cookies"
				return ev, err
			})
			if err != nil {
				return err
			}
			n = len(evs)
			for _, ev := range evs {
				if err := st.record(ctx, tx, ev); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil || n < 100 {
			return err
		}
	}
}

func (p *Prober) outcome(o string) {
	if p.cfg.OnOutcome != nil {
		p.cfg.OnOutcome(o)
	}
}
