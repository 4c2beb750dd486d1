package usage

import (
	"context"
	"crypto/rand"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/loop"
)

const (
	// RollupInterval is how often a replica rolls pending usage up.
	RollupInterval = time.Second
	// rollupBatch is the most pending rows one roll-up transaction moves.
	rollupBatch = 500
)

// Roller moves pending usage into usage_hourly on an interval (one of the
// replica's background services). Every replica runs one; they take
// disjoint pending rows and write rows of their own.
type Roller struct {
	pool   *pgxpool.Pool
	log    *slog.Logger
	writer string
	every  time.Duration
	loop   loop.Every
}

// NewRoller returns the roller of replica (POOLGATE_REPLICA_ID; "" picks a
// random name), rolling up every interval once started.
func NewRoller(pool *pgxpool.Pool, logger *slog.Logger, replica string, every time.Duration) *Roller {
	if replica == "" {
		replica = "replica-" + rand.Text()[:10]
	}
	return &Roller{pool: pool, log: logger.With("component", "usage"), writer: replica + "/rollup", every: every}
}

// Start rolls up now and then every interval until Stop.
func (r *Roller) Start(ctx context.Context) error {
	return r.loop.Start(ctx, r.every, r.log, "rolling usage up failed", r.round)
}

// Stop ends the loop. What is still pending stays counted: readers add
// it, and the next roll-up of any replica moves it.
func (r *Roller) Stop(ctx context.Context) { r.loop.Stop(ctx) }

func (r *Roller) round(ctx context.Context) error { return RollupAll(ctx, r.pool, r.writer) }

// RollupAll moves everything pending into usage_hourly as writer, a
// transaction of up to rollupBatch rows at a time.
func RollupAll(ctx context.Context, db dbx.Beginner, writer string) error {
	for {
		n, err := Rollup(ctx, db, writer, rollupBatch)
		if err != nil || n < rollupBatch {
			return err
		}
	}
}
