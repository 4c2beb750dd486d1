package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/poolgate/poolgate/internal/usage"
)

// Invariants are the checks every scenario run ends with, judged from the
// simulator's side (what the upstream saw) and from the database.
type Invariants struct {
	// MaxPeak is the most jobs any account ran at once upstream; PeakOver
	// counts accounts whose peak exceeded their maxJobs (invariant 1).
	MaxPeak  int `json:"max_peak"`
	PeakOver int `json:"peak_over_max"`
	// Lost counts accepted jobs that are not terminal (invariant 2);
	// NotSucceeded those that ended otherwise than expected.
	Lost         int `json:"lost"`
	NotSucceeded int `json:"not_succeeded"`
	// LeakedSlots counts accounts whose running count differs from their
	// jobs in flight; SlotsHeld and InFlight are the two sums (invariant 3).
	LeakedSlots int `json:"leaked_slots"`
	SlotsHeld   int `json:"slots_held"`
	InFlight    int `json:"in_flight"`
	// DoubleSubmits counts attempts the upstream received more than once
	// (invariant 4).
	DoubleSubmits int `json:"double_submits"`
}

// Broken lists the invariants that do not hold, in words.
func (v Invariants) Broken() []string {
	var out []string
	if v.PeakOver > 0 {
		out = append(out, fmt.Sprintf("%d accounts ran more than maxJobs at once (max peak %d)", v.PeakOver, v.MaxPeak))
	}
	if v.Lost > 0 {
		out = append(out, fmt.Sprintf("%d accepted jobs never ended", v.Lost))
	}
	if v.NotSucceeded > 0 {
		out = append(out, fmt.Sprintf("%d jobs ended otherwise than succeeded", v.NotSucceeded))
	}
	if v.LeakedSlots > 0 || v.SlotsHeld != v.InFlight {
		out = append(out, fmt.Sprintf("%d accounts' slot counts differ from their jobs in flight (slots %d, in flight %d)",
			v.LeakedSlots, v.SlotsHeld, v.InFlight))
	}
	if v.DoubleSubmits > 0 {
		out = append(out, fmt.Sprintf("%d attempts were submitted upstream more than once", v.DoubleSubmits))
	}
	return out
}

func (v *Invariants) add(o Invariants) {
	v.MaxPeak = max(v.MaxPeak, o.MaxPeak)
	v.PeakOver += o.PeakOver
	v.Lost += o.Lost
	v.NotSucceeded += o.NotSucceeded
	v.LeakedSlots += o.LeakedSlots
	v.SlotsHeld += o.SlotsHeld
	v.InFlight += o.InFlight
	v.DoubleSubmits += o.DoubleSubmits
}

// Read-only verification queries. They judge the scheduler's tables from
// outside, as the scheduler's own tests do.
const (
	qOpenJobs = `SELECT (SELECT count(*) FROM jobs WHERE state = 'queued')
	+ (SELECT count(*) FROM jobs WHERE state IN ('dispatching', 'running'))`

	qEnded = `SELECT count(*) FILTER (WHERE state IN ('succeeded', 'failed', 'canceled')),
	count(*) FILTER (WHERE state = ANY($3))
FROM jobs WHERE tenant_id = $1 AND id = ANY($2)`

	qSlots = `SELECT
	(SELECT coalesce(sum(held), 0) FROM account_slots),
	(SELECT count(*) FROM jobs WHERE state IN ('dispatching', 'running')),
	(SELECT count(*) FROM account_slots a WHERE held <> (SELECT count(*) FROM jobs j
		WHERE j.tenant_id = a.tenant_id AND j.account_id = a.id AND j.state IN ('dispatching', 'running')))`
)

// waitDrained waits until expect jobs have ended (by the finish hook's
// count) and the database confirms that nothing is queued or in flight,
// then rolls up the usage left pending. It returns when that was done.
func (w *world) waitDrained(ctx context.Context, expect int64, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		if w.finished.Load() >= expect {
			var open int
			if err := w.admin.QueryRow(ctx, qOpenJobs).Scan(&open); err != nil {
				return time.Time{}, err
			}
			if open == 0 {
				// The phase pays for all of its usage accounting: what
				// the replicas' roll-ups have not moved yet is moved now.
				if err := usage.RollupAll(ctx, w.admin, "bench/rollup"); err != nil {
					return time.Time{}, err
				}
				return time.Now(), nil
			}
		}
		if time.Now().After(deadline) {
			var open int
			w.admin.QueryRow(ctx, qOpenJobs).Scan(&open)
			return time.Time{}, fmt.Errorf("%d jobs still queued or in flight after %s (%d of %d ended)",
				open, timeout, w.finished.Load(), expect)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// check judges a run: ids are the accepted jobs, which must all be
// terminal and in one of the good states.
func (w *world) check(ctx context.Context, ids []string, good ...string) (Invariants, error) {
	var v Invariants
	st := w.sim.Stats()
	for email, a := range st.Accounts {
		v.MaxPeak = max(v.MaxPeak, a.Peak)
		if m, ok := w.maxJobs[email]; !ok || a.Peak > m {
			v.PeakOver++ // an account the upstream saw but we never registered is as bad
		}
	}
	for _, attempts := range st.Jobs {
		for _, n := range attempts {
			if n > 1 {
				v.DoubleSubmits++
			}
		}
	}
	if len(good) == 0 {
		good = []string{"succeeded"}
	}
	for start := 0; start < len(ids); start += 10_000 {
		chunk := ids[start:min(start+10_000, len(ids))]
		var ended, ok int
		if err := w.admin.QueryRow(ctx, qEnded, w.scope.TenantID, chunk, good).Scan(&ended, &ok); err != nil {
			return v, err
		}
		v.Lost += len(chunk) - ended
		v.NotSucceeded += ended - ok
	}
	if err := w.admin.QueryRow(ctx, qSlots).Scan(&v.SlotsHeld, &v.InFlight, &v.LeakedSlots); err != nil {
		return v, err
	}
	return v, nil
}
