package scheduler

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/tenant"
)

// dispatchLoop places jobs whenever it is woken (a job was queued or a slot
// freed, here or on another replica) and at least every WakeInterval.
func (s *Scheduler) dispatchLoop(ctx context.Context) {
	tick := time.NewTicker(s.cfg.WakeInterval)
	defer tick.Stop()
	for {
		for {
			n, err := s.placeRound(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Error("placement failed", "err", err)
				}
				break
			}
			if n == 0 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-tick.C:
		}
	}
}

// freePools lists the (tenant, mode) pools with at least one account that
// could take a job; only their queues can make progress. It skips through
// accounts_free_idx one pool at a time (a loose index scan), so it reads a
// few index entries per pool instead of every free account.
const freePools = `
WITH RECURSIVE pools (tenant_id, mode) AS (
	(SELECT tenant_id, mode FROM accounts
	 WHERE enabled AND status = 'active' AND running < max_jobs
	 ORDER BY tenant_id, mode LIMIT 1)
	UNION ALL
	SELECT next.tenant_id, next.mode FROM pools, LATERAL (
		SELECT a.tenant_id, a.mode FROM accounts a
		WHERE a.enabled AND a.status = 'active' AND a.running < a.max_jobs
			AND (a.tenant_id, a.mode) > (pools.tenant_id, pools.mode)
		ORDER BY a.tenant_id, a.mode LIMIT 1) next
)
SELECT tenant_id, mode FROM pools`

// placeRound places what it can in every pool and reports how many jobs
// it placed.
func (s *Scheduler) placeRound(ctx context.Context) (int, error) {
	rows, err := s.cfg.Pool.Query(ctx, freePools)
	if err != nil {
		return 0, err
	}
	pools, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tenant.Scope, error) {
		var p tenant.Scope
		err := r.Scan(&p.TenantID, &p.Mode)
		return p, err
	})
	if err != nil {
		return 0, err
	}
	rand.Shuffle(len(pools), func(i, j int) { pools[i], pools[j] = pools[j], pools[i] })
	total := 0
	for _, p := range pools {
		n, err := s.placePool(ctx, p)
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// placePool places up to Batch jobs of one pool in one transaction, then
// starts following each.
func (s *Scheduler) placePool(ctx context.Context, pool tenant.Scope) (int, error) {
	var placed []*execution
	err := pgx.BeginFunc(ctx, s.cfg.Pool, func(tx pgx.Tx) error {
		placed = placed[:0]
		now := s.now()
		pinnedLeft := true
		for len(placed) < s.cfg.Batch {
			var (
				e   *execution
				err error
			)
			if pinnedLeft {
				e, err = s.placePinned(ctx, tx, pool, now)
				pinnedLeft = e != nil
			}
			if e == nil && err == nil {
				e, err = s.placeNext(ctx, tx, pool, now)
			}
			if err != nil {
				return err
			}
			if e == nil {
				break
			}
			placed = append(placed, e)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, e := range placed {
		s.metrics.placed(e)
		s.follow(e, s.submit)
	}
	return len(placed), nil
}

// eligible is the condition an account must meet to take a job now ($now
// is the placement's clock); with running < max_jobs it is exactly the
// partial index accounts_free_idx plus the time-dependent checks.
const eligible = `enabled AND status = 'active' AND running < max_jobs
	AND (quarantined_until IS NULL OR quarantined_until <= $3)
	AND (token_expires_at IS NULL OR token_expires_at > $3)
	AND (refresh_token_expires_at IS NULL OR refresh_token_expires_at > $3)`

const (
	// nextJob is the head of a pool's unpinned queue: FIFO within priority.
	nextJob = `
SELECT id FROM jobs
WHERE tenant_id = $1 AND mode = $2 AND state = 'queued' AND pinned_email IS NULL
	AND run_after <= $3 AND queue_deadline > $3
ORDER BY priority DESC, created_at, id
LIMIT 1 FOR UPDATE SKIP LOCKED`

	// freeAccountsFrom lists up to $5 free accounts at or after rkey $4,
	// without locking them.
	freeAccountsFrom = `
SELECT id FROM accounts
WHERE tenant_id = $1 AND mode = $2 AND ` + eligible + ` AND rkey >= $4
ORDER BY rkey
LIMIT $5`

	// freeAccountLock locks the chosen account by its primary key and says
	// whether it is still free. A row returned by FOR UPDATE is its latest
	// version, so two transactions can never both take an account's last
	// slot. (The check is in the select list, not the WHERE, so that the
	// planner probes the primary key instead of scanning the partial index
	// whose predicate the WHERE would repeat.)
	freeAccountLock = `
SELECT email, mode = $2 AND ` + eligible + ` FROM accounts
WHERE tenant_id = $1 AND id = $4
FOR UPDATE SKIP LOCKED`

	// nextPinned is the oldest pinned job whose account has a free slot.
	nextPinned = `
SELECT j.id, a.id, a.email FROM jobs j
JOIN accounts a ON a.tenant_id = j.tenant_id AND a.mode = j.mode AND a.email = j.pinned_email
WHERE j.tenant_id = $1 AND j.mode = $2 AND j.state = 'queued' AND j.pinned_email IS NOT NULL
	AND j.run_after <= $3 AND j.queue_deadline > $3
	AND a.enabled AND a.status = 'active' AND a.running < a.max_jobs
	AND (a.quarantined_until IS NULL OR a.quarantined_until <= $3)
	AND (a.token_expires_at IS NULL OR a.token_expires_at > $3)
	AND (a.refresh_token_expires_at IS NULL OR a.refresh_token_expires_at > $3)
ORDER BY j.priority DESC, j.created_at, j.id
LIMIT 1 FOR UPDATE SKIP LOCKED`

	// accountTakeSlot gives the chosen account a fresh rkey, so that where
	// it sits on the circle does not keep deciding its chances.
	accountTakeSlot = `UPDATE accounts SET running = running + 1, rkey = random() WHERE tenant_id = $1 AND id = $2`

	jobDispatch = `
UPDATE jobs SET state = 'dispatching', account_id = $3, account_email = $4, attempt = attempt + 1,
	lease_owner = $5, lease_expires_at = $6, started_at = $7, upstream_id = NULL
WHERE tenant_id = $1 AND id = $2
RETURNING ` + executionColumns
)

// placeNext places the head of the pool's unpinned queue on a uniformly
// random free account. It returns nil when the queue is empty or no
// account is free.
func (s *Scheduler) placeNext(ctx context.Context, tx pgx.Tx, pool tenant.Scope, now time.Time) (*execution, error) {
	var jobID string
	err := tx.QueryRow(ctx, nextJob, pool.TenantID, pool.Mode, now).Scan(&jobID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	accountID, email, ok, err := pickAccount(ctx, tx, pool, now)
	if err != nil || !ok {
		return nil, err
	}
	return s.dispatch(ctx, tx, pool, jobID, accountID, email, now)
}

// pickWindow is how many free accounts a placement draws from.
const pickWindow = 64

// pickAccount chooses a free account at random. It reads the free accounts
// that follow a random point on the rkey circle (wrapping round), at most
// pickWindow of them, and picks one of those uniformly. A pool with fewer
// free accounts than that is read whole, so the choice is exactly uniform;
// in a larger one it is uniform among a random window, whose position
// depends on the gaps between keys — fair in the long run, since every
// chosen account draws a fresh key, with little correlation between picks
// because the window is wide. The cost is one index range read whatever
// the pool size. Accounts taken meanwhile by a concurrent placement are
// skipped rather than waited for.
func pickAccount(ctx context.Context, tx pgx.Tx, pool tenant.Scope, now time.Time) (id int64, email string, ok bool, err error) {
	candidates, err := freeWindow(ctx, tx, pool, now)
	if err != nil {
		return 0, "", false, err
	}
	for len(candidates) > 0 {
		i := rand.IntN(len(candidates))
		id = candidates[i]
		var free bool
		err = tx.QueryRow(ctx, freeAccountLock, pool.TenantID, pool.Mode, now, id).Scan(&email, &free)
		if err == nil && free {
			return id, email, true, nil
		}
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return 0, "", false, err
		}
		candidates[i] = candidates[len(candidates)-1]
		candidates = candidates[:len(candidates)-1]
	}
	return 0, "", false, nil
}

// freeWindow returns up to pickWindow free accounts after a random point,
// continuing from the start of the circle when the end is reached.
func freeWindow(ctx context.Context, tx pgx.Tx, pool tenant.Scope, now time.Time) ([]int64, error) {
	r := rand.Float64()
	ids, err := collectIDs(tx.Query(ctx, freeAccountsFrom, pool.TenantID, pool.Mode, now, r, pickWindow))
	if err != nil || len(ids) == pickWindow {
		return ids, err
	}
	more, err := collectIDs(tx.Query(ctx, freeAccountsFrom, pool.TenantID, pool.Mode, now, 0.0, pickWindow-len(ids)))
	if err != nil {
		return nil, err
	}
	for _, id := range more {
		if !slices.Contains(ids, id) { // the wrap reached accounts already read
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func collectIDs(rows pgx.Rows, err error) ([]int64, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

func (s *Scheduler) placePinned(ctx context.Context, tx pgx.Tx, pool tenant.Scope, now time.Time) (*execution, error) {
	var (
		jobID, email string
		accountID    int64
	)
	err := tx.QueryRow(ctx, nextPinned, pool.TenantID, pool.Mode, now).Scan(&jobID, &accountID, &email)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return s.dispatch(ctx, tx, pool, jobID, accountID, email, now)
}

// dispatch takes the slot and hands the job to this replica under a lease.
func (s *Scheduler) dispatch(ctx context.Context, tx pgx.Tx, pool tenant.Scope, jobID string, accountID int64, email string, now time.Time) (*execution, error) {
	if _, err := tx.Exec(ctx, accountTakeSlot, pool.TenantID, accountID); err != nil {
		return nil, err
	}
	return scanExecution(tx.QueryRow(ctx, jobDispatch, pool.TenantID, jobID, accountID, email,
		s.cfg.Owner, now.Add(s.cfg.LeaseTTL), now))
}
