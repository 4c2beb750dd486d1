// Package pubsub is a replica's one LISTEN connection: every component that
// wants Postgres notifications (scheduler wake-ups, key revocations)
// subscribes to its channels here, and one goroutine keeps the connection
// up, reconnecting with backoff.
//
// The connection must be a direct one: through PgBouncer in transaction
// mode a LISTEN would be lost with its transaction (DATABASE_LISTEN_URL).
package pubsub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/poolgate/poolgate/internal/backoff"
)

// Subscriber receives one channel's notifications.
type Subscriber struct {
	// Notify gets each payload, on the listener's goroutine: keep it quick.
	Notify func(payload string)
	// State, if set, is told true once the channel is listened to (again)
	// and false when the connection is lost: notifications sent meanwhile
	// are gone, so a subscriber that relies on them must stop trusting
	// what it cached.
	State func(up bool)
}

// Listener holds the LISTEN connection.
type Listener struct {
	connect func(ctx context.Context) (*pgx.Conn, error)
	log     *slog.Logger

	mu      sync.Mutex
	subs    map[string][]Subscriber
	started bool
	cancel  context.CancelFunc
	done    chan struct{}

	up            atomic.Bool
	disconnects   atomic.Uint64
	notifications atomic.Uint64
}

// checkEvery is how often an idle connection proves it is alive.
const checkEvery = time.Second

// New returns a listener that opens its connection with connect.
func New(connect func(ctx context.Context) (*pgx.Conn, error), log *slog.Logger) *Listener {
	return &Listener{connect: connect, log: log.With("component", "pubsub"), subs: map[string][]Subscriber{}}
}

// Dial is a connect function for New: a fresh connection to url named
// application in pg_stat_activity.
func Dial(url, application string) func(ctx context.Context) (*pgx.Conn, error) {
	return func(ctx context.Context) (*pgx.Conn, error) {
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			return nil, err
		}
		cfg.RuntimeParams["application_name"] = application
		return pgx.ConnectConfig(ctx, cfg)
	}
}

// Subscribe adds s to channel. Subscribe before Start.
func (l *Listener) Subscribe(channel string, s Subscriber) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started {
		panic("pubsub: Subscribe after Start")
	}
	l.subs[channel] = append(l.subs[channel], s)
}

// Start keeps the connection up in the background until Stop; it returns
// at once.
func (l *Listener) Start(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started {
		return nil
	}
	l.started = true
	ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	l.done = make(chan struct{})
	go l.run(ctx)
	return nil
}

// Stop closes the connection and waits for the goroutine to end.
func (l *Listener) Stop(ctx context.Context) {
	l.mu.Lock()
	cancel, done := l.cancel, l.done
	l.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Up reports whether the listener is listening now.
func (l *Listener) Up() bool { return l.up.Load() }

// Stats are counters for metrics.
type Stats struct {
	Disconnects, Notifications uint64
	Up                         bool
}

// Stats returns the listener's counters.
func (l *Listener) Stats() Stats {
	return Stats{Disconnects: l.disconnects.Load(), Notifications: l.notifications.Load(), Up: l.up.Load()}
}

func (l *Listener) run(ctx context.Context) {
	defer close(l.done)
	for attempt := 0; ; attempt++ {
		wasUp, err := l.listenOnce(ctx)
		if l.up.Swap(false) {
			l.state(false)
		}
		if ctx.Err() != nil {
			return
		}
		l.disconnects.Add(1)
		if wasUp {
			attempt = 0
		}
		wait := backoff.Exp(attempt, 100*time.Millisecond, 5*time.Second)
		l.log.Warn("not listening for notifications; reconnecting", "err", err, "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// listenOnce connects, listens and dispatches until the connection fails;
// up says whether it got as far as listening.
func (l *Listener) listenOnce(ctx context.Context) (up bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := l.connect(cctx)
	cancel()
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		conn.Close(cctx)
		cancel()
	}()
	l.mu.Lock()
	channels := make([]string, 0, len(l.subs))
	for ch := range l.subs {
		channels = append(channels, ch)
	}
	l.mu.Unlock()
	for _, ch := range channels {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return false, fmt.Errorf("listen: %w", err)
		}
	}
	l.up.Store(true)
	l.state(true)
	for {
		wctx, cancel := context.WithTimeout(ctx, checkEvery)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			l.notifications.Add(1)
			l.mu.Lock()
			subs := l.subs[n.Channel]
			l.mu.Unlock()
			for _, s := range subs {
				s.Notify(n.Payload)
			}
		case ctx.Err() != nil:
			return true, ctx.Err()
		case pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded):
			pctx, cancel := context.WithTimeout(ctx, checkEvery)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return true, fmt.Errorf("ping: %w", err)
			}
		default:
			return true, fmt.Errorf("wait for notification: %w", err)
		}
	}
}

func (l *Listener) state(up bool) {
	l.mu.Lock()
	var all []Subscriber
	for _, subs := range l.subs {
		all = append(all, subs...)
	}
	l.mu.Unlock()
	for _, s := range all {
		if s.State != nil {
			s.State(up)
		}
	}
}
