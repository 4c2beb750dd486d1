package bench

import (
	"context"
	"slices"
	"strconv"
	"time"
)

// upstreamRequests records what the scenario's jobs cost the upstream:
// every request naming a job (submits, status reads, lookups, cancels), as
// the simulator counted them, per job that reached it. Jobs canceled while
// still queued never did and do not count.
func (w *world) upstreamRequests(s *sample) {
	st := w.sim.Stats()
	if len(st.Requests) == 0 {
		return
	}
	total := 0
	for _, n := range st.Requests {
		total += n
	}
	s.set("upstream_requests_per_job", "requests", float64(total)/float64(len(st.Requests)))
}

const qSucceeded = `SELECT id, attempt, finished_at FROM jobs WHERE tenant_id = $1 AND state = 'succeeded'`

// completionLag records how late poolgate saw succeeded jobs end: from
// the end of the generation upstream (the simulator's clock) to the
// job's finished_at (the completer's), in ms.
func (w *world) completionLag(ctx context.Context, s *sample) error {
	ends := w.sim.Ends()
	rows, err := w.admin.Query(ctx, qSucceeded, w.scope.TenantID)
	if err != nil {
		return err
	}
	defer rows.Close()
	var lags []float64
	for rows.Next() {
		var id string
		var attempt int
		var finished time.Time
		if err := rows.Scan(&id, &attempt, &finished); err != nil {
			return err
		}
		if end, ok := ends[id][strconv.Itoa(attempt)]; ok {
			lags = append(lags, ms(finished.Sub(end)))
		}
	}
	if err := rows.Err(); err != nil || len(lags) == 0 {
		return err
	}
	slices.Sort(lags)
	s.set("completion_lag_p50_ms", "ms", percentile(lags, 50))
	s.set("completion_lag_p99_ms", "ms", percentile(lags, 99))
	s.set("completion_lag_max_ms", "ms", lags[len(lags)-1])
	return nil
}
