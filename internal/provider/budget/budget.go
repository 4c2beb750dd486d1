// Package budget keeps poolgate polite to the upstream: it wraps a
// provider.Provider so that the calls made as any one account (submits,
// status reads, lookups, cancels, refreshes, probes) share one request
// budget, a token bucket of Rate requests per second with Burst to spare.
// A call waits for its turn (or for its context to end); it is never
// refused. Status reads yield to every other call, so a busy account's
// polls cannot hold back a submission or a cancel.
//
// The budget is per process: N replicas sharing a pool spend up to N times
// the budget on one account, so give each replica its share (the account's
// budget divided by N).
package budget

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/poolgate/poolgate/internal/provider"
)

// Config is the per-account budget.
type Config struct {
	// Rate is how many requests per second one account may make; 0 or
	// less turns the budget off.
	Rate float64
	// Burst is how many requests an account that has been quiet may make
	// at once (at least 1; default: Rate rounded up).
	Burst int
	// Observe, if set, is told of every call as it goes out: which one
	// ("submit", "status", "lookup", "cancel", "refresh", "probe") and how
	// long it waited for the budget. Calls whose context ended while they
	// waited never went out and are not told.
	Observe func(call string, waited time.Duration)
}

// Provider is a provider.Provider whose calls keep to a per-account
// budget. Its methods are safe for concurrent use.
type Provider struct {
	next    provider.Provider
	rate    float64
	burst   float64
	now     func() time.Time
	observe func(call string, waited time.Duration)

	mu      sync.Mutex
	buckets map[string]*bucket // by lower-cased email
}

var _ provider.Provider = (*Provider)(nil)

// New wraps next in cfg's budget.
func New(next provider.Provider, cfg Config) *Provider {
	burst := cfg.Burst
	if burst < 1 {
		burst = max(1, int(cfg.Rate+0.999999))
	}
	observe := cfg.Observe
	if observe == nil {
		observe = func(string, time.Duration) {}
	}
	return &Provider{next: next, rate: cfg.Rate, burst: float64(burst), now: time.Now, observe: observe,
		buckets: make(map[string]*bucket)}
}

// priority orders waiting calls: a lower value goes first.
type priority int

const (
	urgent priority = iota // everything that is not a poll
	poll                   // status reads: they can always be a little late
)

// wait blocks until a's budget allows one more call of priority pr, or
// ctx ends.
func (p *Provider) wait(ctx context.Context, call string, a provider.Account, pr priority) error {
	if p.rate <= 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		p.observe(call, 0)
		return nil
	}
	t := p.now()
	if err := p.bucketOf(a.Email).take(ctx, pr, p.now); err != nil {
		return err
	}
	p.observe(call, p.now().Sub(t))
	return nil
}

func (p *Provider) bucketOf(email string) *bucket {
	key := strings.ToLower(email)
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.buckets[key]
	if b == nil {
		b = &bucket{rate: p.rate, burst: p.burst, tokens: p.burst, at: p.now()}
		p.buckets[key] = b
	}
	return b
}

// Submit waits for the budget, then submits.
func (p *Provider) Submit(ctx context.Context, a provider.Account, s provider.Submission) (provider.Status, error) {
	if err := p.wait(ctx, "submit", a, urgent); err != nil {
		return provider.Status{}, err
	}
	return p.next.Submit(ctx, a, s)
}

// Status waits for the budget, behind any other kind of call, then reads.
func (p *Provider) Status(ctx context.Context, a provider.Account, upstreamID string) (provider.Status, error) {
	if err := p.wait(ctx, "status", a, poll); err != nil {
		return provider.Status{}, err
	}
	return p.next.Status(ctx, a, upstreamID)
}

// Lookup waits for the budget, then looks the attempt up.
func (p *Provider) Lookup(ctx context.Context, a provider.Account, idempotencyKey string) (provider.Status, bool, error) {
	if err := p.wait(ctx, "lookup", a, urgent); err != nil {
		return provider.Status{}, false, err
	}
	return p.next.Lookup(ctx, a, idempotencyKey)
}

// Cancel waits for the budget, then cancels.
func (p *Provider) Cancel(ctx context.Context, a provider.Account, upstreamID string) error {
	if err := p.wait(ctx, "cancel", a, urgent); err != nil {
		return err
	}
	return p.next.Cancel(ctx, a, upstreamID)
}

// Refresh waits for the budget, then refreshes the account's tokens.
func (p *Provider) Refresh(ctx context.Context, a provider.Account) (provider.Tokens, error) {
	if err := p.wait(ctx, "refresh", a, urgent); err != nil {
		return provider.Tokens{}, err
	}
	return p.next.Refresh(ctx, a)
}

// Probe waits for the budget, then probes the account.
func (p *Provider) Probe(ctx context.Context, a provider.Account) error {
	if err := p.wait(ctx, "probe", a, urgent); err != nil {
		return err
	}
	return p.next.Probe(ctx, a)
}

// bucket is one account's token bucket with a queue of waiting calls,
// served in priority order, first come first served within a priority.
type bucket struct {
	rate, burst float64

	mu      sync.Mutex
	tokens  float64   // as of at
	at      time.Time // when tokens was last brought up to date
	waiting []*waiter // in the order they will be served
}

// waiter is one call waiting for a token; wake tells it that it may have
// become the head of the queue.
type waiter struct {
	pr   priority
	wake chan struct{}
}

func (b *bucket) refill(now time.Time) {
	if dt := now.Sub(b.at); dt > 0 {
		b.tokens = min(b.burst, b.tokens+dt.Seconds()*b.rate)
		b.at = now
	}
}

// take spends one token, waiting its turn for one if need be.
func (b *bucket) take(ctx context.Context, pr priority, now func() time.Time) error {
	b.mu.Lock()
	b.refill(now())
	if len(b.waiting) == 0 && b.tokens >= 1 {
		b.tokens--
		b.mu.Unlock()
		return nil
	}
	w := &waiter{pr: pr, wake: make(chan struct{}, 1)}
	i := slices.IndexFunc(b.waiting, func(o *waiter) bool { return o.pr > pr })
	if i < 0 {
		i = len(b.waiting)
	}
	b.waiting = slices.Insert(b.waiting, i, w)
	if i == 0 && len(b.waiting) > 1 {
		b.waiting[1].notify() // it is no longer the head: it goes back to waiting on wake
	}
	b.mu.Unlock()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		b.mu.Lock()
		t := now()
		b.refill(t)
		head := b.waiting[0] == w
		if head && b.tokens >= 1 {
			b.tokens--
			b.remove(w)
			b.mu.Unlock()
			return nil
		}
		var due <-chan time.Time
		if head {
			need := time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
			timer.Reset(max(need, time.Millisecond))
			due = timer.C
		}
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			b.mu.Lock()
			b.remove(w)
			b.mu.Unlock()
			return ctx.Err()
		case <-w.wake:
		case <-due:
		}
	}
}

// remove takes w out of the queue and wakes whoever is the head now.
func (b *bucket) remove(w *waiter) {
	i := slices.Index(b.waiting, w)
	if i < 0 {
		return
	}
	b.waiting = slices.Delete(b.waiting, i, i+1)
	if i == 0 && len(b.waiting) > 0 {
		b.waiting[0].notify()
	}
}

func (w *waiter) notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}
