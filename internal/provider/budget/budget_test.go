package budget

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
	"github.com/poolgate/poolgate/internal/provider/sim"
)

// upstream is the simulator on loopback (on the real clock, since the
// budget waits in real time) and the real client.
func upstream(t *testing.T, cfg sim.Config) (*sim.Server, provider.Provider) {
	t.Helper()
	s := sim.New(cfg, nil)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, ltxstudio.New(srv.URL, nil)
}

func account(email string) provider.Account {
	now := time.Now()
	return provider.Account{Email: email, Cookie: sim.Cookie(email, now.Add(time.Hour), now.Add(24*time.Hour))}
}

// queued says how many calls wait on email's budget.
func (p *Provider) queued(email string) int {
	b := p.bucketOf(email)
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.waiting)
}

// waitQueued waits until n calls wait on email's budget.
func (p *Provider) waitQueued(t *testing.T, email string, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); p.queued(email) < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls waiting on %s, want %d", p.queued(email), email, n)
		}
	}
}

// TestBudgetNeverExceeded: however many jobs poll and submit at once, the
// upstream never sees an account go over its budget, and an account's
// budget is its own.
func TestBudgetNeverExceeded(t *testing.T) {
	t.Parallel()
	const rate, burst = 40.0, 4
	s, up := upstream(t, sim.Config{JobDuration: time.Hour, Seed: 1})
	var mu sync.Mutex
	told := map[string]int{}
	var waited time.Duration
	p := New(up, Config{Rate: rate, Burst: burst, Observe: func(call string, d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		told[call]++
		waited += d
	}})
	ctx := context.Background()
	a, b := account("a@example.com"), account("b@example.com")

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 12 {
		wg.Go(func() {
			st, err := p.Submit(ctx, a, provider.Submission{IdempotencyKey: fmt.Sprintf("j%d/1", i), JobID: fmt.Sprintf("j%d", i), Attempt: 1, Type: "video"})
			if err != nil {
				errs <- err
				return
			}
			for range 3 {
				if _, err := p.Status(ctx, a, st.UpstreamID); err != nil {
					errs <- err
				}
			}
		})
	}
	// b's calls do not wait behind a's.
	if _, err := p.Refresh(ctx, b); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	times := s.RequestTimes("a@example.com")
	if len(times) != 48 {
		t.Fatalf("a made %d requests, want 48", len(times))
	}
	// One request over is tolerated: calls that left on time may arrive
	// bunched up on a busy loopback.
	if over, n, span := sim.Overrun(times, rate, burst); over > 1 {
		t.Fatalf("%d requests arrived within %s: over the budget of %v/s with burst %d", n, span, rate, burst)
	}
	if got := len(s.RequestTimes("b@example.com")); got != 1 {
		t.Errorf("b made %d requests, want 1", got)
	}
	// 48 calls at 40/s after a burst of 4 take about a second of waiting
	// between them; every call was told.
	if told["submit"] != 12 || told["status"] != 36 || told["refresh"] != 1 || waited <= 0 {
		t.Errorf("observer told %v, waited %s; want 12 submits, 36 reads, 1 refresh, some waiting", told, waited)
	}
}

// TestPollsYield: a submit that arrives while polls wait for an
// exhausted budget goes out before them.
func TestPollsYield(t *testing.T) {
	t.Parallel()
	s, up := upstream(t, sim.Config{JobDuration: time.Hour, Seed: 1})
	p := New(up, Config{Rate: 4, Burst: 1})
	ctx := context.Background()
	a := account("a@example.com")
	first, err := p.Submit(ctx, a, provider.Submission{IdempotencyKey: "first/1", JobID: "first", Attempt: 1, Type: "video"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() { p.Status(ctx, a, first.UpstreamID) })
	}
	polled := func() int { return s.Stats().Requests["first"] - 1 }
	for deadline := time.Now().Add(10 * time.Second); p.queued(a.Email)+polled() < 6; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the polls never queued")
		}
	}
	before := polled()
	if before > 4 {
		t.Fatalf("%d of 6 polls went out before the submit came; the machine is too slow for this test", before)
	}
	if _, err := p.Submit(ctx, a, provider.Submission{IdempotencyKey: "second/1", JobID: "second", Attempt: 1, Type: "video"}); err != nil {
		t.Fatal(err)
	}
	// The head of the queue may have had its token by then, never more.
	if after := polled(); after > before+1 {
		t.Errorf("%d polls queued before the submit went out ahead of it, want at most 1", after-before)
	}
	wg.Wait()
	if got := s.Stats().Requests["first"]; got != 7 {
		t.Errorf("first: %d requests, want 7 (every poll still went out)", got)
	}
}

// TestWaitEndsWithContext: a call waiting for the budget gives up when its
// context ends, without spending anything, and the calls behind it move up.
func TestWaitEndsWithContext(t *testing.T) {
	t.Parallel()
	s, up := upstream(t, sim.Config{JobDuration: time.Hour, Seed: 1})
	p := New(up, Config{Rate: 0.001, Burst: 1}) // one call, then none for 1000s
	a := account("a@example.com")
	if _, err := p.Refresh(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p.Status(ctx, a, "gen_1")
		done <- err
	}()
	p.waitQueued(t, a.Email, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting Status returned %v, want context.Canceled", err)
	}
	if got := len(s.RequestTimes(a.Email)); got != 1 {
		t.Errorf("%d requests reached the upstream, want only the first", got)
	}
	if n := p.queued(a.Email); n != 0 {
		t.Errorf("%d calls still queued after the only waiter gave up", n)
	}
}

// TestOff: a rate of 0 passes every call straight through, still told
// to the observer.
func TestOff(t *testing.T) {
	t.Parallel()
	s, up := upstream(t, sim.Config{Seed: 1})
	var mu sync.Mutex
	told := map[string]int{}
	p := New(up, Config{Observe: func(call string, waited time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		told[call]++
	}})
	a := account("a@example.com")
	for range 50 {
		if _, err := p.Refresh(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(s.RequestTimes(a.Email)); got != 50 || told["refresh"] != 50 || len(told) != 1 {
		t.Errorf("%d requests, observer told %v; want 50 refreshes", got, told)
	}
}
