package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/scheduler"
)

// saturation is scenario 4: SatAccounts × SatSlots slots and SatQueued
// jobs waiting behind them, jobs lasting SatJobDuration upstream. For
// SatWindow it measures how long each freed slot stays idle before the
// next job takes it, and the process's peak RSS; then it cancels what is
// still queued and lets the rest finish.
func (b *runner) saturation(ctx context.Context, tag string) (*sample, Invariants, error) {
	c := b.cfg
	simCfg := sim.Config{JobDuration: c.SatJobDuration, Jitter: c.SatJitter, Seed: 1}
	w, err := newWorld(ctx, c, b.dbs, tag, simCfg)
	if err != nil {
		return nil, Invariants{}, err
	}
	defer w.close(b.dbs)
	if err := w.addAccounts(ctx, c.SatAccounts, c.SatSlots); err != nil {
		return nil, Invariants{}, err
	}
	if err := w.newReplicas(ctx, c.Replicas, nil); err != nil {
		return nil, Invariants{}, err
	}
	slots := c.SatAccounts * c.SatSlots
	total := slots + c.SatQueued
	s := newSample()

	b.progress("saturation: queueing %d jobs for %d slots", total, slots)
	activity := w.startActivity(ctx)
	t := time.Now()
	ids, _, _, err := w.createJobs(ctx, total, c.Producers)
	if err != nil {
		return nil, Invariants{}, fmt.Errorf("queue jobs: %w", err)
	}
	s.set("insert_jobs_per_sec", "jobs/s", perSec(total, time.Since(t)))

	b.progress("saturation: running for %s", c.SatWindow)
	stopProfile := b.profile(tag, "saturation")
	meter := startCPU(ctx, w.admin, w.dbName)
	mem, err := startRSS()
	if err != nil {
		return nil, Invariants{}, fmt.Errorf("saturation reads RSS from /proc: %w", err)
	}
	t0 := time.Now()
	w.startReplicas(ctx)
	windowEnd := t0.Add(c.SatWindow)
	for time.Now().Before(windowEnd) && w.finished.Load() < int64(total) {
		select {
		case <-ctx.Done():
			return nil, Invariants{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	windowEnd = time.Now()
	self, pg := meter.stop(ctx)
	_, peak := mem.stop()
	stopProfile()

	canceled, err := w.cancelQueued(ctx)
	if err != nil {
		return nil, Invariants{}, fmt.Errorf("cancel the rest of the queue: %w", err)
	}
	b.progress("saturation: canceled %d jobs still queued; draining", canceled)
	if _, err := w.waitDrained(ctx, int64(total), c.Timeout); err != nil {
		return nil, Invariants{}, err
	}
	w.stopReplicas() // their backends exit and publish their counters
	w.waitQuiet(ctx)
	r, err := w.refills(ctx, c.SatSlots, slots, t0, windowEnd)
	if err != nil {
		return nil, Invariants{}, err
	}
	s.set("fill_ms", "ms", ms(r.fill))
	s.set("refill_p50_ms", "ms", percentile(r.gaps, 50))
	s.set("refill_p99_ms", "ms", percentile(r.gaps, 99))
	s.set("refills", "count", float64(len(r.gaps)))
	s.set("slots_busy_pct", "%", 100*r.busy)
	s.set("jobs_per_sec", "jobs/s", r.rate)
	// The whole bench process: its replicas, the simulator holding every
	// running generation, and the load generator; with -replicas 1 an
	// upper bound on one replica's RSS with every slot full and the queue
	// deep.
	s.set("peak_rss_mb", "MB", float64(peak)/(1<<20))
	s.cpu("", self, pg, max(r.windowDone, 1))
	activity.stop(ctx, s, "", total) // per job queued, whether it ran or was canceled
	w.upstreamRequests(s)
	if err := w.completionLag(ctx, s); err != nil {
		return nil, Invariants{}, fmt.Errorf("completion lag: %w", err)
	}

	inv, err := w.check(ctx, ids, "succeeded", "canceled")
	return s, inv, err
}

// cancelQueued cancels every job still queued and says how many.
func (w *world) cancelQueued(ctx context.Context) (int, error) {
	sched := w.replicas[0].sched
	total := 0
	for {
		jobs, _, err := sched.List(ctx, w.scope, scheduler.ListFilter{State: string(scheduler.StateQueued), Limit: 500})
		if err != nil || len(jobs) == 0 {
			return total, err
		}
		err = parallel(ctx, 8, len(jobs), func(ctx context.Context, i int) error {
			_, err := w.replicas[i%len(w.replicas)].sched.Cancel(ctx, w.scope, jobs[i].ID)
			if e := (*errs.Error)(nil); errors.As(err, &e) && e.Kind == errs.KindConflict {
				return nil // it ended meanwhile
			}
			return err
		})
		if err != nil {
			return total, err
		}
		total += len(jobs)
	}
}

// refill is what the saturation window showed.
type refill struct {
	fill time.Duration // from start until every slot was first taken
	gaps []float64     // ms each freed slot stayed idle, sorted
	busy float64       // share of slot-time in use after the fill
	rate float64       // jobs finished per second after the fill
	done int           // jobs finished after the fill
	// windowDone counts jobs finished anywhere in the window, the
	// denominator of its CPU per job.
	windowDone int
}

const qSlotTimes = `SELECT account_id, started_at, finished_at FROM jobs
WHERE tenant_id = $1 AND account_id IS NOT NULL AND started_at IS NOT NULL`

// slotUse is one job's hold on a slot of an account.
type slotUse struct {
	account       int64
	start, finish time.Time // finish is zero while it runs
}

// refills reads every job's slot use and measures the window [t0, end].
func (w *world) refills(ctx context.Context, maxJobs, slots int, t0, end time.Time) (refill, error) {
	rows, err := w.admin.Query(ctx, qSlotTimes, w.scope.TenantID)
	if err != nil {
		return refill{}, err
	}
	defer rows.Close()
	var uses []slotUse
	for rows.Next() {
		var u slotUse
		var finish *time.Time
		if err := rows.Scan(&u.account, &u.start, &finish); err != nil {
			return refill{}, err
		}
		if finish != nil {
			u.finish = *finish
		}
		uses = append(uses, u)
	}
	if err := rows.Err(); err != nil {
		return refill{}, err
	}
	return measureRefills(uses, maxJobs, slots, t0, end), nil
}

// measureRefills pairs, per account, the k-th freed slot with the
// (maxJobs+k)-th start: since an account never runs more than maxJobs,
// that start is the one that took the k-th freed slot back. Only starts
// within the window count, while the queue was still deep. Start and
// finish times are each transaction's clock at its start, so a gap can
// come out slightly negative; it counts as 0.
func measureRefills(uses []slotUse, maxJobs, slots int, t0, end time.Time) refill {
	type times struct{ starts, ends []time.Time }
	byAcct := map[int64]*times{}
	for _, u := range uses {
		t := byAcct[u.account]
		if t == nil {
			t = &times{}
			byAcct[u.account] = t
		}
		t.starts = append(t.starts, u.start)
		if !u.finish.IsZero() {
			t.ends = append(t.ends, u.finish)
		}
	}
	var r refill
	for _, u := range uses {
		if !u.finish.IsZero() && u.finish.After(t0) && !u.finish.After(end) {
			r.windowDone++
		}
	}
	full := t0
	for _, t := range byAcct {
		slices.SortFunc(t.starts, time.Time.Compare)
		slices.SortFunc(t.ends, time.Time.Compare)
		if len(t.starts) >= maxJobs {
			full = maxTime(full, t.starts[maxJobs-1])
		}
		for k := 0; k < len(t.ends) && maxJobs+k < len(t.starts); k++ {
			if next := t.starts[maxJobs+k]; !next.After(end) {
				r.gaps = append(r.gaps, max(ms(next.Sub(t.ends[k])), 0))
			}
		}
	}
	slices.Sort(r.gaps)
	r.fill = full.Sub(t0)
	span := end.Sub(full)
	if span <= 0 {
		return r
	}
	var used time.Duration
	for _, u := range uses {
		stop := u.finish
		if stop.IsZero() || stop.After(end) {
			stop = end
		}
		if lo := maxTime(u.start, full); stop.After(lo) {
			used += stop.Sub(lo)
		}
		if !u.finish.IsZero() && u.finish.After(full) && !u.finish.After(end) {
			r.done++
		}
	}
	r.busy = float64(used) / (float64(span) * float64(slots))
	r.rate = perSec(r.done, span)
	return r
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
