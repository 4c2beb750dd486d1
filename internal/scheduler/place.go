package scheduler

import (
	"context"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/tenant"
)

// dispatchLoop places jobs whenever it is woken (a job was queued or a slot
// freed, here or on another replica) and at least every WakeInterval. A
// wake-up waits DispatchCooldown first, so that a burst of them (every
// insert batch and every completion wakes it) makes one round that places
// a batch, not a round per job.
func (s *Scheduler) dispatchLoop(ctx context.Context) {
	tick := time.NewTicker(s.cfg.WakeInterval)
	defer tick.Stop()
	for {
		for {
			placed, err := s.placeRound(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Error("placement failed", "err", err)
				}
				break
			}
			if !placed {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
			if !sleep(ctx, s.cfg.DispatchCooldown) {
				return
			}
			select { // the wake-ups of the cooldown are answered by this round
			case <-s.wake:
			default:
			}
		case <-tick.C:
			// The releases that an end-of-job fold found locked, and those
			// of deleted accounts.
			if err := accounts.FoldReleases(ctx, s.cfg.Pool); err != nil && ctx.Err() == nil {
				s.log.Error("folding slot releases failed", "err", err)
			}
		}
	}
}

// placeRound places what it can in every pool with a free account and
// reports whether it placed anything: then slots may have freed meanwhile
// (here, or on a replica whose completer does not wake this one), and the
// dispatcher goes round again at once. (Stopping after a partial batch
// saves a few empty rounds but leaves those slots idle until the next
// wake-up, which measured worse for refill latency.)
func (s *Scheduler) placeRound(ctx context.Context) (placed bool, err error) {
	pools, err := accounts.FreePools(ctx, s.cfg.Pool)
	if err != nil {
		return false, err
	}
	rand.Shuffle(len(pools), func(i, j int) { pools[i], pools[j] = pools[j], pools[i] })
	for _, p := range pools {
		n, err := s.placePool(ctx, p)
		if err != nil {
			return placed, err
		}
		placed = placed || n > 0
	}
	return placed, nil
}

// placePool places up to Batch jobs of one pool in one transaction, then
// starts following each.
func (s *Scheduler) placePool(ctx context.Context, pool tenant.Scope) (int, error) {
	var placed []*execution
	err := pgx.BeginFunc(ctx, s.cfg.Pool, func(tx pgx.Tx) error {
		var err error
		placed, err = s.placeBatch(ctx, tx, pool)
		return err
	})
	if err != nil {
		return 0, err
	}
	s.preloadCredentials(ctx, pool, placed)
	for _, e := range placed {
		s.metrics.placed(e)
		s.follow(e, s.submit)
	}
	return len(placed), nil
}

// preloadCredentials opens the cookies of a batch's accounts in one query
// before its jobs start; each job falls back to reading its own if this
// fails.
func (s *Scheduler) preloadCredentials(ctx context.Context, pool tenant.Scope, placed []*execution) {
	if len(placed) == 0 {
		return
	}
	versions := make(map[int64]string, len(placed))
	for _, e := range placed {
		versions[e.accountID] = e.credVersion
	}
	if err := s.cfg.Accounts.Preload(ctx, pool, versions); err != nil && !isShutdown(ctx, err) {
		s.log.Warn("preload account credentials", "pool", pool.TenantID, "mode", pool.Mode, "err", err)
	}
}

// slots is what one placement transaction holds: the accounts it locked,
// their free slots, and the slots it has handed out so far.
type slots struct {
	free  map[int64]*accounts.Free
	order []int64 // accounts with a free slot left, for uniform picks
	taken map[int64]int32
}

func newSlots() *slots {
	return &slots{free: map[int64]*accounts.Free{}, taken: map[int64]int32{}}
}

// add records accounts the transaction locked.
func (sl *slots) add(fs []accounts.Free) {
	for i := range fs {
		f := fs[i]
		if _, dup := sl.free[f.ID]; dup {
			continue
		}
		sl.free[f.ID] = &f
		sl.order = append(sl.order, f.ID)
	}
}

func (sl *slots) total() int {
	n := 0
	for _, id := range sl.order {
		n += sl.free[id].Slots
	}
	return n
}

// take hands out one slot of account id; it reports false if none is left.
func (sl *slots) take(id int64) bool {
	f := sl.free[id]
	if f == nil || f.Slots == 0 {
		return false
	}
	f.Slots--
	sl.taken[id]++
	if f.Slots == 0 {
		for i, o := range sl.order {
			if o == id {
				sl.order[i] = sl.order[len(sl.order)-1]
				sl.order = sl.order[:len(sl.order)-1]
				break
			}
		}
	}
	return true
}

// pick hands out a slot of an account chosen uniformly among those that
// still have one and fit a job asking for provider want (nil: any).
func (sl *slots) pick(want *string) (int64, bool) {
	fit := sl.order
	if want != nil {
		fit = nil
		for _, id := range sl.order {
			if accounts.Fits(want, sl.free[id].Provider) {
				fit = append(fit, id)
			}
		}
	}
	if len(fit) == 0 {
		return 0, false
	}
	id := fit[rand.IntN(len(fit))]
	sl.take(id)
	return id, true
}

// providers lists the providers of the accounts that still have a slot.
func (sl *slots) providers() []string {
	var out []string
	for _, id := range sl.order {
		if p := sl.free[id].Provider; !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// placement is one job and the account it goes to.
type placement struct {
	jobID     string
	accountID int64
}

// placeBatch places up to Batch queued jobs of the pool: pinned jobs first,
// then the unpinned queue by priority and age, each on an account chosen
// uniformly among those that still have a free slot after the earlier
// picks. It locks only as many queued jobs as there are free slots, takes
// the slots and dispatches the jobs in a handful of statements, whatever
// the batch size.
func (s *Scheduler) placeBatch(ctx context.Context, tx pgx.Tx, pool tenant.Scope) ([]*execution, error) {
	now := s.now()
	sl := newSlots()
	ps, err := s.placePinned(ctx, tx, pool, now, sl, s.cfg.Batch)
	if err != nil {
		return nil, err
	}
	if left := s.cfg.Batch - len(ps); left > 0 {
		more, err := s.placeUnpinned(ctx, tx, pool, now, sl, left)
		if err != nil {
			return nil, err
		}
		ps = append(ps, more...)
	}
	if len(ps) == 0 {
		return nil, nil
	}
	// Take the slots, and fold the pending releases of every account this
	// transaction holds while it holds them.
	var (
		locked []accounts.Free
		ns     []int32
	)
	for id, f := range sl.free {
		if n := sl.taken[id]; n > 0 || f.Pending > 0 {
			locked, ns = append(locked, *f), append(ns, n)
		}
	}
	if err := accounts.TakeSlots(ctx, tx, pool, locked, ns); err != nil {
		return nil, err
	}
	placed, err := s.dispatch(ctx, tx, pool, ps, sl, now)
	if err != nil {
		return nil, err
	}
	if err := runAttemptHook(ctx, tx, s.cfg.OnStarted, placed, now); err != nil {
		return nil, err
	}
	return placed, queueDepthAdd(ctx, tx, pool, sideOut, len(placed))
}

// pickWindow is which eligible accounts a placement reads: a batch draws
// from them, so the window holds twice the batch in free slots (see
// accounts.Window), and at least 16 accounts, or a quarter of the batch if
// that is more.
//
// The window's width in accounts is what a placement costs in a large
// pool: every account a batch picks costs a capacity-row update on the
// take and another on the fold, a release row and a usage row. A window
// of 64 spread a 64-job batch over ~40 accounts in a pool of 10,000 (10
// in a pool of 10), and placement there ran 1.27x slower than at 10
// accounts (median of five rounds); 16 puts ~4 jobs on each account it
// picks (a 10-account pool puts 6.4), and ran 1.07x (BENCHMARKS.md, sixth
// session). Each pick stays uniform over time among all accounts (the
// window starts at a random point, and a taken account draws a fresh key;
// TestWindowPicksAreUniformOverTime), as the README says, not within one
// batch.
func (s *Scheduler) pickWindow() accounts.Window {
	return accounts.Window{Min: max(16, s.cfg.Batch/4), Max: max(64, 2*s.cfg.Batch), Slots: 2 * s.cfg.Batch}
}

const (
	// jobPinnedEmails lists the accounts that queued pinned jobs wait for:
	// usually none, read from jobs_pinned_idx.
	jobPinnedEmails = `
SELECT DISTINCT pinned_email FROM jobs
WHERE tenant_id = $1 AND mode = $2 AND state = 'queued' AND pinned_email IS NOT NULL
	AND run_after <= $3 AND queue_deadline > $3`

	// jobLockPinned locks, per account, as many of its oldest pinned jobs
	// as it has free slots.
	jobLockPinned = `
SELECT j.id, x.account_id FROM unnest($4::text[], $5::bigint[], $6::integer[]) AS x (email, account_id, n),
LATERAL (
	SELECT id, priority, created_at FROM jobs
	WHERE tenant_id = $1 AND mode = $2 AND state = 'queued' AND pinned_email = x.email
		AND run_after <= $3 AND queue_deadline > $3
	ORDER BY priority DESC, created_at, id
	LIMIT x.n
	FOR UPDATE SKIP LOCKED
) j
ORDER BY j.priority DESC, j.created_at, j.id`

	// jobLockQueued locks the head of the pool's unpinned queue: FIFO
	// within priority, at most $4 jobs, of those that any provider or one
	// of the providers $5 may run.
	jobLockQueued = `
SELECT id, provider FROM jobs
WHERE tenant_id = $1 AND mode = $2 AND state = 'queued' AND pinned_email IS NULL
	AND run_after <= $3 AND queue_deadline > $3
	AND (provider IS NULL OR provider = ANY($5))
ORDER BY priority DESC, created_at, id
LIMIT $4
FOR UPDATE SKIP LOCKED`

	// jobQueuedFor tells whether unpinned jobs wait for provider $4
	// (jobs_provider_queued_idx).
	jobQueuedFor = `
SELECT EXISTS (SELECT 1 FROM jobs
WHERE tenant_id = $1 AND mode = $2 AND state = 'queued' AND pinned_email IS NULL AND provider = $4
	AND run_after <= $3 AND queue_deadline > $3)`
)

// placePinned places pinned jobs whose accounts have a free slot.
func (s *Scheduler) placePinned(ctx context.Context, tx pgx.Tx, pool tenant.Scope, now time.Time, sl *slots, limit int) ([]placement, error) {
	rows, err := tx.Query(ctx, jobPinnedEmails, pool.TenantID, pool.Mode, now)
	if err != nil {
		return nil, err
	}
	emails, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(emails) == 0 {
		return nil, err
	}
	free, err := accounts.LockFreeByEmail(ctx, tx, pool, now, emails)
	if err != nil || len(free) == 0 {
		return nil, err
	}
	sl.add(free)
	var (
		es  = make([]string, len(free))
		ids = make([]int64, len(free))
		ns  = make([]int32, len(free))
	)
	for i, f := range free {
		es[i], ids[i], ns[i] = f.Email, f.ID, int32(min(f.Slots, limit))
	}
	rows, err = tx.Query(ctx, jobLockPinned, pool.TenantID, pool.Mode, now, es, ids, ns)
	if err != nil {
		return nil, err
	}
	var (
		out []placement
		p   placement
	)
	_, err = pgx.ForEachRow(rows, []any{&p.jobID, &p.accountID}, func() error {
		if len(out) < limit && sl.take(p.accountID) {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// placeUnpinned places up to limit jobs from the head of the unpinned
// queue on random accounts with a free slot.
func (s *Scheduler) placeUnpinned(ctx context.Context, tx pgx.Tx, pool tenant.Scope, now time.Time, sl *slots, limit int) ([]placement, error) {
	if err := s.lockWindow(ctx, tx, pool, now, sl, ""); err != nil {
		return nil, err
	}
	// A provider the uniform window missed (a few API keys among many
	// cookie accounts) gets a window of its own when jobs wait for it.
	for _, p := range s.providerNames() {
		if slices.Contains(sl.providers(), p) {
			continue
		}
		var waiting bool
		if err := tx.QueryRow(ctx, jobQueuedFor, pool.TenantID, pool.Mode, now, p).Scan(&waiting); err != nil {
			return nil, err
		}
		if waiting {
			if err := s.lockWindow(ctx, tx, pool, now, sl, p); err != nil {
				return nil, err
			}
		}
	}
	n := min(limit, sl.total())
	if n == 0 {
		return nil, nil
	}
	rows, err := tx.Query(ctx, jobLockQueued, pool.TenantID, pool.Mode, now, n, sl.providers())
	if err != nil {
		return nil, err
	}
	var (
		out  []placement
		id   string
		want *string
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &want}, func() error {
		// A job none of the locked accounts fits stays queued for a
		// later round; the next ones may still fit.
		if acct, ok := sl.pick(want); ok {
			out = append(out, placement{jobID: id, accountID: acct})
		}
		return nil
	})
	return out, err
}

// lockWindow locks a window of eligible accounts (of provider prov, if not
// "") that this transaction does not hold yet, and adds them to sl.
func (s *Scheduler) lockWindow(ctx context.Context, tx pgx.Tx, pool tenant.Scope, now time.Time, sl *slots, prov string) error {
	window, err := accounts.FreeWindow(ctx, tx, pool, now, s.pickWindow(), prov)
	if err != nil {
		return err
	}
	fresh := window[:0]
	for _, id := range window {
		if _, locked := sl.free[id]; !locked {
			fresh = append(fresh, id)
		}
	}
	free, err := accounts.LockFree(ctx, tx, pool, now, fresh)
	if err != nil {
		return err
	}
	sl.add(free)
	return nil
}

// Statements that join a batch through unnest carry the tenant in the
// unnested rows and join on the whole primary key, never "tenant_id = $1":
// before Postgres has statistics for jobs (a young database, or one whose
// autovacuum is off) it takes a tenant restriction for a selective one and
// reads every row of the tenant, where the join probes the key once a row.
const jobDispatch = `
UPDATE jobs j SET state = 'dispatching', account_id = x.account_id, account_email = x.email,
	attempt = j.attempt + 1, lease_owner = $2, lease_expires_at = $3, started_at = $4, upstream_id = NULL
FROM unnest($1::bigint[], $5::text[], $6::bigint[], $7::text[]) AS x (tenant_id, id, account_id, email)
WHERE j.tenant_id = x.tenant_id AND j.id = x.id
RETURNING ` + executionColumnsJ

// dispatch hands the placed jobs to this replica under a lease.
func (s *Scheduler) dispatch(ctx context.Context, tx pgx.Tx, pool tenant.Scope, ps []placement, sl *slots, now time.Time) ([]*execution, error) {
	var (
		tenants = make([]int64, len(ps))
		jobIDs  = make([]string, len(ps))
		acctIDs = make([]int64, len(ps))
		emails  = make([]string, len(ps))
	)
	for i, p := range ps {
		tenants[i], jobIDs[i], acctIDs[i], emails[i] = pool.TenantID, p.jobID, p.accountID, sl.free[p.accountID].Email
	}
	rows, err := tx.Query(ctx, jobDispatch, tenants, s.cfg.Owner, now.Add(s.cfg.LeaseTTL), now,
		jobIDs, acctIDs, emails)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*execution, error) {
		e, err := scanExecution(r)
		if err == nil {
			e.credVersion = sl.free[e.accountID].Version
		}
		return e, err
	})
}
