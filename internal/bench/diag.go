package bench

import (
	"context"
	"sort"

	"github.com/jackc/pgx/v5/pgxpool"
)

// pgCounters are Postgres's cumulative access counters for the scenario's
// database: how many scans each table and index served and how many
// entries they read. Their growth per job shows where Postgres spends its
// time without needing pg_stat_statements. Backends publish them at most
// once a second and when they exit, so deltas are taken across pools
// that have been closed.
type pgCounters map[string]float64

const qCounters = `
SELECT 'table.' || relname || '.seq_scan', seq_scan FROM pg_stat_user_tables
UNION ALL SELECT 'table.' || relname || '.seq_tup_read', seq_tup_read FROM pg_stat_user_tables
UNION ALL SELECT 'table.' || relname || '.tup_upd', n_tup_upd FROM pg_stat_user_tables
UNION ALL SELECT 'table.' || relname || '.tup_hot_upd', n_tup_hot_upd FROM pg_stat_user_tables
UNION ALL SELECT 'index.' || indexrelname || '.scan', idx_scan FROM pg_stat_user_indexes
UNION ALL SELECT 'index.' || indexrelname || '.tup_read', idx_tup_read FROM pg_stat_user_indexes`

func readCounters(ctx context.Context, admin *pgxpool.Pool) pgCounters {
	rows, err := admin.Query(ctx, qCounters)
	if err != nil {
		return nil
	}
	defer rows.Close()
	out := pgCounters{}
	for rows.Next() {
		var name string
		var v float64
		if rows.Scan(&name, &v) == nil {
			out[name] = v
		}
	}
	return out
}

// perJob returns the counters that grew since before, per job.
func (c pgCounters) perJob(before pgCounters, jobs int) map[string]float64 {
	if c == nil || before == nil || jobs <= 0 {
		return nil
	}
	out := map[string]float64{}
	for k, v := range c {
		if d := v - before[k]; d > 0 {
			out[k] = round(d / float64(jobs))
		}
	}
	return out
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
