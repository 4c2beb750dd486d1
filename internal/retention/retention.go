// Package retention deletes what poolgate no longer needs: finished jobs,
// spent idempotency keys, delivered or dead webhook deliveries, resolved
// alerts and stale cron bookkeeping, each once it is older than its
// retention period.
//
// The service owns no table. Each domain package exposes a delete function
// for the tables it owns; cmd/server hands them to the service as a list of
// named cleanups, and the service decides only when and how much. Rows go
// in small batches (one short transaction each, with a pause between), so
// no delete holds locks long or floods the WAL, and one replica at a time
// does the work: every batch first takes a transaction-scoped advisory lock
// with pg_try_advisory_xact_lock. Transaction-scoped, not session-scoped,
// so it works through PgBouncer in transaction mode, and a replica that
// dies mid-batch releases it with its transaction.
package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/loop"
)

// lockKey is the advisory lock a batch holds; it keeps replicas from
// cleaning at the same time.
const lockKey = 0x706f6f6c72657465 // "poolrete"

// Defaults of Config.
const (
	DefaultInterval = 5 * time.Minute
	DefaultBatch    = 1000
	DefaultPause    = 100 * time.Millisecond
)

// DeleteFunc deletes up to limit rows that ended before before and reports
// how many it deleted. It runs inside the batch's transaction.
type DeleteFunc func(ctx context.Context, db dbx.DBTX, before time.Time, limit int) (int64, error)

// Cleanup is one kind of row to delete.
type Cleanup struct {
	Name      string        // for logs, e.g. "jobs"
	Retention time.Duration // rows older than this go
	Delete    DeleteFunc
}

// Config configures the service.
type Config struct {
	DB       dbx.Beginner
	Logger   *slog.Logger
	Now      func() time.Time // nil: time.Now
	Interval time.Duration    // between passes (default DefaultInterval)
	Batch    int              // rows per delete statement (default DefaultBatch)
	Pause    time.Duration    // between batches (default DefaultPause)
	Cleanups []Cleanup
}

// Service runs a cleanup pass every Interval.
type Service struct {
	cfg  Config
	log  *slog.Logger
	loop loop.Every
}

// New returns the service; it refuses a cleanup it could not run, so a
// wiring mistake fails at start-up rather than at the first pass.
func New(cfg Config) (*Service, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Pause < 0 {
		cfg.Pause = 0
	} else if cfg.Pause == 0 {
		cfg.Pause = DefaultPause
	}
	if cfg.DB == nil {
		return nil, errors.New("retention: no database")
	}
	for _, c := range cfg.Cleanups {
		if c.Name == "" || c.Delete == nil || c.Retention <= 0 {
			return nil, fmt.Errorf("retention: cleanup %q needs a name, a delete function and a positive retention", c.Name)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, log: cfg.Logger.With("component", "retention")}, nil
}

// Start runs a pass now and then every Interval until Stop.
func (s *Service) Start(ctx context.Context) error {
	return s.loop.Start(ctx, s.cfg.Interval, s.log, "retention pass failed", func(ctx context.Context) error {
		_, err := s.RunOnce(ctx)
		return err
	})
}

// Stop ends the loop, abandoning a batch in flight (its transaction rolls
// back), and waits for it to return or for ctx to end.
func (s *Service) Stop(ctx context.Context) { s.loop.Stop(ctx) }

// Pass is what one pass did.
type Pass struct {
	Deleted map[string]int64 // by cleanup name
	// Yielded is set when another replica held the lock, so this one left
	// the rest of the pass to it.
	Yielded bool
}

// RunOnce runs one pass: every cleanup in order, each in batches until a
// batch deletes fewer rows than Batch. A failing cleanup is reported and
// the others still run.
func (s *Service) RunOnce(ctx context.Context) (Pass, error) {
	now := s.cfg.Now().UTC()
	p := Pass{Deleted: make(map[string]int64, len(s.cfg.Cleanups))}
	var problems []error
	for _, c := range s.cfg.Cleanups {
		n, yielded, err := s.clean(ctx, c, now.Add(-c.Retention))
		p.Deleted[c.Name] = n
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", c.Name, err))
		}
		if n > 0 {
			s.log.Info("deleted expired rows", "table", c.Name, "rows", n, "retention", c.Retention.String())
		}
		if yielded {
			p.Yielded = true
			s.log.Debug("another replica is cleaning; leaving the pass to it", "table", c.Name)
			break
		}
	}
	return p, errors.Join(problems...)
}

// clean deletes c's rows older than before, batch after batch.
func (s *Service) clean(ctx context.Context, c Cleanup, before time.Time) (total int64, yielded bool, err error) {
	for {
		n, locked, err := s.batch(ctx, c, before)
		total += n
		switch {
		case err != nil:
			return total, false, err
		case !locked:
			return total, true, nil
		case n < int64(s.cfg.Batch):
			return total, false, nil
		}
		select {
		case <-ctx.Done():
			return total, false, ctx.Err()
		case <-time.After(s.cfg.Pause):
		}
	}
}

// batch deletes at most Batch rows in one transaction, if this replica can
// take the lock.
func (s *Service) batch(ctx context.Context, c Cleanup, before time.Time) (n int64, locked bool, err error) {
	err = pgx.BeginFunc(ctx, s.cfg.DB, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, int64(lockKey)).Scan(&locked); err != nil || !locked {
			return err
		}
		var err error
		n, err = c.Delete(ctx, tx, before, s.cfg.Batch)
		return err
	})
	if err != nil {
		return 0, locked, err
	}
	return n, locked, nil
}
