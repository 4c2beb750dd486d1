package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/errs"
)

// Outcomes passed to DelivererConfig.OnResult.
const (
	OutcomeDelivered = "delivered"
	OutcomeRetry     = "retry"
	OutcomeFailed    = "failed"
)

// Retry schedule: 5s, 10s, 20s, … doubling per attempt up to an hour, each
// plus up to 20% jitter so a receiver that comes back is not hit by every
// backlog row in the same second.
const (
	backoffBase = 5 * time.Second
	backoffMax  = time.Hour
)

const maxErrorLen = 300

// DelivererConfig configures a Deliverer. Pool, Secrets and Now are
// required in spirit; a nil Now means time.Now and a nil Logger discards.
type DelivererConfig struct {
	Pool    *pgxpool.Pool
	Secrets *Secrets
	Logger  *slog.Logger
	Now     func() time.Time
	// AllowPrivate permits loopback and private addresses (tests, local
	// development). Leave it false in production.
	AllowPrivate bool
	// HTTPClient replaces the built-in client. The built-in one refuses
	// private addresses at dial time; a replacement must do its own guarding.
	HTTPClient *http.Client
	// PollInterval is how often to look for due rows when nobody calls
	// Wake (default 1s).
	PollInterval time.Duration
	// Concurrency bounds requests in flight on this replica (default 8).
	Concurrency int
	// Timeout bounds one attempt, secret lookup and request together
	// (default 10s). A claim is leased for twice as long.
	Timeout time.Duration
	// StopGrace is how long Stop lets requests in flight finish before
	// aborting them (default 5s).
	StopGrace time.Duration
	// OnResult, if set, is called once per attempt with OutcomeDelivered,
	// OutcomeRetry or OutcomeFailed.
	OnResult func(outcome string)
}

// Deliverer sends pending deliveries. Several may run against one database;
// a row is only ever in flight on one of them at a time, as long as its
// lease (2×Timeout) has not lapsed, and an attempt cannot outlive Timeout.
type Deliverer struct {
	pool         *pgxpool.Pool
	secrets      *Secrets
	log          *slog.Logger
	now          func() time.Time
	allowPrivate bool
	client       *http.Client
	poll         time.Duration
	concurrency  int
	timeout      time.Duration
	grace        time.Duration
	onResult     func(string)

	wake  chan struct{}
	freed chan struct{}

	mu       sync.Mutex
	started  bool
	stopLoop context.CancelFunc
	abort    context.CancelFunc
	loopDone chan struct{}
	stopOnce sync.Once
	inflight sync.WaitGroup
}

// NewDeliverer returns a Deliverer; call Start to run it.
func NewDeliverer(cfg DelivererConfig) *Deliverer {
	d := &Deliverer{
		pool:         cfg.Pool,
		secrets:      cfg.Secrets,
		log:          cfg.Logger,
		now:          cfg.Now,
		allowPrivate: cfg.AllowPrivate,
		client:       cfg.HTTPClient,
		poll:         orDefault(cfg.PollInterval, time.Second),
		concurrency:  cfg.Concurrency,
		timeout:      orDefault(cfg.Timeout, 10*time.Second),
		grace:        orDefault(cfg.StopGrace, 5*time.Second),
		onResult:     cfg.OnResult,
		wake:         make(chan struct{}, 1),
		freed:        make(chan struct{}, 1),
		loopDone:     make(chan struct{}),
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.concurrency <= 0 {
		d.concurrency = 8
	}
	if d.client == nil {
		d.client = newClient(d.allowPrivate, d.concurrency)
	}
	return d
}

func orDefault(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

// Start runs the delivery loop until Stop is called or ctx ends. A
// Deliverer runs once; later calls do nothing.
func (d *Deliverer) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started {
		return nil
	}
	d.started = true
	loopCtx, stopLoop := context.WithCancel(ctx)
	// Requests in flight survive ctx ending, so that Stop (not the parent
	// context) decides when to abort them.
	abortCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	d.stopLoop, d.abort = stopLoop, abort
	go d.run(loopCtx, abortCtx)
	return nil
}

// Stop stops claiming, lets requests in flight finish for up to StopGrace,
// then aborts the rest and releases their rows for immediate retry. It
// returns once every row it claimed has been settled or released. (ctx
// is for the shape every background service shares; StopGrace bounds the
// wait.)
func (d *Deliverer) Stop(_ context.Context) {
	d.mu.Lock()
	started := d.started
	d.mu.Unlock()
	if !started {
		return
	}
	d.stopOnce.Do(func() {
		d.stopLoop()
		<-d.loopDone
		done := make(chan struct{})
		go func() { d.inflight.Wait(); close(done) }()
		t := time.NewTimer(d.grace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			d.log.Warn("webhooks: aborting deliveries in flight at shutdown")
			d.abort()
			<-done
		}
		d.abort()
	})
}

// Wake makes the Deliverer look for due rows now rather than at the next
// poll. It never blocks.
func (d *Deliverer) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *Deliverer) run(ctx, abortCtx context.Context) {
	defer close(d.loopDone)
	slots := make(chan struct{}, d.concurrency)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-d.freed:
		case <-timer.C:
		}
		free := cap(slots) - len(slots)
		if free == 0 {
			timer.Reset(d.poll)
			continue // a finishing request signals freed
		}
		rows, err := d.claim(ctx, free)
		if err != nil && ctx.Err() == nil {
			d.log.Error("webhooks: claim deliveries", "err", err)
		}
		for _, r := range rows {
			slots <- struct{}{}
			d.inflight.Go(func() {
				d.deliver(abortCtx, r)
				<-slots
				select {
				case d.freed <- struct{}{}:
				default:
				}
			})
		}
		if len(rows) == free {
			d.Wake() // a full batch: more may be due
		}
		timer.Reset(d.poll)
	}
}

// claimed is one row this replica holds the lease on.
type claimed struct {
	id       string
	tenantID int64
	url      string
	event    string
	payload  []byte
	attempts int
	giveUpAt time.Time
}

// deliveryClaim takes due rows no other replica holds, counts the attempt
// and leases the row by moving next_attempt_at past the longest the attempt
// can take; the statement commits on its own, before any request is made.
const deliveryClaim = `
WITH due AS (
	SELECT id FROM webhook_deliveries
	WHERE state = 'pending' AND next_attempt_at <= $1
	ORDER BY next_attempt_at
	LIMIT $2
	FOR UPDATE SKIP LOCKED
)
UPDATE webhook_deliveries d
SET attempts = d.attempts + 1, next_attempt_at = $3
FROM due
WHERE d.id = due.id
RETURNING d.id, d.tenant_id, d.url, d.event, d.payload, d.attempts, d.give_up_at`

func (d *Deliverer) claim(ctx context.Context, n int) ([]claimed, error) {
	now := d.now().UTC()
	rows, err := d.pool.Query(ctx, deliveryClaim, now, n, now.Add(2*d.timeout))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []claimed
	for rows.Next() {
		var c claimed
		var payload string
		if err := rows.Scan(&c.id, &c.tenantID, &c.url, &c.event, &payload, &c.attempts, &c.giveUpAt); err != nil {
			return out, err
		}
		c.payload = []byte(payload)
		out = append(out, c)
	}
	return out, rows.Err()
}

// result is what one attempt came to.
type result struct {
	status    int    // HTTP status, 0 when no response
	err       string // why it did not succeed; never holds the secret
	permanent bool   // retrying cannot help
	aborted   bool   // cut short by Stop
}

func (r result) ok() bool { return r.err == "" && r.status >= 200 && r.status < 300 }

func (d *Deliverer) deliver(abortCtx context.Context, c claimed) {
	res := d.attempt(abortCtx, c)
	// Settle even when aborted: the row must not sit out a whole lease.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(abortCtx), 5*time.Second)
	defer cancel()
	outcome, err := d.settle(ctx, c, res)
	log := d.log.With("delivery", c.id, "tenant", c.tenantID, "event", c.event, "url", RedactURL(c.url),
		"attempt", c.attempts, "status", res.status)
	if err != nil {
		log.Error("webhooks: record delivery result", "err", err)
		return
	}
	switch outcome {
	case OutcomeDelivered:
		log.Debug("webhooks: delivered")
	case OutcomeRetry:
		log.Info("webhooks: delivery failed, will retry", "reason", res.err)
	case OutcomeFailed:
		log.Warn("webhooks: delivery failed for good", "reason", res.err)
	}
	if d.onResult != nil {
		d.onResult(outcome)
	}
}

func (d *Deliverer) attempt(abortCtx context.Context, c claimed) result {
	if err := CheckURL(c.url, d.allowPrivate); err != nil {
		return result{err: "refused: " + errs.As(err).Message, permanent: true}
	}
	ctx, cancel := context.WithTimeout(abortCtx, d.timeout)
	defer cancel()
	keys, err := d.secrets.SigningKeys(ctx, c.tenantID)
	if err != nil {
		return result{err: "signing secret unavailable", aborted: abortCtx.Err() != nil}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(c.payload))
	if err != nil {
		return result{err: "refused: webhook URL does not parse", permanent: true}
	}
	ts := d.now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(HeaderDelivery, c.id)
	req.Header.Set(HeaderEvent, c.event)
	req.Header.Set(HeaderID, c.id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, SignatureHeader(keys, c.id, ts, c.payload))
	resp, err := d.client.Do(req)
	if err != nil {
		if r, ok := isRefused(err); ok {
			return result{err: "refused: " + r.Error(), permanent: true}
		}
		if errors.Is(err, context.DeadlineExceeded) && abortCtx.Err() == nil {
			return result{err: fmt.Sprintf("no response within %s", d.timeout)}
		}
		// *url.Error quotes the whole URL, and a Slack webhook's path is
		// its secret: name the URL redacted, then the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			return result{err: ue.Op + " " + RedactURL(c.url) + ": " + ue.Err.Error(), aborted: abortCtx.Err() != nil}
		}
		return result{err: err.Error(), aborted: abortCtx.Err() != nil}
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return result{status: resp.StatusCode}
	}
	msg := "HTTP " + strconv.Itoa(resp.StatusCode)
	if s := printable(snippet); s != "" {
		msg += ": " + s
	}
	return result{status: resp.StatusCode, err: msg}
}

// Writes are guarded by state and, except for success, by the attempt
// number: a replica whose lease lapsed must not clobber the schedule of the
// one that took the row over. A success always lands, since it happened.
const (
	deliveryMarkDelivered = `
UPDATE webhook_deliveries SET state = 'delivered', delivered_at = $2, last_status = $3, last_error = NULL
WHERE id = $1 AND state = 'pending'`
	deliveryMarkRetry = `
UPDATE webhook_deliveries SET next_attempt_at = $3, last_status = $4, last_error = $5
WHERE id = $1 AND attempts = $2 AND state = 'pending'`
	deliveryMarkFailed = `
UPDATE webhook_deliveries SET state = 'failed', last_status = $3, last_error = $4
WHERE id = $1 AND attempts = $2 AND state = 'pending'`
)

func (d *Deliverer) settle(ctx context.Context, c claimed, r result) (string, error) {
	now := d.now().UTC()
	if r.ok() {
		_, err := d.pool.Exec(ctx, deliveryMarkDelivered, c.id, now, r.status)
		return OutcomeDelivered, err
	}
	status := statusOrNil(r.status)
	msg := truncate(r.err, maxErrorLen)
	switch {
	case r.aborted:
		// Shutdown, not the receiver's fault: hand the row straight back.
		_, err := d.pool.Exec(ctx, deliveryMarkRetry, c.id, c.attempts, now, status, truncate("interrupted by shutdown: "+r.err, maxErrorLen))
		return OutcomeRetry, err
	case r.permanent || !now.Before(c.giveUpAt):
		_, err := d.pool.Exec(ctx, deliveryMarkFailed, c.id, c.attempts, status, msg)
		return OutcomeFailed, err
	default:
		next := now.Add(backoff(c.attempts))
		if next.After(c.giveUpAt) {
			next = c.giveUpAt // one last try at the deadline
		}
		_, err := d.pool.Exec(ctx, deliveryMarkRetry, c.id, c.attempts, next, status, msg)
		return OutcomeRetry, err
	}
}

// backoff is the wait after the given (1-based) failed attempt.
func backoff(attempt int) time.Duration {
	d := backoffMax
	if attempt >= 1 && attempt <= 20 {
		d = min(backoffBase<<(attempt-1), backoffMax)
	}
	return d + rand.N(d/5+1)
}

func statusOrNil(s int) any {
	if s == 0 {
		return nil
	}
	return s
}

// printable keeps a response snippet readable in last_error.
func printable(b []byte) string {
	s := strings.ToValidUTF8(string(b), "")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
