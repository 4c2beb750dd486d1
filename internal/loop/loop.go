// Package loop is the one shape of poolgate's periodic background
// services: run a round at once, then one every interval, until stopped.
// Start detaches the loop from the caller's cancellation (Stop ends it),
// so a request-scoped context cannot stop a service by accident.
package loop

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Every runs rounds on an interval. The zero value is ready to Start.
type Every struct {
	mu   sync.Mutex
	stop context.CancelFunc
	done chan struct{}
}

// Start runs round now and then every interval until Stop; a failed round
// is logged as what and the next one runs on time. It refuses a second
// Start.
func (e *Every) Start(ctx context.Context, interval time.Duration, log *slog.Logger, what string, round func(context.Context) error) error {
	if interval <= 0 {
		return errors.New("loop: the interval must be positive")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done != nil {
		return errors.New("loop: already started")
	}
	ctx, e.stop = context.WithCancel(context.WithoutCancel(ctx))
	e.done = make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
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
	}(e.done)
	return nil
}

// Stop cancels the round in progress and waits for it to return, or for
// ctx to end. Stopping a loop that never started does nothing.
func (e *Every) Stop(ctx context.Context) {
	e.mu.Lock()
	stop, done := e.stop, e.done
	e.mu.Unlock()
	if stop == nil {
		return
	}
	stop()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
