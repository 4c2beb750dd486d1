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
	// (POOLGATE_BREAKER_QUARANTINE, default 1m).
	BreakerFailures   int
	BreakerQuarantine time.Duration
	// ProbeBase and ProbeMax shape the backoff between probes of an
	// account in error, and after a failed probe (defaults 1m and 1h).
	ProbeBase, ProbeMax time.Duration
}

// DefaultHealth is HealthConfig's defaults.
var DefaultHealth = HealthConfig{BreakerFailures: 5, BreakerQuarantine: time.Minute, ProbeBase: time.Minute, ProbeMax: time.Hour}

// WithHealth returns s tuned by h (zero fields keep their defaults).
func (s *Store) WithHealth(h HealthConfig) *Store {
	d := DefaultHealth
	if h.BreakerFailures > 0 {
		d.BreakerFailures = h.BreakerFailures
	}
	if h.BreakerQuarantine > 0 {
		d.BreakerQuarantine = h.BreakerQuarantine
	}
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
RETURNING a.mode, a.email, old.until IS NULL AND a.status = 'active', a.quarantined_until`

// Quarantine keeps account id out of rotation until until at least (a
// longer quarantine already in force is kept), for reason (a Quarantine*
// code); past until, a probe must succeed before it takes jobs again.
func (s *Store) Quarantine(ctx context.Context, tx pgx.Tx, scope tenant.Scope, id int64, reason string, until, now time.Time) error {
	var (
		ev      = Event{Scope: scope, AccountID: id, Kind: EventQuarantined, Reason: reason, At: now}
		entered bool
		end     time.Time
	)
	err := tx.QueryRow(ctx, accountEnterQuarantine, scope.TenantID, id, until, reason, now).
		Scan(&ev.Scope.Mode, &ev.Email, &entered, &end)
	if err != nil || !entered {
		return ignoreGone(err)
	}
	ev.Until = &end
	ev.Message = "quarantined (" + reason + ") until " + end.UTC().Format(time.RFC3339) + "; a probe returns it to rotation after that"
	return s.record(ctx, tx, ev)
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
// tx so callers can make it part of the transition that discovered it.
// An account already in error is left as it is: its reason, since, probe
// backoff and updated_at (the error alert's identity) stay.
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

const accountCountFailure = `
UPDATE accounts SET consecutive_failures = consecutive_failures + 1
WHERE tenant_id = $1 AND id = $2 AND quarantined_until IS NULL
RETURNING consecutive_failures`

// CountFailure counts a transient failure against the account's circuit
// breaker and quarantines it once BreakerFailures happened in a row. It
// rides the transaction that retries the failed job.
func (s *Store) CountFailure(ctx context.Context, tx pgx.Tx, scope tenant.Scope, id int64, now time.Time) error {
	var n int
	err := tx.QueryRow(ctx, accountCountFailure, scope.TenantID, id).Scan(&n)
	if err != nil || n < s.health.BreakerFailures {
		return ignoreGone(err)
	}
	return s.Quarantine(ctx, tx, scope, id, QuarantineConsecutiveFailures, now.Add(s.health.BreakerQuarantine), now)
}

// accountsResetFailures resets the breaker of the accounts that had
// failures. Unlike a slot release it waits for the row lock: skipping a
// row a placement holds would leave failures counted across a success and
// trip the breaker wrongly. Only accounts with failures are locked at all
// (the WHERE reads the others without a lock), and those are few.
const accountsResetFailures = `
UPDATE accounts a SET consecutive_failures = 0
FROM unnest($1::bigint[], $2::bigint[]) AS t (tenant_id, id)
WHERE a.id = ANY($2) AND a.tenant_id = t.tenant_id AND a.id = t.id AND a.consecutive_failures > 0`

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

// record stores ev and runs the health hooks, in tx.
func (s *Store) record(ctx context.Context, tx pgx.Tx, ev Event) error {
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
	return nil
}

// HealthViewLen is how many of an account's latest events its view shows.
const HealthViewLen = 20

const healthEventsOf = `
SELECT account_id, id, kind, reason, message, until, at FROM (
	SELECT e.*, row_number() OVER (PARTITION BY account_id ORDER BY id DESC) AS n
	FROM account_health_events e
	WHERE tenant_id = $1 AND account_id = ANY($2)
) latest WHERE n <= $3
ORDER BY account_id, id DESC`

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
