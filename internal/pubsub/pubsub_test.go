package pubsub_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/pgtest"
	"github.com/poolgate/poolgate/internal/pubsub"
)

// TestListenerDeliversAndReconnects: notifications reach every subscriber
// of their channel; when the connection is killed, subscribers hear that
// the listener is down, and after it reconnects by itself they are told
// it is up and notifications flow again.
func TestListenerDeliversAndReconnects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.New(t)
	const app = "pubsub-test-listener"
	l := pubsub.New(pubsub.Dial(pool.Config().ConnString(), app), slog.New(slog.NewTextHandler(io.Discard, nil)))
	got := make(chan string, 10)
	other := make(chan string, 10)
	states := make(chan bool, 10)
	l.Subscribe("work", pubsub.Subscriber{Notify: func(p string) { got <- p }, State: func(up bool) { states <- up }})
	l.Subscribe("work", pubsub.Subscriber{Notify: func(p string) { other <- p }})
	l.Subscribe("elsewhere", pubsub.Subscriber{Notify: func(p string) { t.Errorf("elsewhere got %q", p) }})
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer l.Stop(ctx)

	wantState := func(want bool) {
		t.Helper()
		select {
		case up := <-states:
			if up != want {
				t.Fatalf("state %v, want %v", up, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no state %v within 10s", want)
		}
	}
	notify := func(payload string) {
		t.Helper()
		if _, err := pool.Exec(ctx, `SELECT pg_notify('work', $1)`, payload); err != nil {
			t.Fatal(err)
		}
	}
	receive := func(ch chan string, want string) {
		t.Helper()
		select {
		case p := <-ch:
			if p != want {
				t.Fatalf("got %q, want %q", p, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q not delivered within 10s", want)
		}
	}

	wantState(true)
	notify("one")
	receive(got, "one")
	receive(other, "one")

	if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, app); err != nil {
		t.Fatal(err)
	}
	wantState(false)
	wantState(true)
	if s := l.Stats(); s.Disconnects < 1 || !s.Up {
		t.Errorf("stats after a reconnect: %+v", s)
	}
	notify("two")
	receive(got, "two")
	receive(other, "two")
}
