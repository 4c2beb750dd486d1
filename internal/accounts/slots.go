package accounts

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/tenant"
)

// This file is the scheduler's view of the accounts: which may take a job,
// and their slot counts. The scheduler composes these functions inside its
// own transactions; no other package reads or writes the accounts or
// account_capacity tables.
//
// The slot count (running) and the rotation key (rkey) live in
// account_capacity, one narrow row per account, whose lock is the slot
// lock: placements and folds write only that row (see
// 0016_account_capacity.sql for why).

// usable is the one rule for "this account is in rotation now" ($3 is the
// caller's clock), on an account's capacity row c (which copies the
// account columns it reads; active is enabled AND status = 'active'). A
// quarantined account is out of rotation until a probe clears its
// quarantine, even after quarantined_until has passed; only an account
// whose probes the operator turned off comes back on the clock alone
// (deriveStatus says the same). free adds "and has a free slot"; its
// first and last terms are the predicate of account_capacity_free_idx, so
// the planner can use it. free reads the stored running count, which
// pending releases (account_slot_releases) may still have to lower: it
// never overstates the free slots, and the locking reads below count the
// pending releases too.
const (
	usable = `c.active
	AND (c.quarantined_until IS NULL OR (NOT c.probe_enabled AND c.quarantined_until <= $3))
	AND (c.token_expires_at IS NULL OR c.token_expires_at > $3)
	AND (c.refresh_token_expires_at IS NULL OR c.refresh_token_expires_at > $3)`
	free = usable + ` AND c.running < c.max_jobs`

	// indexedFree is the predicate of account_capacity_free_idx alone:
	// free without the clock.
	indexedFree = `c.active AND c.running < c.max_jobs`

	// heldByC is the slots the account of capacity row c holds: its
	// running count net of its pending releases (see ReleaseSlots; the
	// account_slots view says the same).
	heldByC = `(c.running - coalesce((SELECT sum(r.n) FROM account_slot_releases r
	WHERE r.tenant_id = c.tenant_id AND r.mode = c.mode AND r.account_id = c.id), 0))::integer`
)

// AccountFreePools lists the (tenant, mode) pools with at least one account
// that could take a job; only their queues can make progress. It skips
// through account_capacity_free_idx one pool at a time (a loose index
// scan), so it reads a few index entries per pool instead of every free
// account. Stored running counts may still include releases nobody has
// folded yet (account_slot_releases): the pools with pending releases are
// listed too, read the same way through the releases' pool index, since a
// full account's freed slots are only there until a placement or the
// periodic fold folds them. (A pool whose only pending release is of an
// account that cannot take jobs gets a round that places nothing, until
// the periodic fold takes the release.)
const AccountFreePools = `
WITH RECURSIVE pools (tenant_id, mode) AS (
	(SELECT tenant_id, mode FROM account_capacity c
	 WHERE ` + indexedFree + `
	 ORDER BY tenant_id, mode LIMIT 1)
	UNION ALL
	SELECT next.tenant_id, next.mode FROM pools, LATERAL (
		SELECT c.tenant_id, c.mode FROM account_capacity c
		WHERE ` + indexedFree + ` AND (c.tenant_id, c.mode) > (pools.tenant_id, pools.mode)
		ORDER BY c.tenant_id, c.mode LIMIT 1) next
), pending (tenant_id, mode) AS (
	(SELECT tenant_id, mode FROM account_slot_releases ORDER BY tenant_id, mode LIMIT 1)
	UNION ALL
	SELECT next.tenant_id, next.mode FROM pending, LATERAL (
		SELECT r.tenant_id, r.mode FROM account_slot_releases r
		WHERE (r.tenant_id, r.mode) > (pending.tenant_id, pending.mode)
		ORDER BY r.tenant_id, r.mode LIMIT 1) next
)
SELECT tenant_id, mode FROM pools
UNION
SELECT tenant_id, mode FROM pending`

// FreePools returns the pools that have an account with a free slot.
func FreePools(ctx context.Context, db dbx.DBTX) ([]tenant.Scope, error) {
	rows, err := db.Query(ctx, AccountFreePools)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenant.Scope, error) {
		var p tenant.Scope
		err := r.Scan(&p.TenantID, &p.Mode)
		return p, err
	})
}

// Free is an account locked by the caller's transaction with Slots free
// slots.
type Free struct {
	ID    int64
	Email string
	Slots int
	// Version names the account's current sealed cookie (its nonce):
	// CredentialsAt serves it from memory while it is current.
	Version string
	// Pending is how many of Slots are releases not yet folded into the
	// account's running count; TakeSlots folds them.
	Pending int
	// releases are the rows Pending was read from (their ctids: the
	// caller's transaction holds the account, so nobody else deletes
	// them, and release rows are never updated, so they stay where they
	// are until TakeSlots deletes them).
	releases []pgtype.TID
	// Provider is the upstream the account belongs to: a job that asked
	// for a provider goes only to its accounts (see Fits).
	Provider string
}

// Fits reports whether a job that asked for provider want (nil: any) may
// run on an account of provider have. It is the provider half of
// eligibility; the SQL rules above are the other.
func Fits(want *string, have string) bool { return want == nil || *want == have }

const (
	// accountFreeFrom lists up to $5 eligible accounts of provider $6 (if
	// it is not '') with their free slots, without locking them. First the
	// range of the free index following rkey $4 on the circle, and, if that
	// is not enough, the range below $4 (the wrap). Then, if the circle had
	// fewer than $5, the accounts that are full by their stored count but
	// have pending releases, read through the releases' pool index: they
	// are in no range of account_capacity_free_idx until a fold, yet have
	// free slots now. The LIMIT over all of them stops the reading as soon
	// as it has $5, so a large pool reads one range only; a pool with that
	// many accounts free by their stored count leaves its full ones with
	// pending releases out until the periodic fold (WakeInterval), which
	// costs nothing while so many slots are free. Reading them there
	// anyway cost 25 µs a job with 10,000 accounts, most of it probing
	// accounts that were not full. Only the first $7 release rows are read:
	// such a pool can hold ~14,000 of them, and summing them all cost 28 ms
	// a placement. A sum over part of an account's rows only understates
	// its free slots (LockFree counts them exactly), and the accounts whose
	// rows are not read are reached once the rows read are folded, or by
	// the periodic fold, which brings them back into the free index.
	accountFreeFrom = `
(SELECT c.id, c.max_jobs - c.running FROM account_capacity c
WHERE c.tenant_id = $1 AND c.mode = $2 AND ` + free + ` AND c.rkey >= $4 AND ($6 = '' OR c.provider = $6)
ORDER BY c.rkey
LIMIT $5)
UNION ALL
(SELECT c.id, c.max_jobs - c.running FROM account_capacity c
WHERE c.tenant_id = $1 AND c.mode = $2 AND ` + free + ` AND c.rkey < $4 AND ($6 = '' OR c.provider = $6)
ORDER BY c.rkey
LIMIT $5)
UNION ALL
(SELECT f.id, f.max_jobs - f.running + p.n FROM (
	SELECT r.account_id, sum(r.n)::integer AS n FROM (
		SELECT account_id, n FROM account_slot_releases
		WHERE tenant_id = $1 AND mode = $2 LIMIT $7) r
	GROUP BY r.account_id
) p, LATERAL (
	SELECT c.id, c.max_jobs, c.running FROM account_capacity c
	WHERE c.tenant_id = $1 AND c.id = p.account_id AND c.mode = $2 AND ` + usable + `
		AND c.running >= c.max_jobs AND ($6 = '' OR c.provider = $6)
	LIMIT 1) f
LIMIT $5)
LIMIT $5`

	// accountLockFree locks the capacity rows of the given accounts in id
	// order, skipping those another transaction holds, and returns the ones
	// still eligible. A row returned by FOR UPDATE is its latest version,
	// so two transactions can never both take an account's last slot. It
	// reads nothing else: a FOR UPDATE over a join re-runs the join for
	// every row a concurrent placement changed meanwhile (10 ms a call
	// under load), and a join's plan, without statistics, probed accounts
	// once per pair. The eligibility check sits in the select list rather
	// than the WHERE so that the planner probes the primary key instead of
	// scanning the partial index.
	accountLockFree = `
SELECT c.id, c.email, c.max_jobs - c.running, c.cookie_version, c.provider, c.mode = $2 AND ` + usable + `
FROM account_capacity c
WHERE c.tenant_id = $1 AND c.id = ANY($4)
ORDER BY c.id
FOR UPDATE SKIP LOCKED`

	// accountIDsByEmail finds pinned jobs' accounts, for LockFreeByEmail.
	accountIDsByEmail = `SELECT id FROM accounts WHERE tenant_id = $1 AND mode = $2 AND email = ANY($3)`

	// accountPendingReleases sums the pending releases of accounts the
	// caller holds. It must be its own statement, run after the lock is
	// taken: FOR UPDATE returns the latest version of a row a concurrent
	// fold has just changed, but a subquery of the same statement would
	// still see, in the statement's older snapshot, the releases that fold
	// deleted, and count them twice. Once the lock is held nobody else can
	// fold them, so a fresh snapshot agrees with the locked row. It probes
	// the pool index once per account: written as account_id = ANY($3),
	// the planner (without statistics) read every release of the pool and
	// filtered them, 4 ms a call with 10,000 accounts.
	accountPendingReleases = `
SELECT t.id, p.n, p.rows FROM unnest($3::bigint[]) AS t (id), LATERAL (
	SELECT sum(r.n)::integer AS n, array_agg(r.ctid) AS rows FROM account_slot_releases r
	WHERE r.tenant_id = $1 AND r.mode = $2 AND r.account_id = t.id) p
WHERE p.n IS NOT NULL`
)

// Window says how many eligible accounts a placement reads: at least Min
// (or all there are), and more, up to Max, until their free slots reach
// Slots. A pool with many free slots per account gets a narrow window, so
// that replicas placing at once mostly lock different accounts; one whose
// free slots are few and scattered (a busy pool) gets a wide one, so that
// one transaction finds a batch's worth.
type Window struct{ Min, Max, Slots int }

// pendingRowsPerAccount bounds the release rows a window reads: a few per
// account it may list.
const pendingRowsPerAccount = 2

// FreeWindow returns eligible accounts of the pool that follow a random
// point on the rkey circle, continuing from its start when the end is
// reached, as many as w says. A pool with fewer eligible accounts than
// w.Min is read whole, so a uniform pick among them is exactly uniform; in
// a larger one the window's position depends on the gaps between keys,
// which is fair in the long run since every account that takes a slot
// draws a fresh key (TakeSlots). The cost is one statement reading one or
// two index ranges and, when they hold fewer than w.Max accounts, at most
// 2 × w.Max pending releases, whatever the pool size.
//
// prov, if not "", keeps the window to that provider's accounts: a job
// that asked for a provider the uniform window missed can still be placed.
func FreeWindow(ctx context.Context, db dbx.DBTX, scope tenant.Scope, now time.Time, w Window, prov string) ([]int64, error) {
	accts, err := collectWindow(db.Query(ctx, accountFreeFrom, scope.TenantID, scope.Mode, now, rand.Float64(), w.Max, prov,
		pendingRowsPerAccount*w.Max))
	if err != nil {
		return nil, err
	}
	ids, slots := make([]int64, 0, len(accts)), 0
	for _, a := range accts {
		if len(ids) >= w.Min && slots >= w.Slots {
			break
		}
		ids, slots = append(ids, a.id), slots+a.free
	}
	return ids, nil
}

// windowAccount is an account of a window and its free slots by its
// stored count (pending releases may add some).
type windowAccount struct {
	id   int64
	free int
}

func collectWindow(rows pgx.Rows, err error) ([]windowAccount, error) {
	if err != nil {
		return nil, err
	}
	var (
		out []windowAccount
		a   windowAccount
	)
	_, err = pgx.ForEachRow(rows, []any{&a.id, &a.free}, func() error { out = append(out, a); return nil })
	return out, err
}

func collectIDs(rows pgx.Rows, err error) ([]int64, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// LockFree locks those of ids that are not locked elsewhere, in id order,
// and returns the ones still eligible with their free slots. It never
// waits for a lock.
func LockFree(ctx context.Context, db dbx.DBTX, scope tenant.Scope, now time.Time, ids []int64) ([]Free, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := db.Query(ctx, accountLockFree, scope.TenantID, scope.Mode, now, ids)
	return collectFree(ctx, db, scope, rows, err)
}

// LockFreeByEmail is LockFree for the accounts registered under emails.
func LockFreeByEmail(ctx context.Context, db dbx.DBTX, scope tenant.Scope, now time.Time, emails []string) ([]Free, error) {
	if len(emails) == 0 {
		return nil, nil
	}
	ids, err := collectIDs(db.Query(ctx, accountIDsByEmail, scope.TenantID, scope.Mode, emails))
	if err != nil {
		return nil, err
	}
	return LockFree(ctx, db, scope, now, ids)
}

// collectFree reads locked accounts, adds their pending releases (read
// after the lock, see accountPendingReleases) and keeps those usable with
// a free slot.
func collectFree(ctx context.Context, db dbx.DBTX, scope tenant.Scope, rows pgx.Rows, err error) ([]Free, error) {
	if err != nil {
		return nil, err
	}
	var (
		locked []Free
		usable = map[int64]bool{}
		ok     bool
		f      Free
	)
	_, err = pgx.ForEachRow(rows, []any{&f.ID, &f.Email, &f.Slots, &f.Version, &f.Provider, &ok}, func() error {
		locked = append(locked, f)
		usable[f.ID] = ok
		return nil
	})
	if err != nil || len(locked) == 0 {
		return nil, err
	}
	ids := make([]int64, len(locked))
	for i, l := range locked {
		ids[i] = l.ID
	}
	type pendingRows struct {
		n    int
		rows []pgtype.TID
	}
	pending := map[int64]pendingRows{}
	prow, err := db.Query(ctx, accountPendingReleases, scope.TenantID, scope.Mode, ids)
	if err != nil {
		return nil, err
	}
	var (
		id int64
		p  pendingRows
	)
	if _, err := pgx.ForEachRow(prow, []any{&id, &p.n, &p.rows}, func() error { pending[id] = p; return nil }); err != nil {
		return nil, err
	}
	var out []Free
	for _, l := range locked {
		l.Pending, l.releases = pending[l.ID].n, pending[l.ID].rows
		l.Slots += l.Pending
		if usable[l.ID] && l.Slots > 0 {
			out = append(out, l)
		}
	}
	return out, nil
}

// accountTakeSlots takes n slots of each account, folds the pending
// releases LockFree counted into its running count (the caller holds its
// lock, so it may delete them; it subtracts exactly what it deleted), and
// gives it a fresh rkey, so that where it sat on the circle does not keep
// deciding its chances. The releases are deleted by ctid, which costs a
// heap fetch each (or one pass over a small table) whatever the pool's
// size: found by account_id = ANY, the planner, without statistics, read
// every pending release of the pool (6 ms a placement with 10,000
// accounts).
const accountTakeSlots = `
WITH freed AS (
	DELETE FROM account_slot_releases r WHERE r.ctid = ANY($4::tid[])
	RETURNING r.account_id, r.n
), folded AS (
	SELECT account_id, sum(n)::integer AS n FROM freed GROUP BY account_id
)
UPDATE account_capacity c SET running = c.running + t.n - coalesce(f.n, 0),
	rkey = CASE WHEN t.n > 0 THEN random() ELSE c.rkey END
FROM unnest($2::bigint[], $3::integer[]) AS t (id, n)
LEFT JOIN folded f ON f.account_id = t.id
WHERE c.tenant_id = $1 AND c.id = ANY($2) AND c.id = t.id`

// TakeSlots takes n[i] slots of locked[i], an account the caller's
// transaction locked with LockFree or LockFreeByEmail (n[i] = 0 only
// folds its pending releases).
func TakeSlots(ctx context.Context, db dbx.DBTX, scope tenant.Scope, locked []Free, n []int32) error {
	if len(locked) == 0 {
		return nil
	}
	ids := make([]int64, len(locked))
	var rows []pgtype.TID
	for i, l := range locked {
		ids[i] = l.ID
		rows = append(rows, l.releases...)
	}
	_, err := db.Exec(ctx, accountTakeSlots, scope.TenantID, ids, n, rows)
	return err
}

// Release is n slots of one account to give back.
type Release struct {
	Pool      tenant.Scope // the account's tenant and mode
	AccountID int64
	N         int32
}

// accountReleaseSlots records slot releases as pending rows, one per
// account. It never touches, so never locks, an account's capacity row: a
// release that took that lock would hold it through its transaction's commit,
// and every placement meanwhile would skip that account (placements lock
// with SKIP LOCKED), which is not "uniform among the accounts with a free
// slot". They count as free slots from their commit on: placements read
// them (FreeWindow, LockFree) and the account_slots view counts them.
// Whoever next holds the account's lock (a placement's TakeSlots, or
// FoldReleases) subtracts them from the running count. A deleted account
// leaves an orphan release, which DeleteOrphanReleases drops.
const accountReleaseSlots = `
INSERT INTO account_slot_releases (tenant_id, mode, account_id, n)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::integer[])`

// ReleaseSlots frees slots. Callers run it only in the transaction that
// moved the jobs holding them out of dispatching/running, so each slot is
// freed exactly once.
func ReleaseSlots(ctx context.Context, db dbx.DBTX, rs []Release) error {
	if len(rs) == 0 {
		return nil
	}
	// One row per account keeps the table (and the folds) small.
	type account struct {
		pool tenant.Scope
		id   int64
	}
	merged := map[account]int32{}
	for _, r := range rs {
		merged[account{r.Pool, r.AccountID}] += r.N
	}
	tenants, modes := make([]int64, 0, len(merged)), make([]string, 0, len(merged))
	ids, ns := make([]int64, 0, len(merged)), make([]int32, 0, len(merged))
	for a, n := range merged {
		tenants, modes = append(tenants, a.pool.TenantID), append(modes, string(a.pool.Mode))
		ids, ns = append(ids, a.id), append(ns, n)
	}
	_, err := db.Exec(ctx, accountReleaseSlots, tenants, modes, ids, ns)
	return err
}

const (
	// accountsFoldReleases folds pending releases into the running counts
	// of the accounts nobody holds now: it locks those it can lock at once
	// (a placement holding one folds that one's releases itself), deletes
	// their releases and subtracts exactly what it deleted, so a release
	// folded meanwhile by a holder of the lock is never subtracted twice.
	// It commits without waiting for the WAL flush, so the capacity rows are
	// locked for microseconds rather than an fsync (placements skip locked
	// accounts). Losing a fold in a crash loses nothing: the releases are
	// then still pending, and the counts still add up.
	accountsFoldReleases = `
WITH quick AS (
	SELECT set_config('synchronous_commit', 'off', true)
), pending AS (
	SELECT DISTINCT tenant_id, mode, account_id FROM account_slot_releases LIMIT 1000
), locked AS (
	SELECT c.tenant_id, c.mode, c.id FROM pending p, LATERAL (
		SELECT tenant_id, mode, id FROM account_capacity c WHERE c.tenant_id = p.tenant_id AND c.id = p.account_id
		FOR UPDATE SKIP LOCKED) c
), freed AS (
	DELETE FROM account_slot_releases r USING locked l
	WHERE r.tenant_id = l.tenant_id AND r.mode = l.mode AND r.account_id = l.id
	RETURNING r.tenant_id, r.account_id, r.n
)
UPDATE account_capacity c SET running = c.running - f.n
FROM (SELECT tenant_id, account_id, sum(n)::integer AS n FROM freed GROUP BY 1, 2) f, quick
WHERE c.tenant_id = f.tenant_id AND c.id = f.account_id`

	// accountReleasesOrphaned drops up to $1 releases of deleted
	// accounts. The LATERAL probes each pending account by primary key, so
	// the cost is the pending rows, never the accounts table. (LIMIT 1
	// keeps the planner from flattening the LATERAL probe into a hash join
	// that reads every account.)
	accountReleasesOrphaned = `
DELETE FROM account_slot_releases r WHERE r.id IN (
	SELECT p.id FROM account_slot_releases p
	LEFT JOIN LATERAL (SELECT 1 AS found FROM accounts a WHERE a.tenant_id = p.tenant_id AND a.id = p.account_id LIMIT 1) e ON true
	WHERE e.found IS NULL
	LIMIT $1)`

	accountReleasesAny = `SELECT EXISTS (SELECT 1 FROM account_slot_releases)`
)

// FoldReleases folds pending slot releases into the accounts' running
// counts where it can lock the account at once. Placements fold the
// releases of the accounts they lock (TakeSlots) and read the rest as free
// slots (FreeWindow, LockFree), so this only keeps account_slot_releases
// short where no placement comes; the dispatcher runs it once a
// WakeInterval. It costs one index probe when nothing is pending.
func FoldReleases(ctx context.Context, db dbx.DBTX) error {
	var any bool
	if err := db.QueryRow(ctx, accountReleasesAny).Scan(&any); err != nil || !any {
		return err
	}
	_, err := db.Exec(ctx, accountsFoldReleases)
	return err
}

// DeleteOrphanReleases deletes up to limit releases of deleted accounts,
// which no fold can take (a job that ends after its account was deleted
// still releases its slot). It is a retention cleanup: rows are due as
// soon as they exist, so before is unused. Until it runs, an orphan costs
// its pool a placement round that finds nothing now and then; it used to
// run with every fold, and probed every pending release each second on
// every replica (39 ms a run with 10,000 accounts).
func DeleteOrphanReleases(ctx context.Context, db dbx.DBTX, _ time.Time, limit int) (int64, error) {
	tag, err := db.Exec(ctx, accountReleasesOrphaned, limit)
	return tag.RowsAffected(), err
}

const accountExists = `SELECT EXISTS (SELECT 1 FROM accounts WHERE tenant_id = $1 AND mode = $2 AND email = $3)`

// Exists reports whether an account is registered under email.
func Exists(ctx context.Context, db dbx.DBTX, scope tenant.Scope, email string) (bool, error) {
	var ok bool
	err := db.QueryRow(ctx, accountExists, scope.TenantID, scope.Mode, email).Scan(&ok)
	return ok, err
}

const accountEmailsExisting = `SELECT email, provider FROM accounts WHERE tenant_id = $1 AND mode = $2 AND email = ANY($3)`

// ExistingEmails returns which of emails are registered, with the
// provider each belongs to.
func ExistingEmails(ctx context.Context, db dbx.DBTX, scope tenant.Scope, emails []string) (map[string]string, error) {
	out := map[string]string{}
	if len(emails) == 0 {
		return out, nil
	}
	rows, err := db.Query(ctx, accountEmailsExisting, scope.TenantID, scope.Mode, emails)
	if err != nil {
		return nil, err
	}
	var email, prov string
	_, err = pgx.ForEachRow(rows, []any{&email, &prov}, func() error { out[email] = prov; return nil })
	return out, err
}

const accountAnyEnabled = `SELECT EXISTS (SELECT 1 FROM accounts WHERE tenant_id = $1 AND mode = $2 AND enabled)`

// AnyEnabled reports whether the pool has an enabled account at all.
func AnyEnabled(ctx context.Context, db dbx.DBTX, scope tenant.Scope) (bool, error) {
	var ok bool
	err := db.QueryRow(ctx, accountAnyEnabled, scope.TenantID, scope.Mode).Scan(&ok)
	return ok, err
}

// Capacity is one eligible account's slots.
type Capacity struct {
	Email   string
	MaxJobs int
	Running int
}

const (
	accountCapacity = `
SELECT c.email, c.max_jobs, ` + heldByC + `
FROM account_capacity c
WHERE c.tenant_id = $1 AND c.mode = $2 AND ` + usable + `
ORDER BY c.email`

	accountRunningSum = `SELECT coalesce(sum(held), 0) FROM account_slots WHERE tenant_id = $1 AND mode = $2`
)

// Capacities lists the accounts that can take jobs now (whether or not a
// slot is free) and how many jobs run on the pool in all.
func Capacities(ctx context.Context, db dbx.DBTX, scope tenant.Scope, now time.Time) ([]Capacity, int, error) {
	var running int
	if err := db.QueryRow(ctx, accountRunningSum, scope.TenantID, scope.Mode).Scan(&running); err != nil {
		return nil, 0, err
	}
	rows, err := db.Query(ctx, accountCapacity, scope.TenantID, scope.Mode, now)
	if err != nil {
		return nil, 0, err
	}
	caps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Capacity, error) {
		var c Capacity
		err := r.Scan(&c.Email, &c.MaxJobs, &c.Running)
		return c, err
	})
	return caps, running, err
}
