package loop_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/loop"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestEvery: a round runs at once, again on each interval even after a
// failing one (which is logged), a second Start is refused, the caller's
// cancellation does not stop the loop, and Stop cancels the round in
// progress and waits for it.
func TestEvery(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	var rounds atomic.Int32
	roundEnded := make(chan struct{})
	var e loop.Every
	callerCtx, cancelCaller := context.WithCancel(context.Background())
	err := e.Start(callerCtx, 10*time.Millisecond, log, "round failed", func(ctx context.Context) error {
		if rounds.Add(1) == 4 { // the fourth round runs until Stop cancels it
			<-ctx.Done()
			close(roundEnded)
			return ctx.Err()
		}
		return errors.New("boom")
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background(), time.Millisecond, log, "x", func(context.Context) error { return nil }); err == nil {
		t.Error("a second Start was accepted")
	}
	cancelCaller()
	deadline := time.Now().Add(5 * time.Second)
	for rounds.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := rounds.Load(); n < 4 {
		t.Fatalf("%d rounds ran; the loop stopped with its caller's context or after a failed round", n)
	}
	e.Stop(context.Background())
	select {
	case <-roundEnded:
	default:
		t.Error("Stop returned before the round in progress ended")
	}
	if got := strings.Count(logs.String(), "round failed"); got != 3 {
		t.Errorf("%d failed rounds logged, want 3:\n%s", got, logs.String())
	}
	after := rounds.Load()
	time.Sleep(30 * time.Millisecond)
	if rounds.Load() != after {
		t.Error("rounds ran after Stop")
	}
}

func TestEveryRefusesANonPositiveInterval(t *testing.T) {
	var e loop.Every
	if err := e.Start(context.Background(), 0, slog.New(slog.DiscardHandler), "x", func(context.Context) error { return nil }); err == nil {
		t.Error("a zero interval was accepted")
	}
	e.Stop(context.Background()) // never started: nothing to do
}
