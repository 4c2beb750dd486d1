package webhooks

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestEnqueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("pending row due now, given up after a day", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		id := enqueue(t, e, "https://example.com/cb", map[string]any{"id": "job_1"}, now)
		if !strings.HasPrefix(id, "dlv_") {
			t.Fatalf("id %q, want dlv_ prefix", id)
		}
		var state, event, payload string
		var attempts int
		var next, giveUp time.Time
		err := e.pool.QueryRow(ctx, `SELECT state, event, payload::text, attempts, next_attempt_at, give_up_at
			FROM webhook_deliveries WHERE id = $1`, id).Scan(&state, &event, &payload, &attempts, &next, &giveUp)
		if err != nil {
			t.Fatal(err)
		}
		if state != "pending" || event != "job.succeeded" || payload != `{"id":"job_1"}` || attempts != 0 ||
			!next.Equal(now) || !giveUp.Equal(now.Add(24*time.Hour)) {
			t.Fatalf("row = %s %s %s %d %s %s", state, event, payload, attempts, next, giveUp)
		}
	})

	t.Run("rolls back with the caller's transaction", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		tx, err := e.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		id, err := Enqueue(ctx, tx, e.tenant, "https://example.com/cb", "job.failed", json.RawMessage(`{"a":1}`), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		tx.Rollback(ctx)
		var n int
		e.pool.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries WHERE id = $1`, id).Scan(&n)
		if n != 0 {
			t.Fatal("delivery survived the rollback of the transaction that enqueued it")
		}
	})

	t.Run("rejects invalid raw JSON", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		if _, err := Enqueue(ctx, e.pool, e.tenant, "https://example.com/cb", "x", []byte(`{`), time.Now()); err == nil {
			t.Fatal("Enqueue accepted invalid JSON")
		}
	})
}

func TestDeliverer(t *testing.T) {
	t.Parallel()

	t.Run("delivers a signed request", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		rc := newReceiver(t, nil)
		var out outcomes
		startDeliverer(t, e, DelivererConfig{AllowPrivate: true, OnResult: out.record})
		id := enqueue(t, e, rc.URL+"/hook", map[string]any{"id": "job_1", "status": "succeeded"}, time.Now())

		r := waitState(t, e, id, "delivered")
		if r.Attempts != 1 || r.LastStatus == nil || *r.LastStatus != 200 || r.LastError != nil || r.DeliveredAt == nil {
			t.Fatalf("delivered row = %+v, want 1 attempt, status 200, no error, delivered_at set", r)
		}
		got := rc.got()
		if len(got) != 1 {
			t.Fatalf("receiver saw %d requests, want 1", len(got))
		}
		secret, err := e.secrets.Get(context.Background(), e.tenant)
		if err != nil {
			t.Fatal(err)
		}
		h := got[0].header
		if err := Verify(secret, h, got[0].body, time.Now(), time.Minute); err != nil {
			t.Fatalf("Verify: %v", err)
		}
		for name, want := range map[string]string{
			HeaderDelivery: id, HeaderEvent: "job.succeeded",
			"Content-Type": "application/json", "User-Agent": "poolgate-webhooks/1",
		} {
			if h.Get(name) != want {
				t.Errorf("header %s = %q, want %q", name, h.Get(name), want)
			}
		}
		var body map[string]string
		if err := json.Unmarshal(got[0].body, &body); err != nil || body["id"] != "job_1" || body["status"] != "succeeded" {
			t.Fatalf("body %s, want the payload", got[0].body)
		}
		// OnResult runs after the receiver answered: wait for it.
		waitFor(t, 5*time.Second, "OnResult to see the delivery", func() bool { return out.get(OutcomeDelivered) == 1 })
	})

	t.Run("retries after 500s with the same id", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		clk := newClock()
		rc := newReceiver(t, func(n int) int {
			if n <= 2 {
				return http.StatusInternalServerError
			}
			return http.StatusNoContent
		})
		var out outcomes
		d := startDeliverer(t, e, DelivererConfig{AllowPrivate: true, Now: clk.Now, OnResult: out.record})
		start := clk.Now()
		id := enqueue(t, e, rc.URL, map[string]int{"n": 1}, start)

		waitFor(t, 10*time.Second, "first failed attempt", func() bool { return out.get(OutcomeRetry) == 1 })
		r := getRow(t, e, id)
		if r.State != "pending" || r.Attempts != 1 || *r.LastStatus != 500 || !strings.HasPrefix(*r.LastError, "HTTP 500") {
			t.Fatalf("after one 500: %+v", r)
		}
		if wait := r.NextAttempt.Sub(start); wait < 5*time.Second || wait > 6*time.Second {
			t.Fatalf("first retry scheduled after %s, want 5s plus up to 20%% jitter", wait)
		}
		clk.Advance(time.Minute)
		d.Wake()
		waitFor(t, 10*time.Second, "second failed attempt", func() bool { return out.get(OutcomeRetry) == 2 })
		r = getRow(t, e, id)
		if wait := r.NextAttempt.Sub(clk.Now()); r.Attempts != 2 || wait < 10*time.Second || wait > 12*time.Second {
			t.Fatalf("after two 500s: %+v (retry in %s), want attempt 2 and a 10s backoff", r, r.NextAttempt.Sub(clk.Now()))
		}
		clk.Advance(time.Minute)
		d.Wake()

		r = waitState(t, e, id, "delivered")
		if r.Attempts != 3 || *r.LastStatus != 204 || r.LastError != nil {
			t.Fatalf("delivered row = %+v, want 3 attempts, status 204, error cleared", r)
		}
		got := rc.got()
		if len(got) != 3 {
			t.Fatalf("receiver saw %d requests, want 3", len(got))
		}
		for i, rec := range got {
			if rec.header.Get(HeaderDelivery) != id {
				t.Errorf("request %d carried delivery id %q, want %q", i+1, rec.header.Get(HeaderDelivery), id)
			}
		}
	})

	t.Run("gives up after give_up_at", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		clk := newClock()
		rc := newReceiver(t, func(int) int { return http.StatusBadGateway })
		var out outcomes
		d := startDeliverer(t, e, DelivererConfig{AllowPrivate: true, Now: clk.Now, OnResult: out.record})
		id := enqueue(t, e, rc.URL, map[string]int{"n": 1}, clk.Now())

		waitFor(t, 10*time.Second, "first failed attempt", func() bool { return out.get(OutcomeRetry) == 1 })
		clk.Advance(DeliveryWindow + time.Minute)
		d.Wake()
		r := waitState(t, e, id, "failed")
		if r.Attempts != 2 || *r.LastStatus != 502 || !strings.Contains(*r.LastError, "502") {
			t.Fatalf("failed row = %+v, want 2 attempts and the last 502 recorded", r)
		}
		waitFor(t, 5*time.Second, "OnResult to see one failure", func() bool { return out.get(OutcomeFailed) == 1 })
	})

	t.Run("last retry is scheduled at the deadline", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		clk := newClock()
		rc := newReceiver(t, func(int) int { return http.StatusServiceUnavailable })
		var out outcomes
		startDeliverer(t, e, DelivererConfig{AllowPrivate: true, Now: clk.Now, OnResult: out.record})
		start := clk.Now()
		id := enqueue(t, e, rc.URL, map[string]int{"n": 1}, start)
		clk.Advance(DeliveryWindow - time.Second)
		waitFor(t, 10*time.Second, "failed attempt", func() bool { return out.get(OutcomeRetry) == 1 })
		if r := getRow(t, e, id); !r.NextAttempt.Equal(start.Add(DeliveryWindow)) {
			t.Fatalf("retry at %s, want capped at give_up_at %s", r.NextAttempt, start.Add(DeliveryWindow))
		}
	})

	t.Run("two replicas deliver each row once", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		rc := newReceiver(t, nil)
		const n = 200
		ids := make(map[string]bool, n)
		for i := range n {
			ids[enqueue(t, e, rc.URL, map[string]int{"i": i}, time.Now())] = true
		}
		var outA, outB outcomes
		startDeliverer(t, e, DelivererConfig{AllowPrivate: true, OnResult: outA.record})
		startDeliverer(t, e, DelivererConfig{AllowPrivate: true, OnResult: outB.record, Concurrency: 5})

		waitFor(t, 30*time.Second, "all rows delivered", func() bool {
			var left int
			e.pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook_deliveries WHERE state <> 'delivered'`).Scan(&left)
			return left == 0
		})
		seen := make(map[string]int)
		for _, rec := range rc.got() {
			seen[rec.header.Get(HeaderDelivery)]++
		}
		for id := range ids {
			if seen[id] != 1 {
				t.Errorf("delivery %s received %d times, want exactly once", id, seen[id])
			}
		}
		if len(seen) != n {
			t.Errorf("receiver saw %d distinct ids, want %d", len(seen), n)
		}
		// OnResult runs after a row is settled: wait for the last ones.
		waitFor(t, 5*time.Second, "the replicas to report every delivery", func() bool {
			return outA.get(OutcomeDelivered)+outB.get(OutcomeDelivered) == n
		})
		a, b := outA.get(OutcomeDelivered), outB.get(OutcomeDelivered)
		t.Logf("replica A delivered %d, replica B %d", a, b)
	})

	t.Run("redelivers after a crash once the lease lapses", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		clk := newClock()
		rc := newReceiver(t, nil)
		id := enqueue(t, e, rc.URL, map[string]int{"n": 1}, clk.Now())
		// A replica claims the row and dies before it can say how it went.
		crashed := NewDeliverer(DelivererConfig{Pool: e.pool, Secrets: e.secrets, Now: clk.Now, Timeout: 2 * time.Second})
		if rows, err := crashed.claim(context.Background(), 10); err != nil || len(rows) != 1 {
			t.Fatalf("claim = %d rows, %v", len(rows), err)
		}

		// Inside the 4s lease (2×Timeout) no other replica may take it.
		other := NewDeliverer(DelivererConfig{Pool: e.pool, Secrets: e.secrets, Now: clk.Now, Timeout: 2 * time.Second})
		clk.Advance(3 * time.Second)
		if rows, err := other.claim(context.Background(), 10); err != nil || len(rows) != 0 {
			t.Fatalf("another replica claimed %d rows (%v) while the lease held", len(rows), err)
		}
		clk.Advance(2 * time.Second)
		startDeliverer(t, e, DelivererConfig{AllowPrivate: true, Now: clk.Now, Timeout: 2 * time.Second})
		r := waitState(t, e, id, "delivered")
		if r.Attempts != 2 {
			t.Fatalf("attempts = %d, want 2 (the lost one counts)", r.Attempts)
		}
		if got := rc.got(); len(got) != 1 || got[0].header.Get(HeaderDelivery) != id {
			t.Fatalf("receiver saw %d requests, want the one redelivery of %s", len(got), id)
		}
	})

	t.Run("refuses private addresses", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		rc := newReceiver(t, nil)
		var out outcomes
		startDeliverer(t, e, DelivererConfig{AllowPrivate: false, OnResult: out.record})
		literal := enqueue(t, e, rc.URL, map[string]int{"n": 1}, time.Now())
		// A name passes CheckURL and is caught at dial time instead.
		named := enqueue(t, e, strings.Replace(rc.URL, "127.0.0.1", "localhost", 1), map[string]int{"n": 2}, time.Now())

		for id, want := range map[string]string{literal: "loopback", named: "dial 127.0.0.1: loopback"} {
			r := waitState(t, e, id, "failed")
			if r.Attempts != 1 || r.LastStatus != nil || r.LastError == nil ||
				!strings.HasPrefix(*r.LastError, "refused: ") || !strings.Contains(*r.LastError, want) {
				t.Errorf("row %s = %+v, want failed at once with a refusal mentioning %q", id, r, want)
			} else {
				t.Logf("last_error: %s", *r.LastError)
			}
		}
		if n := len(rc.got()); n != 0 {
			t.Fatalf("receiver saw %d requests, want none", n)
		}
	})

	t.Run("stop returns promptly and releases rows in flight", func(t *testing.T) {
		t.Parallel()
		e := setup(t)
		release := make(chan struct{})
		var once sync.Once
		unblock := func() { once.Do(func() { close(release) }) }
		rc := newReceiver(t, func(int) int { <-release; return 200 })
		t.Cleanup(unblock) // registered after the server, so it runs before Close waits on the handler
		d := NewDeliverer(DelivererConfig{Pool: e.pool, Secrets: e.secrets, AllowPrivate: true, StopGrace: 100 * time.Millisecond})
		d.Start(context.Background())
		id := enqueue(t, e, rc.URL, map[string]int{"n": 1}, time.Now())
		d.Wake()
		waitFor(t, 10*time.Second, "the request to arrive", func() bool { return len(rc.got()) == 1 })

		began := time.Now()
		d.Stop(context.Background())
		if took := time.Since(began); took > 2*time.Second {
			t.Fatalf("Stop took %s with a hung receiver, want about StopGrace", took)
		}
		r := getRow(t, e, id)
		if r.State != "pending" || r.NextAttempt.After(time.Now()) || r.LastError == nil || !strings.Contains(*r.LastError, "shutdown") {
			t.Fatalf("row after Stop = %+v, want pending and due now", r)
		}
		d.Stop(context.Background()) // idempotent
		d.Wake()                     // and never blocks after Stop
		d.Wake()
	})

	t.Run("stop before start and wake never block", func(t *testing.T) {
		t.Parallel()
		d := NewDeliverer(DelivererConfig{})
		for range 3 {
			d.Wake()
		}
		d.Stop(context.Background())
	})
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	for attempt, base := range map[int]time.Duration{
		1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second, 10: 2560 * time.Second, 11: time.Hour, 1000: time.Hour,
	} {
		for range 100 {
			if got := backoff(attempt); got < base || got > base+base/5 {
				t.Fatalf("backoff(%d) = %s, want in [%s, %s]", attempt, got, base, base+base/5)
			}
		}
	}
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	s := strings.Repeat("é", 200) // 400 bytes
	got := truncate(s, maxErrorLen)
	if len(got) > maxErrorLen || !strings.HasPrefix(s, got) || len(got) < maxErrorLen-1 {
		t.Fatalf("truncate gave %d bytes", len(got))
	}
}
