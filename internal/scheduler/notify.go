package scheduler

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/poolgate/poolgate/internal/pubsub"
)

// Notification channels. channelWork says jobs were queued (the dispatchers
// should look); channelDone carries the comma-separated ids of jobs that
// just ended (long-polls should look).
const (
	channelWork = "poolgate_work"
	channelDone = "poolgate_job_done"
)

// subscribe follows the other replicas' notifications on l. Losing the
// connection costs latency only: the dispatcher also polls every
// WakeInterval and long-polls re-read every 5s.
func (s *Scheduler) subscribe(l *pubsub.Listener) {
	l.Subscribe(channelWork, pubsub.Subscriber{
		Notify: func(string) { s.Wake() },
		State: func(up bool) {
			if up {
				s.Wake() // anything sent while we were not listening
			}
		},
	})
	l.Subscribe(channelDone, pubsub.Subscriber{Notify: func(ids string) {
		for id := range strings.SplitSeq(ids, ",") {
			s.waiters.notify(id)
		}
	}})
}

// signals coalesces the notifications other replicas need: at most one
// "work" and a few "done" notifications per interval, each sent in a
// transaction of its own that does not wait for its WAL flush. A notifying
// commit holds a cluster-wide lock through its flush; keeping NOTIFY out
// of the transactions that create and end jobs lets those group-commit.
// A lost notification costs latency only (dispatchers poll, long-polls
// re-read).
type signals struct {
	s        *Scheduler
	interval time.Duration
	kick     chan struct{}

	mu   sync.Mutex
	work bool
	done []string
}

func newSignals(s *Scheduler, interval time.Duration) *signals {
	return &signals{s: s, interval: interval, kick: make(chan struct{}, 1)}
}

// workQueued asks other replicas' dispatchers to look at the queue.
func (g *signals) workQueued() {
	g.mu.Lock()
	g.work = true
	g.mu.Unlock()
	g.nudge()
}

// jobsDone tells other replicas' long-polls that jobs ended.
func (g *signals) jobsDone(jobs []Job) {
	g.mu.Lock()
	for _, j := range jobs {
		g.done = append(g.done, j.ID)
	}
	g.mu.Unlock()
	g.nudge()
}

func (g *signals) nudge() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// run sends what accumulated, then rests an interval, until ctx ends.
func (g *signals) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			g.send(context.WithoutCancel(ctx)) // the last word, best effort
			return
		case <-g.kick:
		}
		g.send(ctx)
		if !sleep(ctx, g.interval) {
			g.send(context.WithoutCancel(ctx))
			return
		}
	}
}

// notifyAsync sends one notification in a transaction that commits
// without waiting for its WAL flush.
const notifyAsync = `SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)`

// maxPayload keeps a notification well under Postgres' 8000-byte limit.
const maxPayload = 7000

func (g *signals) send(ctx context.Context) {
	g.mu.Lock()
	work, done := g.work, g.done
	g.work, g.done = false, nil
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if work {
		if _, err := g.s.cfg.Pool.Exec(ctx, notifyAsync, channelWork, ""); err != nil {
			g.s.log.Debug("notify work", "err", err)
		}
	}
	for len(done) > 0 {
		var b strings.Builder
		for len(done) > 0 && b.Len()+len(done[0]) < maxPayload {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(done[0])
			done = done[1:]
		}
		if b.Len() == 0 { // an id longer than a payload: nobody waits for it by that name
			done = done[1:]
			continue
		}
		if _, err := g.s.cfg.Pool.Exec(ctx, notifyAsync, channelDone, b.String()); err != nil {
			g.s.log.Debug("notify done", "err", err)
			return
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
