package bench

import (
	"context"
	"sort"
	"time"

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

// pgActivity is how much Postgres did, cumulatively: WAL fsyncs of the
// whole cluster (pg_stat_wal has no per-database view, so other databases'
// writes on a shared server count too), and the scenario database's
// transactions and, where pg_stat_statements is loaded, statements.
type pgActivity struct {
	walSyncs, xacts, stmts float64
	statements             bool // stmts came from pg_stat_statements
}

// Where each per-job figure comes from; the report carries these.
const (
	srcWAL        = "pg_stat_wal.wal_sync (whole cluster)"
	srcXacts      = "pg_stat_database.xact_commit + xact_rollback"
	srcStatements = "pg_stat_statements calls (this database)"
	srcStmtsXacts = "pg_stat_database.xact_commit + xact_rollback: transactions, a lower bound; pg_stat_statements is not loaded"
)

const (
	qActivity = `SELECT (SELECT wal_sync FROM pg_stat_wal),
	(SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1)`
	qStatements = `SELECT coalesce(sum(calls), 0)::float8 FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)`
)

// statementsAvailable reports whether pg_stat_statements counts this
// database's statements, creating the extension in it if the server
// preloads the library. The bench never changes the server's settings.
func statementsAvailable(ctx context.Context, admin *pgxpool.Pool) bool {
	var loaded bool
	err := admin.QueryRow(ctx, `SELECT current_setting('shared_preload_libraries') ~ 'pg_stat_statements'`).Scan(&loaded)
	if err != nil || !loaded {
		return false
	}
	if _, err := admin.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		return false
	}
	var n int64
	return admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_statements`).Scan(&n) == nil
}

// readActivity reads the counters now; ok is false if Postgres would not
// say. Backends publish their counts when idle (at most once a second) and
// when they exit, so read "after" once the measured phase's pools are
// closed and their backends gone (see waitQuiet).
func readActivity(ctx context.Context, admin *pgxpool.Pool, db string, statements bool) (a pgActivity, ok bool) {
	if err := admin.QueryRow(ctx, qActivity, db).Scan(&a.walSyncs, &a.xacts); err != nil {
		return a, false
	}
	if statements {
		a.statements = admin.QueryRow(ctx, qStatements, db).Scan(&a.stmts) == nil
	}
	return a, true
}

// recordActivity sets prefix+"wal_fsyncs_per_job", prefix+"stmts_per_job"
// and prefix+"xacts_per_job" from the growth since before, and names the
// sources the figures came from.
func (s *sample) recordActivity(prefix string, before, after pgActivity, jobs int) {
	if jobs <= 0 {
		return
	}
	n := float64(jobs)
	xacts := (after.xacts - before.xacts) / n
	s.set(prefix+"wal_fsyncs_per_job", "fsyncs", (after.walSyncs-before.walSyncs)/n)
	s.source(prefix+"wal_fsyncs_per_job", srcWAL)
	if before.statements && after.statements {
		s.set(prefix+"stmts_per_job", "stmts", (after.stmts-before.stmts)/n)
		s.source(prefix+"stmts_per_job", srcStatements)
	} else {
		s.set(prefix+"stmts_per_job", "xacts", xacts)
		s.source(prefix+"stmts_per_job", srcStmtsXacts)
	}
	s.set(prefix+"xacts_per_job", "xacts", xacts)
	s.source(prefix+"xacts_per_job", srcXacts)
}

// activityMeter reads the counters at the start of a phase and records
// their growth per job at its end.
type activityMeter struct {
	admin      *pgxpool.Pool
	db         string
	statements bool
	before     pgActivity
	ok         bool
}

func (w *world) startActivity(ctx context.Context) *activityMeter {
	m := &activityMeter{admin: w.admin, db: w.dbName, statements: w.statements}
	m.before, m.ok = readActivity(ctx, m.admin, m.db, m.statements)
	return m
}

// stop records the phase's figures on s under prefix. Call it once the
// phase's own connections are closed (see waitQuiet).
func (m *activityMeter) stop(ctx context.Context, s *sample, prefix string, jobs int) {
	after, ok := readActivity(ctx, m.admin, m.db, m.statements)
	if m.ok && ok {
		s.recordActivity(prefix, m.before, after, jobs)
	}
}

// waitQuiet waits (up to 5s) until no connection to the scenario database
// is left but the bench's own, so every closed pool's backends have
// published their counters.
func (w *world) waitQuiet(ctx context.Context) {
	for range 100 {
		var n int32
		err := w.admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1`, w.dbName).Scan(&n)
		if err != nil || n <= w.admin.Stat().TotalConns() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
