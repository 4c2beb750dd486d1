package accounts

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// ticker is the loop the refresher and the prober share: run a round at
// once and then every interval, until stopped.
type ticker struct {
	stop context.CancelFunc
	done sync.WaitGroup
}

// start runs round every interval; a failed round is logged as what.
func (t *ticker) start(ctx context.Context, interval time.Duration, log *slog.Logger, what string, round func(context.Context) error) {
	ctx, t.stop = context.WithCancel(context.WithoutCancel(ctx))
	t.done.Add(1)
	go func() {
		defer t.done.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			if err := round(ctx); err != nil && ctx.Err() == nil {
				log.Error(what, "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

// halt ends the loop after the round in progress, or when ctx ends.
func (t *ticker) halt(ctx context.Context) {
	if t.stop == nil {
		return
	}
	t.stop()
	done := make(chan struct{})
	go func() { t.done.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
