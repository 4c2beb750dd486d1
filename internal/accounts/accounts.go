// Package accounts is the pool of upstream accounts: registration from a
// browser cookie string, encrypted storage, and the health an account shows.
package accounts

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/cookies"
	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/secret"
	"github.com/poolgate/poolgate/internal/tenant"
)

// DefaultMaxJobs is an account's concurrency limit when registration does
// not name one.
const DefaultMaxJobs = 20

// Status is an account's health as users see it, derived from stored facts
// at read time so it can never go stale.
type Status string

// Statuses, in the order they take precedence.
const (
	StatusDisabled Status = "disabled" // switched off by the operator
	StatusError    Status = "error"    // the upstream refused its credentials; re-register it
	StatusExpired  Status = "expired"  // the refresh token has lapsed; re-register it
	// StatusQuarantined: resting (QuarantineReason) until QuarantinedUntil;
	// after that a probe must succeed before it takes jobs again.
	StatusQuarantined Status = "quarantined"
	StatusRefreshing  Status = "refreshing" // lt_token has lapsed; it needs a token refresh before taking jobs
	StatusExpiring    Status = "expiring"   // works, but the refresh token lapses soon: register fresh cookies
	StatusActive      Status = "active"
)

// Account is one upstream account, with its cookie masked.
type Account struct {
	ID int64
	// Email is the account's identity: its email for LTX Studio, its name
	// (or key fingerprint) for an LTX-2 API key.
	Email string
	// Provider is the upstream it belongs to (provider.NameLTXStudio or
	// provider.NameLTXAPI).
	Provider              string
	Cookie                map[string]string // every cookie, secrets replaced by cookies.Secured; empty for API keys
	APIKey                string            // cookies.Secured for an API-key account, "" otherwise
	MaxJobs               int
	Enabled               bool
	Status                Status
	Reason                string // why Status is not active; "" when it is
	Running               int
	UpdatedAt             time.Time
	TokenExpiresAt        *time.Time
	RefreshTokenExpiresAt *time.Time
	LastRefreshAt         *time.Time
	NextRefreshAt         *time.Time // when the refresher will renew lt_token
	// QuarantinedUntil is when a quarantined account may be probed; nil
	// when it is not quarantined. Past it, the account stays out of
	// rotation until a probe succeeds (unless Probe is off).
	QuarantinedUntil *time.Time
	QuarantineReason string // a Quarantine* code while quarantined
	// StatusCode is a short code for Status's cause ("" while active).
	StatusCode string
	// Since is when the account entered Status, where known.
	Since *time.Time
	// Probe is whether the prober may probe the account (the operator's
	// switch); NextProbeAt is when it will, nil if none is planned.
	Probe       bool
	NextProbeAt *time.Time
	// Health is the account's latest health events, newest first (Get and
	// List fill it in).
	Health []Event
}

// Registration is what an operator sends to add or update an account.
type Registration struct {
	Cookie  string
	MaxJobs *int   // nil: DefaultMaxJobs for a new account, unchanged for an existing one
	Email   string // used when lt_token carries no email claim
}

// Patch changes an account's settings; nil fields stay as they are.
type Patch struct {
	MaxJobs *int
	Enabled *bool
	Probe   *bool
}

// Store keeps accounts in Postgres with their cookies sealed.
type Store struct {
	pool   *pgxpool.Pool
	box    *secret.Box
	now    func() time.Time
	life   Lifecycle
	creds  credCache
	hooks  Hooks
	health HealthConfig
}

// Lifecycle holds the credential timings the account view reports.
type Lifecycle struct {
	// RefreshLead is how long before lt_token expires it is refreshed.
	RefreshLead time.Duration
	// ExpiringWithin is how close the refresh token's expiry must be for
	// the account to show status expiring (the largest alert threshold).
	ExpiringWithin time.Duration
}

// DefaultLifecycle matches the defaults of POOLGATE_REFRESH_LEAD and
// POOLGATE_ALERT_THRESHOLDS.
var DefaultLifecycle = Lifecycle{RefreshLead: 10 * time.Minute, ExpiringWithin: 7 * 24 * time.Hour}

// NewStore returns a Store sealing cookies with box.
func NewStore(pool *pgxpool.Pool, box *secret.Box, now func() time.Time) *Store {
	return &Store{pool: pool, box: box, now: now, life: DefaultLifecycle, creds: credCache{}, health: DefaultHealth}
}

// WithLifecycle returns s reporting statuses and refresh times by l.
func (s *Store) WithLifecycle(l Lifecycle) *Store {
	s.life = l
	return s
}

// cookieAAD binds a sealed cookie to its row: a ciphertext copied into
// another tenant's or email's row fails to open.
func cookieAAD(scope tenant.Scope, email string) []byte {
	return []byte("account-cookie\x00" + strconv.FormatInt(scope.TenantID, 10) + "\x00" + string(scope.Mode) + "\x00" + email)
}

// heldSlots is heldByC for an account of the unaliased accounts table. The
// RETURNING of the insert that registers an account runs before the
// trigger that adds its capacity row, hence the coalesce.
const heldSlots = `coalesce((SELECT ` + heldByC + ` FROM account_capacity c
	WHERE c.tenant_id = accounts.tenant_id AND c.id = accounts.id), 0)`

// accountColumns reads an account of the unaliased accounts table.
const accountColumns = `id, email, cookie, max_jobs, enabled, status, status_reason, ` + heldSlots + `,
	updated_at, token_expires_at, refresh_token_expires_at, last_refresh_at, provider, ` + healthColumns

// healthColumns reads an account's health facts (see scanHealth).
const healthColumns = `quarantined_until, coalesce(quarantine_reason, ''), health_since, probe_enabled, probe_at`

const accountUpsert = `
INSERT INTO accounts (tenant_id, mode, email, cookie, max_jobs, token_expires_at,
                      refresh_token_expires_at, created_at, updated_at)
VALUES ($1, $2, $3, $4, coalesce($5::integer, $9::integer), $6, $7, $8, $8)
ON CONFLICT (tenant_id, mode, email) DO UPDATE SET
	cookie = EXCLUDED.cookie,
	max_jobs = coalesce($5::integer, accounts.max_jobs),
	token_expires_at = EXCLUDED.token_expires_at,
	refresh_token_expires_at = EXCLUDED.refresh_token_expires_at,
	status = 'active',
	status_reason = NULL,
	refresh_failures = 0,
	refresh_retry_at = NULL,
	-- a quarantine's probe is due at its end, whatever came in between
	-- (an error that planned none, failed probes' backoff)
	probe_at = accounts.quarantined_until,
	probe_failures = 0,
	health_since = CASE WHEN accounts.status = 'error' THEN EXCLUDED.updated_at ELSE accounts.health_since END,
	updated_at = EXCLUDED.updated_at
RETURNING ` + accountColumns

// Register adds the account the cookie belongs to, or replaces the cookie
// of an account already registered under that email (which also clears an
// error status: fresh cookies are the fix for it).
func (s *Store) Register(ctx context.Context, scope tenant.Scope, r Registration) (Account, error) {
	creds, err := cookies.ParseLTX(r.Cookie)
	if err != nil {
		return Account{}, cookieError(err)
	}
	email, err := accountEmail(creds.Email, r.Email)
	if err != nil {
		return Account{}, err
	}
	sealed := s.box.Seal([]byte(creds.Jar.String()), cookieAAD(scope, email))
	now := s.now().UTC()
	return s.upsert(ctx, scope, now, accountUpsert, scope.TenantID, scope.Mode, email, sealed,
		r.MaxJobs, timeOrNil(creds.TokenExpiry), timeOrNil(creds.RefreshTokenExpiry), now, DefaultMaxJobs)
}

// upsert runs an upsert statement returning accountColumns and the
// register hooks, in one transaction.
func (s *Store) upsert(ctx context.Context, scope tenant.Scope, now time.Time, sql string, args ...any) (Account, error) {
	var a Account
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if a, err = s.scanAccount(tx.QueryRow(ctx, sql, args...), scope); err != nil {
			return err
		}
		for _, hook := range s.hooks.OnRegister {
			if err := hook(ctx, tx, scope, a.ID, a.Email, now); err != nil {
				return err
			}
		}
		if len(s.hooks.OnRegister) > 0 { // a hook may have adopted running jobs
			return tx.QueryRow(ctx, accountRunning, scope.TenantID, a.ID).Scan(&a.Running)
		}
		return nil
	})
	if err != nil {
		return Account{}, dbx.Classify(err)
	}
	return a, nil
}

const accountRunning = `SELECT held FROM account_slots WHERE tenant_id = $1 AND id = $2`

// RegisterHook runs in the transaction that registers (or re-registers)
// account id under email: other domains' effects of fresh cookies, wired
// in main (the scheduler adopts jobs still running under the email, alerts
// about the old cookies are resolved).
type RegisterHook func(ctx context.Context, tx pgx.Tx, scope tenant.Scope, id int64, email string, now time.Time) error

// Hooks are the cross-domain effects of account changes.
type Hooks struct {
	OnRegister []RegisterHook
	OnHealth   []HealthHook
	// AfterHealth is told each health event once the transaction that
	// recorded it has committed (metrics count it there).
	AfterHealth []func(Event)
}

// WithHooks returns s running h.
func (s *Store) WithHooks(h Hooks) *Store {
	s.hooks = h
	return s
}

// AddRunning counts n more jobs on account id: jobs adopted from a deleted
// row of the same upstream account, which its maxJobs must count and
// whose ends free these slots.
func AddRunning(ctx context.Context, db dbx.DBTX, scope tenant.Scope, id int64, n int) error {
	if n == 0 {
		return nil
	}
	_, err := db.Exec(ctx, `UPDATE account_capacity SET running = running + $3 WHERE tenant_id = $1 AND id = $2`, scope.TenantID, id, n)
	return err
}

// accountEmail decides which email an account is registered under: the
// token's own claim wins, and a body email that contradicts it is refused
// rather than silently ignored.
func accountEmail(claim, body string) (string, error) {
	body = strings.ToLower(strings.TrimSpace(body))
	if claim != "" && !isAddress(claim) {
		return "", errs.Invalid("invalid_token_email", "the email claim of lt_token is not an email address of at most %d characters", maxEmailLen)
	}
	switch {
	case claim != "" && body != "" && claim != body:
		return "", errs.Invalid("email_mismatch", "email %q does not match the email in lt_token", body)
	case claim != "":
		return claim, nil
	case body != "":
		if !isAddress(body) {
			return "", errs.Fields(errs.FieldError{Field: "email", Message: "must be an email address"})
		}
		return body, nil
	default:
		return "", errs.Invalid("email_required", "lt_token carries no email claim; send the account's email in the email field")
	}
}

// maxEmailLen is the longest address SMTP allows (RFC 5321 path limit).
const maxEmailLen = 254

// isAddress reports whether s is a bare email address (no display name,
// no comments) of printable characters, at most maxEmailLen bytes.
func isAddress(s string) bool {
	if len(s) > maxEmailLen || strings.ContainsFunc(s, func(r rune) bool { return r < 0x21 || r == 0x7f || r == utf8.RuneError }) {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && a.Name == ""
}

// cookieError turns a cookies error into a 400. Their messages never quote
// cookie values, so they can be shown as they are.
func cookieError(err error) error {
	var (
		missing   *cookies.MissingFieldsError
		malformed *cookies.MalformedTokenError
		syntax    *cookies.SyntaxError
	)
	switch {
	case errors.As(err, &missing):
		return &errs.Error{Kind: errs.KindInvalid, Code: "missing_cookie_fields", Message: missing.Error(),
			Details: map[string]any{"missing": missing.Fields}}
	case errors.As(err, &malformed):
		return errs.Invalid("malformed_token", "%s", malformed.Error())
	case errors.As(err, &syntax):
		return errs.Invalid("invalid_cookie", "%s", syntax.Error())
	default:
		return errs.Internal(err)
	}
}

const accountByEmail = `SELECT ` + accountColumns + `
FROM accounts WHERE tenant_id = $1 AND mode = $2 AND email = $3`

// Get returns the account registered under email.
func (s *Store) Get(ctx context.Context, scope tenant.Scope, email string) (Account, error) {
	row := s.pool.QueryRow(ctx, accountByEmail, scope.TenantID, scope.Mode, normalizeEmail(email))
	a, err := s.scanAccount(row, scope)
	if err != nil {
		return a, notFound(err, email)
	}
	list := []Account{a}
	err = s.attachHealth(ctx, scope, list)
	return list[0], err
}

const accountList = `SELECT ` + accountColumns + `
FROM accounts WHERE tenant_id = $1 AND mode = $2 ORDER BY email`

// List returns every account of the scope, ordered by email.
func (s *Store) List(ctx context.Context, scope tenant.Scope) ([]Account, error) {
	rows, err := s.pool.Query(ctx, accountList, scope.TenantID, scope.Mode)
	if err != nil {
		return nil, dbx.Classify(fmt.Errorf("list accounts: %w", err))
	}
	defer rows.Close()
	var out []Account
	for rows.Next() {
		a, err := s.scanAccount(rows, scope)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, dbx.Classify(fmt.Errorf("list accounts: %w", err))
	}
	return out, s.attachHealth(ctx, scope, out)
}

const accountUpdate = `
UPDATE accounts SET
	max_jobs = coalesce($4::integer, max_jobs),
	enabled = coalesce($5::boolean, enabled),
	probe_enabled = coalesce($7::boolean, probe_enabled),
	health_since = CASE WHEN $5::boolean IS DISTINCT FROM enabled AND $5::boolean IS NOT NULL THEN $6 ELSE health_since END,
	updated_at = $6
WHERE tenant_id = $1 AND mode = $2 AND email = $3
RETURNING ` + accountColumns

// Update applies p. Lowering MaxJobs below the running count preempts
// nothing; it only stops new placements until enough jobs end.
func (s *Store) Update(ctx context.Context, scope tenant.Scope, email string, p Patch) (Account, error) {
	if p.MaxJobs == nil && p.Enabled == nil && p.Probe == nil {
		return Account{}, errs.Invalid("empty_update", "nothing to update: send maxJobs, enabled and/or probe")
	}
	row := s.pool.QueryRow(ctx, accountUpdate, scope.TenantID, scope.Mode, normalizeEmail(email),
		p.MaxJobs, p.Enabled, s.now().UTC(), p.Probe)
	a, err := s.scanAccount(row, scope)
	if err != nil {
		return a, notFound(err, email)
	}
	list := []Account{a}
	err = s.attachHealth(ctx, scope, list)
	return list[0], err
}

const accountDelete = `DELETE FROM accounts WHERE tenant_id = $1 AND mode = $2 AND email = $3`

// Delete removes the account registered under email.
func (s *Store) Delete(ctx context.Context, scope tenant.Scope, email string) error {
	tag, err := s.pool.Exec(ctx, accountDelete, scope.TenantID, scope.Mode, normalizeEmail(email))
	if err != nil {
		return dbx.Classify(fmt.Errorf("delete account: %w", err))
	}
	if tag.RowsAffected() == 0 {
		return errNotFound(email)
	}
	return nil
}

// notFound turns a missing row into the 404 that names email. It is the
// same answer for an email of another tenant: isolation looks like absence.
func notFound(err error, email string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return errNotFound(email)
	}
	return err
}

// NotFound is the error for an account that does not exist in the caller's
// pool, for surfaces that hide some accounts (useapi's shows only LTX
// Studio ones) and must answer exactly as for a missing one.
func NotFound(email string) error { return errNotFound(email) }

func errNotFound(email string) error {
	return errs.NotFound("account_not_found", "no account %q", normalizeEmail(email))
}

func normalizeEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

// scanAccount reads one row of accountColumns, opening and masking its cookie.
func (s *Store) scanAccount(row pgx.Row, scope tenant.Scope) (Account, error) {
	var (
		a      Account
		sealed []byte
		status string
		reason *string
	)
	err := row.Scan(&a.ID, &a.Email, &sealed, &a.MaxJobs, &a.Enabled, &status, &reason, &a.Running,
		&a.UpdatedAt, &a.TokenExpiresAt, &a.RefreshTokenExpiresAt, &a.LastRefreshAt, &a.Provider,
		&a.QuarantinedUntil, &a.QuarantineReason, &a.Since, &a.Probe, &a.NextProbeAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, err
	}
	if err != nil {
		return Account{}, dbx.Classify(fmt.Errorf("read account: %w", err))
	}
	if a.Provider == provider.NameLTXAPI {
		return s.scanAPIKeyAccount(a, sealed, scope, status, reason), nil
	}
	plain, err := s.box.Open(sealed, cookieAAD(scope, a.Email))
	if err != nil {
		// One unreadable row must not break the pool's list: show that
		// account alone as broken, with what to do about it.
		a.Cookie = map[string]string{}
		a.Status, a.Reason, a.StatusCode = StatusError, unreadableReason, "unreadable_cookie"
		return a, nil
	}
	jar, err := cookies.Parse(string(plain))
	if err != nil {
		return Account{}, errs.Internal(fmt.Errorf("stored cookie of account %d does not parse", a.ID))
	}
	a.Cookie = jar.Masked()
	s.derive(&a, status, reason)
	return a, nil
}

// derive sets what an account's view computes from its stored facts and
// the clock: its status, why and since when, and when its token will next
// be refreshed.
func (s *Store) derive(a *Account, status string, reason *string) {
	h := deriveStatus(*a, status, reason, s.now(), s.life)
	a.Status, a.Reason, a.StatusCode = h.status, h.reason, h.code
	if h.since != nil {
		a.Since = h.since
	}
	if a.TokenExpiresAt != nil && a.Enabled && status == string(StatusActive) {
		next := a.TokenExpiresAt.Add(-s.life.RefreshLead)
		a.NextRefreshAt = &next
	}
	if !a.Enabled || !a.Probe {
		a.NextProbeAt = nil // the prober skips it
	}
}

// health is an account's derived status.
type health struct {
	status       Status
	code, reason string
	since        *time.Time // overrides the stored health_since when set
}

// deriveStatus combines the stored status with the clock. It is the one
// rule for an account's status; the eligibility rule (usable in slots.go)
// admits exactly the accounts it calls active or expiring.
func deriveStatus(a Account, stored string, reason *string, now time.Time, life Lifecycle) health {
	switch {
	case !a.Enabled:
		return health{status: StatusDisabled, code: "operator", reason: "disabled by the operator"}
	case stored == string(StatusError):
		h := health{status: StatusError, code: "credentials_refused", reason: "the upstream refused this account's credentials"}
		if reason != nil {
			h.reason = *reason
		}
		if h.reason == unreadableReason {
			h.code = "unreadable_cookie"
		}
		return h
	case a.RefreshTokenExpiresAt != nil && !a.RefreshTokenExpiresAt.After(now):
		return health{status: StatusExpired, code: "refresh_token_expired",
			reason: "lt_refresh_token expired; register fresh cookies", since: a.RefreshTokenExpiresAt}
	case a.QuarantinedUntil != nil && (a.Probe || a.QuarantinedUntil.After(now)):
		h := health{status: StatusQuarantined, code: a.QuarantineReason,
			reason: "quarantined (" + a.QuarantineReason + ") until " + a.QuarantinedUntil.UTC().Format(time.RFC3339)}
		if a.Probe {
			h.reason += "; a successful probe returns it to rotation after that"
		}
		return h
	case a.TokenExpiresAt != nil && !a.TokenExpiresAt.After(now):
		return health{status: StatusRefreshing, code: "token_expired",
			reason: "lt_token expired; it must be refreshed before the account takes jobs", since: a.TokenExpiresAt}
	case a.RefreshTokenExpiresAt != nil && a.RefreshTokenExpiresAt.Sub(now) <= life.ExpiringWithin:
		return health{status: StatusExpiring, code: "refresh_token_expiring",
			reason: "lt_refresh_token expires at " + a.RefreshTokenExpiresAt.UTC().Format(time.RFC3339) + "; register fresh cookies before then"}
	default:
		return health{status: StatusActive}
	}
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
