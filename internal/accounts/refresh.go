package accounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/cookies"
	"github.com/poolgate/poolgate/internal/loop"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/tenant"
)

// RefresherConfig configures a Refresher.
type RefresherConfig struct {
	Store    *Store
	Provider provider.Provider
	Logger   *slog.Logger
	Now      func() time.Time // nil: time.Now
	// Lead is how long before lt_token expires it is refreshed (default 10m).
	Lead time.Duration
	// Interval is how often due accounts are looked for (default 30s).
	Interval time.Duration
	// RetryBase and RetryMax shape the backoff after transient failures
	// (defaults 30s and 15m).
	RetryBase, RetryMax time.Duration
	// OnOutcome, if set, is told each refresh's outcome: "refreshed",
	// "auth_failed" or "retry".
	OnOutcome func(outcome string)
}

// Refresher renews lt_token before it expires, through the provider and the
// account's lt_refresh_token. Any number of replicas may run one: a short
// lease on the account row makes sure only one refreshes a given account.
type Refresher struct {
	cfg  RefresherConfig
	log  *slog.Logger
	loop loop.Every
}

// NewRefresher returns a Refresher; Start runs it.
func NewRefresher(cfg RefresherConfig) *Refresher {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Lead, 10*time.Minute)
	def(&cfg.Interval, 30*time.Second)
	def(&cfg.RetryBase, 30*time.Second)
	def(&cfg.RetryMax, 15*time.Minute)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Refresher{cfg: cfg, log: cfg.Logger.With("component", "refresher")}
}

// Start refreshes due accounts every Interval until Stop.
func (r *Refresher) Start(ctx context.Context) error {
	return r.loop.Start(ctx, r.cfg.Interval, r.log, "refresh round failed", func(ctx context.Context) error {
		_, err := r.RunOnce(ctx)
		return err
	})
}

// Stop ends the loop after the refreshes in progress, or when ctx ends.
func (r *Refresher) Stop(ctx context.Context) { r.loop.Stop(ctx) }

// refreshLease bounds how long a replica holds an account it is refreshing.
const refreshLease = 2 * time.Minute

// accountsClaimRefresh takes the accounts in rotation whose lt_token is
// due for refresh, and those in error with a probe planned: a probe with
// a lapsed lt_token could only be refused, while the refresh token may
// hold for months.
const accountsClaimRefresh = `
WITH due AS (
	SELECT tenant_id, id FROM accounts
	WHERE (enabled AND status = 'active' AND token_expires_at <= $1
		OR enabled AND status = 'error' AND probe_at IS NOT NULL AND token_expires_at <= $1)
		AND (refresh_retry_at IS NULL OR refresh_retry_at <= $2)
		AND (refresh_lock_until IS NULL OR refresh_lock_until <= $2)
		AND (refresh_token_expires_at IS NULL OR refresh_token_expires_at > $2)
	ORDER BY token_expires_at
	LIMIT 20 FOR UPDATE SKIP LOCKED
)
UPDATE accounts a SET refresh_lock_until = $3
FROM due WHERE a.tenant_id = due.tenant_id AND a.id = due.id
RETURNING a.tenant_id, a.mode, a.id, a.email, a.cookie, a.updated_at, a.refresh_failures`

type dueAccount struct {
	scope     tenant.Scope
	id        int64
	email     string
	sealed    []byte
	updatedAt time.Time
	failures  int
}

// RunOnce refreshes every account whose lt_token expires within Lead and
// reports how many it refreshed.
func (r *Refresher) RunOnce(ctx context.Context) (int, error) {
	refreshed := 0
	for {
		now := r.cfg.Now().UTC()
		rows, err := r.cfg.Store.pool.Query(ctx, accountsClaimRefresh, now.Add(r.cfg.Lead), now, now.Add(refreshLease))
		if err != nil {
			return refreshed, err
		}
		due, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (dueAccount, error) {
			var d dueAccount
			err := row.Scan(&d.scope.TenantID, &d.scope.Mode, &d.id, &d.email, &d.sealed, &d.updatedAt, &d.failures)
			return d, err
		})
		if err != nil || len(due) == 0 {
			return refreshed, err
		}
		for _, d := range due {
			if r.refresh(ctx, d) {
				refreshed++
			}
		}
	}
}

const (
	accountRefreshed = `
UPDATE accounts SET cookie = $4, token_expires_at = $5,
	refresh_token_expires_at = CASE WHEN $6 THEN $7 ELSE refresh_token_expires_at END,
	last_refresh_at = $8, refresh_failures = 0, refresh_retry_at = NULL, refresh_lock_until = NULL
WHERE tenant_id = $1 AND id = $2 AND updated_at = $3`

	accountRefreshFailed = `
UPDATE accounts SET refresh_failures = refresh_failures + 1, refresh_retry_at = $3, refresh_lock_until = NULL
WHERE tenant_id = $1 AND id = $2`
)

// refresh renews one account's tokens and reports whether it did.
func (r *Refresher) refresh(ctx context.Context, d dueAccount) bool {
	plain, err := r.cfg.Store.box.Open(d.sealed, cookieAAD(d.scope, d.email))
	if err != nil {
		r.log.Error("open cookie for refresh", "account", d.email, "err", err)
		if err := r.markError(ctx, d, unreadableReason); err != nil {
			r.log.Error("take unreadable account out of rotation", "account", d.email, "err", err)
		}
		return false
	}
	jar, err := cookies.Parse(string(plain))
	if err != nil {
		r.log.Error("stored cookie does not parse", "account", d.email)
		return false
	}
	tokens, err := r.cfg.Provider.Refresh(ctx, provider.Account{Email: d.email, Cookie: string(plain)})
	if err != nil {
		r.failed(ctx, d, err)
		return false
	}
	claims, err := cookies.DecodeJWT(tokens.Token)
	if err != nil {
		r.failed(ctx, d, fmt.Errorf("upstream issued a malformed lt_token: %w", err))
		return false
	}
	oldRefresh, _ := jar.Get("lt_refresh_token")
	rotated := tokens.RefreshToken != oldRefresh
	var refreshExp *time.Time
	if rc, err := cookies.DecodeJWT(tokens.RefreshToken); err == nil {
		refreshExp = timeOrNil(rc.Expiry)
	}
	jar = jar.With("lt_token", tokens.Token).With("lt_refresh_token", tokens.RefreshToken)
	sealed := r.cfg.Store.box.Seal([]byte(jar.String()), cookieAAD(d.scope, d.email))
	now := r.cfg.Now().UTC()
	tag, err := r.cfg.Store.pool.Exec(ctx, accountRefreshed, d.scope.TenantID, d.id, d.updatedAt, sealed,
		timeOrNil(claims.Expiry), rotated, refreshExp, now)
	if err != nil {
		r.log.Error("store refreshed tokens", "account", d.email, "err", err)
		return false
	}
	if tag.RowsAffected() == 0 {
		// Re-registered or changed meanwhile: the operator's cookies win.
		r.log.Info("account changed during refresh; keeping its new cookies", "account", d.email)
		return false
	}
	r.outcome("refreshed")
	r.log.Info("token refreshed", "account", d.email, "token_expires", claims.Expiry.UTC().Format(time.RFC3339))
	return true
}

// failed records a refresh failure: a refused refresh token takes the
// account out of rotation; anything else is retried with backoff.
func (r *Refresher) failed(ctx context.Context, d dueAccount, err error) {
	now := r.cfg.Now().UTC()
	if provider.ClassOf(err) == provider.ClassAuth {
		reason := "token refresh refused by the upstream; register fresh cookies"
		if merr := r.markError(ctx, d, reason); merr != nil {
			r.log.Error("mark account error", "account", d.email, "err", merr)
		}
		r.outcome("auth_failed")
		r.log.Warn("token refresh refused; account out of rotation", "account", d.email, "err", err)
		return
	}
	wait := r.cfg.RetryBase << min(d.failures, 16)
	if wait > r.cfg.RetryMax || wait <= 0 {
		wait = r.cfg.RetryMax
	}
	wait = time.Duration(float64(wait) * (0.8 + 0.4*rand.Float64()))
	if _, uerr := r.cfg.Store.pool.Exec(ctx, accountRefreshFailed, d.scope.TenantID, d.id, now.Add(wait)); uerr != nil && !errors.Is(uerr, context.Canceled) {
		r.log.Error("record refresh failure", "account", d.email, "err", uerr)
	}
	r.outcome("retry")
	r.log.Warn("token refresh failed; will retry", "account", d.email, "in", wait.String(), "err", err)
}

func (r *Refresher) outcome(o string) {
	if r.cfg.OnOutcome != nil {
		r.cfg.OnOutcome(o)
	}
}

// markError takes an account the refresher cannot mend out of rotation
// and releases its refresh lease. Neither cause is temporary (the refresh
// token was refused, or the cookie cannot be opened), so it plans no probe,
// and cancels the one an account already in error had planned (which is
// why the refresher took it): fresh cookies are the fix.
func (r *Refresher) markError(ctx context.Context, d dueAccount, reason string) error {
	st := r.cfg.Store
	return st.InTx(ctx, st.pool, func(tx pgx.Tx) error {
		if err := st.MarkError(ctx, tx, d.scope, d.id, reason, false, r.cfg.Now().UTC()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, accountRefreshGaveUp, d.scope.TenantID, d.id, reason)
		return err
	})
}

const accountRefreshGaveUp = `
UPDATE accounts SET refresh_lock_until = NULL, probe_at = NULL, status_reason = $3
WHERE tenant_id = $1 AND id = $2`
