package webhooks

import (
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/pgtest"
	"github.com/poolgate/poolgate/internal/secret"
)

// env is one test's database with a tenant in it.
type env struct {
	pool    *pgxpool.Pool
	box     *secret.Box
	secrets *Secrets
	tenant  int64
}

func setup(t *testing.T) *env {
	t.Helper()
	pool := pgtest.New(t)
	key := make([]byte, secret.KeySize)
	rand.Read(key)
	box, err := secret.NewBox(key)
	if err != nil {
		t.Fatal(err)
	}
	return &env{pool: pool, box: box, secrets: NewSecrets(pool, box), tenant: newTenant(t, pool)}
}

func newTenant(t *testing.T, pool *pgxpool.Pool) int64 {
	t.Helper()
	var id int64
	if err := pool.QueryRow(context.Background(), `INSERT INTO tenants (name) VALUES ('acme-' || gen_random_uuid()) RETURNING id`).Scan(&id); err != nil {
		t.Fatalf("create tenant: %v", err)
	}
	return id
}

// clock is a settable clock for Deliverer.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().UTC().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// receipt is one request a receiver saw.
type receipt struct {
	header http.Header
	body   []byte
}

// receiver is an httptest server that records every request and answers
// with whatever respond returns (200 when respond is nil).
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	receipts []receipt
	respond  func(n int) int // n counts requests from 1
}

func newReceiver(t *testing.T, respond func(n int) int) *receiver {
	t.Helper()
	rc := &receiver{respond: respond}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.receipts = append(rc.receipts, receipt{header: r.Header.Clone(), body: body})
		n := len(rc.receipts)
		rc.mu.Unlock()
		status := http.StatusOK
		if rc.respond != nil {
			status = rc.respond(n)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) got() []receipt {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]receipt(nil), rc.receipts...)
}

// startDeliverer starts a Deliverer on e and stops it when the test ends.
func startDeliverer(t *testing.T, e *env, cfg DelivererConfig) *Deliverer {
	t.Helper()
	cfg.Pool, cfg.Secrets = e.pool, e.secrets
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 50 * time.Millisecond
	}
	d := NewDeliverer(cfg)
	d.Start(context.Background())
	t.Cleanup(func() { d.Stop(context.Background()) })
	return d
}

// row is a delivery as stored.
type row struct {
	State       string
	Attempts    int
	NextAttempt time.Time
	LastStatus  *int
	LastError   *string
	DeliveredAt *time.Time
}

func getRow(t *testing.T, e *env, id string) row {
	t.Helper()
	var r row
	err := e.pool.QueryRow(context.Background(), `
		SELECT state, attempts, next_attempt_at, last_status, last_error, delivered_at
		FROM webhook_deliveries WHERE id = $1`, id).
		Scan(&r.State, &r.Attempts, &r.NextAttempt, &r.LastStatus, &r.LastError, &r.DeliveredAt)
	if err != nil {
		t.Fatalf("read delivery %s: %v", id, err)
	}
	return r
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitState(t *testing.T, e *env, id, state string) row {
	t.Helper()
	var r row
	waitFor(t, 10*time.Second, "delivery "+id+" to be "+state, func() bool {
		r = getRow(t, e, id)
		return r.State == state
	})
	return r
}

func enqueue(t *testing.T, e *env, url string, payload any, now time.Time) string {
	t.Helper()
	id, err := Enqueue(context.Background(), e.pool, e.tenant, url, "job.succeeded", payload, now)
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	return id
}

// outcomes counts OnResult calls.
type outcomes struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *outcomes) record(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = make(map[string]int)
	}
	o.n[s]++
}

func (o *outcomes) get(s string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[s]
}
