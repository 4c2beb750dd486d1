package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/retention"
	"github.com/poolgate/poolgate/internal/scheduler"
)

// soak is scenario 6: does the database stay the same size under steady
// load when retention is short? Producers queue SoakRate jobs a second for
// SoakDuration through the scenario-1 pool while the retention service
// (with every period SoakRetention, cleaning every second, as serve wires
// it through Config.Cleanups) deletes what has expired. Every few seconds
// it samples the size of the database's tables. Flat means the size at the
// end is about the size at half time: deletes keep up and autovacuum
// reuses the space they free (the soak vacuums in its place on a server
// with autovacuum off).
func (b *runner) soak(ctx context.Context, tag string) (*sample, Invariants, error) {
	c := b.cfg
	if c.Cleanups == nil {
		return nil, Invariants{}, fmt.Errorf("soak: no retention cleanups were wired (Config.Cleanups)")
	}
	w, err := newWorld(ctx, c, b.dbs, tag, sim.Config{JobDuration: c.SoakJobDuration, Seed: 1})
	if err != nil {
		return nil, Invariants{}, err
	}
	defer w.close(b.dbs)
	if err := w.addAccounts(ctx, c.Accounts, c.Slots); err != nil {
		return nil, Invariants{}, err
	}
	if err := w.newReplicas(ctx, c.Replicas, nil); err != nil {
		return nil, Invariants{}, err
	}
	clean, err := retention.New(retention.Config{
		DB: w.admin, Logger: c.Logger, Interval: time.Second, Pause: -1,
		Cleanups: c.Cleanups(c.SoakRetention),
	})
	if err != nil {
		return nil, Invariants{}, err
	}
	w.startReplicas(ctx)

	b.progress("soak: %d jobs/s for %s, everything kept %s", c.SoakRate, c.SoakDuration, c.SoakRetention)
	runCtx, stop := context.WithTimeout(ctx, c.SoakDuration)
	defer stop()
	var (
		wg       sync.WaitGroup
		accepted int
		deleted  int64
		cleaning time.Duration // spent in retention passes
		prodErr  error
		sizes    []dbSize
	)
	wg.Go(func() { accepted, prodErr = w.produceSteadily(runCtx, c.SoakRate) })
	wg.Go(func() {
		for t := time.NewTicker(time.Second); ; {
			select {
			case <-runCtx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			t := time.Now()
			p, err := clean.RunOnce(runCtx)
			cleaning += time.Since(t)
			if err != nil && runCtx.Err() == nil {
				b.progress("soak: retention pass: %v", err)
			}
			for _, n := range p.Deleted {
				deleted += n
			}
		}
	})
	// Deleted and updated rows leave dead tuples that only vacuum makes
	// reusable. Where the server runs no autovacuum (CI machines turn it
	// off), the soak vacuums as autovacuum would, once a naptime, and says
	// so in its figures.
	var autovacuum string
	if err := w.admin.QueryRow(ctx, "SELECT current_setting('autovacuum')").Scan(&autovacuum); err != nil {
		return nil, Invariants{}, err
	}
	standIn := autovacuum != "on"
	if standIn {
		b.progress("soak: the server runs no autovacuum; vacuuming every %s in its place", soakNaptime)
	}
	t0, lastVacuum := time.Now(), time.Now()
	for tick := time.NewTicker(5 * time.Second); runCtx.Err() == nil; {
		select {
		case <-runCtx.Done():
		case <-tick.C:
			if standIn && time.Since(lastVacuum) >= soakNaptime {
				if _, err := w.admin.Exec(ctx, "VACUUM"); err != nil {
					b.progress("soak: vacuum: %v", err)
				}
				lastVacuum = time.Now()
			}
			if sz, err := w.size(ctx); err == nil {
				sz.at = time.Since(t0)
				sizes = append(sizes, sz)
			}
		}
	}
	wg.Wait()
	if prodErr != nil {
		return nil, Invariants{}, fmt.Errorf("queue jobs: %w", prodErr)
	}
	if _, err := w.waitDrained(ctx, int64(accepted), c.Timeout); err != nil {
		return nil, Invariants{}, err
	}
	end, err := w.size(ctx)
	if err != nil {
		return nil, Invariants{}, err
	}
	end.at = time.Since(t0)
	sizes = append(sizes, end)
	w.stopReplicas()

	s := newSample()
	s.set("jobs_per_sec", "jobs/s", perSec(accepted, c.SoakDuration))
	s.set("jobs", "jobs", float64(accepted))
	s.set("deleted_rows", "rows", float64(deleted))
	// How much of the time one replica spends deleting: the figure that
	// would say whether time partitions (dropping a day at once) are worth
	// their complexity.
	s.set("retention_busy_pct", "%", 100*cleaning.Seconds()/c.SoakDuration.Seconds())
	if deleted > 0 {
		s.set("retention_us_per_row", "µs", float64(cleaning.Microseconds())/float64(deleted))
	}
	if standIn {
		s.set("vacuum_stand_in", "bool", 1)
	}
	// The tables grow until vacuum has run a few times (a btree gives
	// pages back for reuse only on the second vacuum after a delete);
	// after that, flat means the last third of the run adds nothing.
	late := sizeAt(sizes, end.at*2/3)
	s.set("db_mb_two_thirds", "MB", mb(late.bytes))
	s.set("db_mb_end", "MB", mb(end.bytes))
	s.set("jobs_mb_end", "MB", mb(end.jobsBytes))
	s.set("jobs_rows_end", "rows", float64(end.jobsRows))
	if late.bytes > 0 {
		s.set("db_growth_last_third", "ratio", float64(end.bytes)/float64(late.bytes))
	}
	for _, sz := range sizes {
		b.progress("soak: %5.0fs  tables %6.1f MB  jobs %6.1f MB  %7d job rows",
			sz.at.Seconds(), mb(sz.bytes), mb(sz.jobsBytes), sz.jobsRows)
	}
	if rows, err := w.admin.Query(ctx, qLargestTables); err == nil {
		for rows.Next() {
			var name string
			var bytes int64
			if rows.Scan(&name, &bytes) == nil {
				b.progress("soak: at the end %-24s %6.1f MB", name, mb(bytes))
			}
		}
		rows.Close()
	}

	// The finished rows are gone by design, so a lost job shows as an
	// accepted job the finish hook never reported; the rest of the
	// invariants (peaks, double submissions, leaked slots) are judged as
	// in every scenario.
	inv, err := w.check(ctx, nil)
	inv.Lost = accepted - int(w.finished.Load())
	return s, inv, err
}

// soakNaptime is how often the soak vacuums where the server does not:
// autovacuum_naptime's default.
const soakNaptime = time.Minute

// dbSize is one sample of the scenario database's size.
type dbSize struct {
	at               time.Duration
	bytes, jobsBytes int64 // tables with their indexes and TOAST
	jobsRows         int64
}

// qSize reads the size of every table in the public schema and of jobs.
const qSize = `
SELECT (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm')),
	pg_total_relation_size('jobs'),
	(SELECT count(*) FROM jobs)`

// qLargestTables names the largest tables, for the progress log.
const qLargestTables = `
SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'
ORDER BY 2 DESC LIMIT 6`

func (w *world) size(ctx context.Context) (dbSize, error) {
	var sz dbSize
	err := w.admin.QueryRow(ctx, qSize).Scan(&sz.bytes, &sz.jobsBytes, &sz.jobsRows)
	return sz, err
}

// sizeAt returns the last sample taken at or before at.
func sizeAt(sizes []dbSize, at time.Duration) dbSize {
	var out dbSize
	for _, sz := range sizes {
		if sz.at > at {
			break
		}
		out = sz
	}
	return out
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// produceSteadily queues rate jobs a second, in a batch every 20 ms, until
// ctx ends, and returns how many were accepted.
func (w *world) produceSteadily(ctx context.Context, rate int) (int, error) {
	sched, closeProducer, err := w.producer(ctx, 2)
	if err != nil {
		return 0, err
	}
	defer closeProducer()

	const tick = 20 * time.Millisecond
	t0, accepted := time.Now(), 0
	for t := time.NewTicker(tick); ; {
		select {
		case <-ctx.Done():
			t.Stop()
			return accepted, nil
		case <-t.C:
		}
		// Catch up on ticks lost to a slow batch instead of drifting.
		due := int(time.Since(t0).Seconds()*float64(rate)) - accepted
		if due <= 0 {
			continue
		}
		items := make([]scheduler.BatchItem, min(due, 1000))
		for i := range items {
			items[i] = scheduler.BatchItem{Job: scheduler.NewJob{Type: "video", Params: []byte(`{"prompt":"soak"}`)}}
		}
		res, err := sched.CreateMany(context.WithoutCancel(ctx), w.scope, items)
		if err != nil {
			return accepted, err
		}
		for _, r := range res {
			if r.Err != nil {
				return accepted, r.Err
			}
			accepted++
		}
	}
}
