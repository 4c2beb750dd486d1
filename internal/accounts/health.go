package accounts

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/backoff"
	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/tenant"
)

// This file holds the transitions of an account's health and the events
// they record. Every transition runs in the caller's transaction (the
// scheduler's retry, the prober's outcome), locks the account row, and
// records an event only when the state really changes, so a transition
// seen by several replicas at once is one event and one alert.

// Why an account is quarantined.
const (
	QuarantineRateLimited         = "rate_limited"         // the upstream throttled it (429)
	QuarantineDailyQuota          = "daily_quota"          // its daily quota is spent until the reset
	QuarantineUpstreamUnavailable = "upstream_unavailable" // the upstream asked for a pause (503 with Retry-After)
	QuarantineConsecutiveFailures = "consecutive_failures" // the circuit breaker tripped
)

// EventKind names a health transition.
type EventKind string

// Health transitions.
const (
	EventQuarantined EventKind = "quarantined"
	EventError       EventKind = "error"
	EventRecovered   EventKind = "recovered"
	EventExpired     EventKind = "expired"
)

// Event is one health transition of an account.
type Event struct {
	ID        int64
	Scope     tenant.Scope
	AccountID int64
	Email     string
	Kind      EventKind
	// Reason is a short code: the quarantine reason, "credentials_refused",
	// "probe_succeeded" or "refresh_token_expired".
	Reason  string
	Message string     // for people; never a credential
	Until   *time.Time // a quarantine's end, or the expiry that passed
	At      time.Time
}

// HealthHook runs in the transaction that records a health event: other
// domains' effects of it (alerts), wired in main.
type HealthHook func(ctx context.Context, tx pgx.Tx, ev Event) error

// HealthConfig tunes the circuit breaker and the probes.
type HealthConfig struct {
	// BreakerFailures consecutive transient failures quarantine an account
	// (POOLGATE_BREAKER_FAILURES, default 5) for BreakerQuarantine
	// (POOLGATE_BREAKER_QUARANTINE, default 1m), doubled for each repeated
	// trip since the account last finished a job, up to
	// BreakerQuarantineMax (POOLGATE_BREAKER_QUARANTINE_MAX, default 1h).
	BreakerFailures                         int
	BreakerQuarantine, BreakerQuarantineMax time.Duration
	// ProbeBase and ProbeMax shape the backoff between probes of an
	// account in error, and after a failed probe (defaults 1m and 1h).
	ProbeBase, ProbeMax time.Duration
}

// DefaultHealth is HealthConfig's defaults.
var DefaultHealth = HealthConfig{BreakerFailures: 5, BreakerQuarantine: time.Minute, BreakerQuarantineMax: time.Hour,
	ProbeBase: time.Minute, ProbeMax: time.Hour}

// WithHealth returns s tuned by h (zero fields keep their defaults).
func (s *Store) WithHealth(h HealthConfig) *Store {
	d := DefaultHealth
	if h.BreakerFailures > 0 {
		d.BreakerFailures = h.BreakerFailures
	}
	if h.BreakerQuarantine > 0 {
		d.BreakerQuarantine = h.BreakerQuarantine
	}
	if h.BreakerQuarantineMax > 0 {
		d.BreakerQuarantineMax = h.BreakerQuarantineMax
	}
	d.BreakerQuarantineMax = max(d.BreakerQuarantineMax, d.BreakerQuarantine)
	if h.ProbeBase > 0 {
		d.ProbeBase = h.ProbeBase
	}
	if h.ProbeMax > 0 {
		d.ProbeMax = h.ProbeMax
	}
	s.health = d
	return s
}

// probeDelay is how long after its failures-th failed probe an account is
// probed again.
func (s *Store) probeDelay(failures int) time.Duration {
	return backoff.Exp(failures, s.health.ProbeBase, s.health.ProbeMax)
}

// breakerQuarantine is how long the breaker's trips-th repeated trip (0:
// the first since the account last finished a job) quarantines it. A
// cheap probe can pass while submissions still fail, so an account that
// trips again and again rests longer each time instead of flapping.
func (s *Store) breakerQuarantine(trips int) time.Duration {
	d := s.health.BreakerQuarantine << min(max(trips, 0), 30)
	if d > s.health.BreakerQuarantineMax || d <= 0 {
		d = s.health.BreakerQuarantineMax
	}
	return d
}

// eventTx is a transaction that keeps the health events recorded in it,
// to announce them once it has committed.
type eventTx struct {
	pgx.Tx
	events []Event
	after  []func()
}

// AfterCommit runs fn once tx, the transaction a HealthHook was given, has
// committed, after the AfterHealth hooks; never if it rolls back. A hook
// announces with it what must not be announced for a transition that did
// not happen (a log line, a metric).
func AfterCommit(tx pgx.Tx, fn func()) error {
	et, ok := tx.(*eventTx)
	if !ok {
		return errOutsideInTx
	}
	et.after = append(et.after, fn)
	return nil
}

// InTx runs fn in a transaction of db. Health transitions (Quarantine,
// MarkError, CountFailure) must run in one: once it has committed, the
// events fn recorded go to the AfterHealth hooks (metrics), so a
// transition whose transaction rolled back is never counted.
func (s *Store) InTx(ctx context.Context, db dbx.Beginner, fn func(tx pgx.Tx) error) error {
	var et *eventTx
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		et = &eventTx{Tx: tx}
		return fn(et)
	})
	if err != nil {
		return err
	}
	for _, ev := range et.events {
		for _, hook := range s.hooks.AfterHealth {
			hook(ev)
		}
	}
	for _, fn := range et.after {
		fn()
	}
	return nil
}

// errOutsideInTx is a programming error: a health transition must run in
// Store.InTx, or its event would never be announced.
var errOutsideInTx = errors.New("accounts: health transition outside Store.InTx")

const accountEnterQuarantine = `
WITH old AS (
	SELECT id, quarantined_until AS until FROM accounts WHERE tenant_id = $1 AND id = $2 FOR UPDATE
)
UPDATE accounts a SET
	quarantined_until = greatest(old.until, $3),
	quarantine_reason = CASE WHEN old.until IS NULL OR $3 >= old.until THEN $4 ELSE a.quarantine_reason END,
	probe_at = CASE WHEN a.status = 'error' THEN a.probe_at ELSE greatest(old.until, $3) END,
	probe_failures = 0,
	consecutive_failures = 0,
	health_since = CASE WHEN old.until IS NULL THEN $5 ELSE a.health_since END
FROM old WHERE a.tenant_id = $1 AND a.id = old.id
RETURNING a.mode, a.email, old.until IS NULL AND a.status = 'active', a.quarantined_until, a.probe_enabled`

// Quarantine keeps account id out of rotation until until at least (a
// longer quarantine already in force is kept), for reason (a Quarantine*
// code); past until, a probe must succeed before it takes jobs again
// (unless its probes are off: then it is back at until). It runs in a
// transaction of InTx.
func (s *Store) Quarantine(ctx context.Context, tx pgx.Tx, scope tenant.Scope, id int64, reason string, until, now time.Time) error {
	if err := s.endLapsed(ctx, tx, scope, id, now); err != nil {
		return err
	}
	var (
		ev      = Event{Scope: scope, AccountID: id, Kind: EventQuarantined, Reason: reason, At: now}
		entered bool
		probes  bool
		end     time.Time
	)
	err := tx.QueryRow(ctx, accountEnterQuarantine, scope.TenantID, id, until, reason, now).
		Scan(&ev.Scope.Mode, &ev.Email, &entered, &end, &probes)
	if err != nil || !entered {
		return ignoreGone(err)
	}
	ev.Until = &end
	ev.Message = "quarantined (" + reason + ") until " + end.UTC().Format(time.RFC3339)
	if probes {
		ev.Message += "; a probe returns it to rotation after that"
	} else {
		ev.Message += "; probes are off, so it returns to rotation then"
	}
	return s.record(ctx, tx, ev)
}

// A quarantine of an account whose probes are off ends on the clock: the
// eligibility rule lets the account back at once, and the breaker, the
// next quarantine's event and the "recovered" event need the quarantine
// cleared too. endLapsed does that for one account, in the transaction
// that is about to count a failure or quarantine it; the prober's sweep
// (EndLapsedQuarantines) for the others, so "recovered" is said in time.
const (
	lapsedEnd = `
UPDATE accounts a SET quarantined_until = NULL, quarantine_reason = NULL,
	probe_at = CASE WHEN a.status = 'error' THEN a.probe_at END,
	health_since = CASE WHEN a.status = 'active' THEN $1 ELSE a.health_since END
FROM lapsed WHERE a.tenant_id = lapsed.tenant_id AND a.id = lapsed.id
RETURNING a.tenant_id, a.mode, a.id, a.email, lapsed.until, a.enabled AND a.status = 'active'`

	accountEndLapsed = `
WITH lapsed AS (
	SELECT tenant_id, id, quarantined_until AS until FROM accounts
	WHERE tenant_id = $2 AND id = $3 AND NOT probe_enabled AND quarantined_until <= $1
	FOR UPDATE
)` + lapsedEnd

	accountsEndLapsed = `
WITH lapsed AS (
	SELECT tenant_id, id, quarantined_until AS until FROM accounts
	WHERE quarantined_until <= $1 AND NOT probe_enabled
	ORDER BY quarantined_until
	LIMIT 100 FOR UPDATE SKIP LOCKED
)` + lapsedEnd
)

func (s *Store) endLapsed(ctx context.Context, tx pgx.Tx, scope tenant.Scope, id int64, now time.Time) error {
	_, err := s.endLapsedRows(ctx, tx, now, accountEndLapsed, scope.TenantID, id)
	return err
}

// endLapsedRows runs an end-lapsed statement and records a "recovered"
// event for each account it returned to rotation; it reports how many
// quarantines it ended.
func (s *Store) endLapsedRows(ctx context.Context, tx pgx.Tx, now time.Time, sql string, args ...any) (int, error) {
	rows, err := tx.Query(ctx, sql, append([]any{now}, args...)...)
	if err != nil {
		return 0, err
	}
	type ended struct {
		ev   Event
		back bool
	}
	all, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ended, error) {
		e := ended{ev: Event{Kind: EventRecovered, Reason: "quarantine_ended", At: now}}
		var until time.Time
		err := row.Scan(&e.ev.Scope.TenantID, &e.ev.Scope.Mode, &e.ev.AccountID, &e.ev.Email, &until, &e.back)
		e.ev.Message = "the quarantine ended at " + until.UTC().Format(time.RFC3339) +
			"; probes are off for this account, so it is back in rotation"
		return e, err
	})
	if err != nil {
		return 0, err
	}
	for _, e := range all {
		if !e.back { // disabled or in error: not back in rotation
			continue
		}
		if err := s.record(ctx, tx, e.ev); err != nil {
			return 0, err
		}
	}
	return len(all), nil
}

// EndLapsedQuarantines ends up to 100 quarantines that passed of accounts
// whose probes are off, recording "recovered" for each account that is
// back in rotation, and reports how many it ended.
func (s *Store) EndLapsedQuarantines(ctx context.Context, now time.Time) (int, error) {
	n := 0
	err := s.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		n, err = s.endLapsedRows(ctx, tx, now, accountsEndLapsed)
		return err
	})
	return n, err
}

const accountEnterError = `
WITH old AS (
	SELECT id, status FROM accounts WHERE tenant_id = $1 AND mode = $2 AND id = $3 FOR UPDATE
)
UPDATE accounts a SET status = 'error', status_reason = $4, updated_at = $5, health_since = $5,
	probe_at = $6, probe_failures = 0, consecutive_failures = 0
FROM old WHERE a.tenant_id = $1 AND a.id = old.id AND old.status <> 'error'
RETURNING a.email`

// MarkError takes an account out of rotation because the upstream refused
// its credentials; registering fresh cookies, or (when probe is true: the
// refusal may be temporary) a successful probe, puts it back. It runs in
// tx, a transaction of InTx, so callers can make it part of the
// transition that discovered it. An account already in error is left as
// it is: its reason, since, probe backoff and updated_at (the error
// alert's identity) stay.
//
// Without probe no probe is planned, even while a quarantine runs (a
// probe could not mend what only fresh cookies do); the quarantine stays,
// and registering fresh cookies plans its probe.
func (s *Store) MarkError(ctx context.Context, tx pgx.Tx, scope tenant.Scope, id int64, reason string, probe bool, now time.Time) error {
	var probeAt *time.Time
	if probe {
		t := now.Add(s.probeDelay(0))
		probeAt = &t
	}
	ev := Event{Scope: scope, AccountID: id, Kind: EventError, Reason: "credentials_refused", Message: reason, At: now}
	err := tx.QueryRow(ctx, accountEnterError, scope.TenantID, scope.Mode, id, reason, now, probeAt).Scan(&ev.Email)
	if err != nil {
		return ignoreGone(err) // gone, or in error already
	}
	return s.record(ctx, tx, ev)
}

const (
	// accountCountFailure folds the breaker resets successes left for the
	// account (see ResetFailures), then counts the failure unless the
	// account is quarantined. The row lock it takes is the retry's, which
	// holds it anyway.
	accountCountFailure = `
WITH reset AS (
	DELETE FROM account_breaker_resets WHERE tenant_id = $1 AND account_id = $2 RETURNING 1
), r AS (
	SELECT EXISTS (SELECT 1 FROM reset) AS yes
)
UPDATE accounts a SET
	consecutive_failures = CASE WHEN r.yes THEN 0 ELSE a.consecutive_failures END
		+ CASE WHEN a.quarantined_until IS NULL THEN 1 ELSE 0 END,
	breaker_trips = CASE WHEN r.yes THEN 0 ELSE a.breaker_trips END
FROM r WHERE a.tenant_id = $1 AND a.id = $2
RETURNING a.consecutive_failures, a.breaker_trips, a.quarantined_until IS NULL`

	accountBreakerTripped = `UPDATE accounts SET breaker_trips = breaker_trips + 1 WHERE tenant_id = $1 AND id = $2`
)

// CountFailure counts a transient failure against the account's circuit
// breaker and quarantines it once BreakerFailures happened in a row, for
// longer on each repeated trip (see breakerQuarantine). It rides the
// transaction that retries the failed job (one of InTx).
func (s *Store) CountFailure(ctx context.Context, tx pgx.Tx, scope tenant.Scope, id int64, now time.Time) error {
	if err := s.endLapsed(ctx, tx, scope, id, now); err != nil {
		return err
	}
	var (
		n, trips int
		counted  bool
	)
	err := tx.QueryRow(ctx, accountCountFailure, scope.TenantID, id).Scan(&n, &trips, &counted)
	if err != nil || !counted || n < s.health.BreakerFailures {
		return ignoreGone(err)
	}
	if _, err := tx.Exec(ctx, accountBreakerTripped, scope.TenantID, id); err != nil {
		return err
	}
	return s.Quarantine(ctx, tx, scope, id, QuarantineConsecutiveFailures, now.Add(s.breakerQuarantine(trips)), now)
}

// accountsResetFailures leaves a breaker reset for each account that has
// failures or trips counted and no reset pending. It reads the accounts
// without locking them and inserts rows no other statement locks, so a
// completer never waits for a placement (or another completer), and no
// placement skips an account because a job on it just succeeded. The
// next CountFailure on the account folds the reset before it counts.
const accountsResetFailures = `
INSERT INTO account_breaker_resets (tenant_id, account_id)
SELECT DISTINCT a.tenant_id, a.id
FROM unnest($1::bigint[], $2::bigint[]) AS t (tenant_id, id)
JOIN accounts a ON a.tenant_id = t.tenant_id AND a.id = t.id
WHERE a.id = ANY($2) AND (a.consecutive_failures > 0 OR a.breaker_trips > 0)
	AND NOT EXISTS (SELECT 1 FROM account_breaker_resets r WHERE r.tenant_id = a.tenant_id AND r.account_id = a.id)`

// ResetFailures resets the circuit breaker of the accounts (tenantIDs[i],
// ids[i]) after a success on each. It rides the completer's batch: a row
// without failures costs an index probe and no write.
func ResetFailures(ctx context.Context, db dbx.DBTX, tenantIDs, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := db.Exec(ctx, accountsResetFailures, tenantIDs, ids)
	return err
}

// accountBreakerResetsOrphaned drops the pending resets of deleted
// accounts (their ids are never used again; this only keeps the table
// small).
const accountBreakerResetsOrphaned = `
DELETE FROM account_breaker_resets r
WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.tenant_id = r.tenant_id AND a.id = r.account_id)`

const (
	healthEventInsert = `
INSERT INTO account_health_events (tenant_id, account_id, kind, reason, message, until, at)
VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`

	// healthEventsPrune keeps an account's newest keptEvents events.
	healthEventsPrune = `
DELETE FROM account_health_events WHERE tenant_id = $1 AND account_id = $2 AND id <= (
	SELECT id FROM account_health_events WHERE tenant_id = $1 AND account_id = $2
	ORDER BY id DESC OFFSET 100 LIMIT 1)`
)

// record stores ev and runs the health hooks, in tx; InTx announces it
// once tx has committed.
func (s *Store) record(ctx context.Context, tx pgx.Tx, ev Event) error {
	et, ok := tx.(*eventTx)
	if !ok {
		return errOutsideInTx
	}
	if err := tx.QueryRow(ctx, healthEventInsert, ev.Scope.TenantID, ev.AccountID, ev.Kind, ev.Reason,
		ev.Message, ev.Until, ev.At).Scan(&ev.ID); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, healthEventsPrune, ev.Scope.TenantID, ev.AccountID); err != nil {
		return err
	}
	for _, hook := range s.hooks.OnHealth {
		if err := hook(ctx, tx, ev); err != nil {
			return err
		}
	}
	et.events = append(et.events, ev)
	return nil
}

// HealthViewLen is how many of an account's latest events its view shows.
const HealthViewLen = 20

// healthEventsOf reads the latest $3 events of each account, each an
// index range read that stops there.
const healthEventsOf = `
SELECT e.account_id, e.id, e.kind, e.reason, e.message, e.until, e.at
FROM unnest($2::bigint[]) AS a (id)
CROSS JOIN LATERAL (
	SELECT * FROM account_health_events e
	WHERE e.tenant_id = $1 AND e.account_id = a.id
	ORDER BY e.id DESC LIMIT $3
) e
ORDER BY e.account_id, e.id DESC`

// attachHealth fills in the latest events of each of as, newest first.
func (s *Store) attachHealth(ctx context.Context, scope tenant.Scope, as []Account) error {
	if len(as) == 0 {
		return nil
	}
	ids := make([]int64, len(as))
	at := make(map[int64]int, len(as))
	for i, a := range as {
		ids[i], at[a.ID] = a.ID, i
	}
	rows, err := s.pool.Query(ctx, healthEventsOf, scope.TenantID, ids, HealthViewLen)
	if err != nil {
		return dbx.Classify(err)
	}
	var (
		ev      Event
		account int64
	)
	_, err = pgx.ForEachRow(rows, []any{&account, &ev.ID, &ev.Kind, &ev.Reason, &ev.Message, &ev.Until, &ev.At}, func() error {
		i := at[account]
		e := ev
		e.Scope, e.AccountID, e.Email = scope, account, as[i].Email
		as[i].Health = append(as[i].Health, e)
		return nil
	})
	return dbx.Classify(err)
}

// ignoreGone treats a deleted account as nothing to do.
func ignoreGone(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	return err
}
