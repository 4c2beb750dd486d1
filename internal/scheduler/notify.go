package scheduler

import (
	"context"
	"sync"
	"time"
)

// Notification channels. channelWork says a job was queued or a slot freed
// (the dispatcher should look); channelDone carries the id of a job that
// just ended (long-polls should look).
const (
	channelWork = "poolgate_work"
	channelDone = "poolgate_job_done"
)

// listen holds one connection in LISTEN mode and turns notifications into
// wake-ups, reconnecting after failures. Losing it costs latency only: the
// dispatcher also polls every WakeInterval and waiters re-read every 5s.
func (s *Scheduler) listen(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("notification listener lost its connection; reconnecting", "err", err, "in", backoff.String())
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (s *Scheduler) listenOnce(ctx context.Context) error {
	conn, err := s.cfg.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection leaves the pool for good: a LISTENing connection must
	// not be handed to anyone else.
	pc := conn.Hijack()
	defer pc.Close(context.WithoutCancel(ctx))
	for _, ch := range []string{channelWork, channelDone} {
		if _, err := pc.Exec(ctx, "LISTEN "+ch); err != nil {
			return err
		}
	}
	s.Wake() // anything sent while we were not listening
	for {
		n, err := pc.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		switch n.Channel {
		case channelWork:
			s.Wake()
		case channelDone:
			s.waiters.notify(n.Payload)
		}
	}
}

// waiters lets long-polls wait for a job's end on this replica.
type waiters struct {
	mu sync.Mutex
	m  map[string]map[chan struct{}]bool
}

func newWaiters() *waiters { return &waiters{m: make(map[string]map[chan struct{}]bool)} }

// subscribe returns a channel that receives when job id may have ended.
func (w *waiters) subscribe(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	if w.m[id] == nil {
		w.m[id] = make(map[chan struct{}]bool)
	}
	w.m[id][ch] = true
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		delete(w.m[id], ch)
		if len(w.m[id]) == 0 {
			delete(w.m, id)
		}
		w.mu.Unlock()
	}
}

func (w *waiters) notify(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.m[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
