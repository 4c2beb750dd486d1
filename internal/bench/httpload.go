package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/poolgate/poolgate/internal/api"
	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/provider/sim"
)

// http is scenario 3: every replica serves the API on loopback, as
// poolgate serve does, and a load generator with HTTPConcurrency clients
// sends authenticated POST /v1/jobs round robin over them: first with
// nothing dispatching (post_queue_only_*: the API and insert path alone),
// then as many jobs again through POST /v1/jobs/batch (batch_*), then,
// once those jobs are done, while the replicas work the new ones
// off (post_*), then GET /v1/jobs/{id} for the jobs it created. The run
// ends when all have succeeded.
func (b *runner) http(ctx context.Context, tag string) (*sample, Invariants, error) {
	w, err := newWorld(ctx, b.cfg, b.dbs, tag, sim.Config{Seed: 1})
	if err != nil {
		return nil, Invariants{}, err
	}
	defer w.close(b.dbs)
	if err := w.addAccounts(ctx, b.cfg.Accounts, b.cfg.Slots); err != nil {
		return nil, Invariants{}, err
	}
	if err := w.newReplicas(ctx, b.cfg.Replicas, nil); err != nil {
		return nil, Invariants{}, err
	}
	urls, stop, err := w.serveAPI(ctx)
	if err != nil {
		return nil, Invariants{}, err
	}
	defer stop()

	n, conc := b.cfg.HTTPRequests, b.cfg.HTTPConcurrency
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 2*conc, conc
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	defer tr.CloseIdleConnections()
	s := newSample()
	body := []byte(`{"type":"video","params":{"prompt":"bench"}}`)
	post := func(ids []string) func(ctx context.Context, i int) error {
		return func(ctx context.Context, i int) error {
			var job struct{ ID string }
			err := w.call(ctx, client, http.MethodPost, urls[i%len(urls)]+"/v1/jobs", body, http.StatusAccepted, &job)
			ids[i] = job.ID
			return err
		}
	}

	// First the API and insert path alone: the replicas serve the API
	// but dispatch nothing yet, so the machine's CPU goes to requests.
	b.progress("http: %d × POST /v1/jobs from %d clients over %d replicas, nothing dispatching", n, conc, len(urls))
	queued := make([]string, n)
	qpost, err := load(ctx, conc, n, post(queued))
	if err != nil {
		return nil, Invariants{}, err
	}
	qpost.record(s, "post_queue_only_")

	// POST /v1/jobs/batch the same way: as many jobs again, 1,000 a
	// request, from 4 clients.
	batches := (n + batchSize - 1) / batchSize
	b.progress("http: %d jobs in %d × POST /v1/jobs/batch from 4 clients, nothing dispatching", n, batches)
	batched := make([]string, n)
	bt, err := load(ctx, 4, batches, func(ctx context.Context, i int) error {
		lo, hi := i*batchSize, min((i+1)*batchSize, n)
		var out struct {
			Data []struct{ Job struct{ ID string } }
		}
		if err := w.call(ctx, client, http.MethodPost, urls[i%len(urls)]+"/v1/jobs/batch", batchBody(hi-lo), http.StatusOK, &out); err != nil {
			return err
		}
		if len(out.Data) != hi-lo {
			return fmt.Errorf("batch of %d answered %d items", hi-lo, len(out.Data))
		}
		for k, d := range out.Data {
			batched[lo+k] = d.Job.ID
		}
		return nil
	})
	if err != nil {
		return nil, Invariants{}, err
	}
	s.set("batch_jobs_per_sec", "jobs/s", perSec(n, bt.elapsed))
	s.set("batch_p99_ms", "ms", percentile(bt.ms, 99))
	queued = append(queued, batched...)

	w.startReplicas(ctx)
	if _, err := w.waitDrained(ctx, int64(len(queued)), b.cfg.Timeout); err != nil {
		return nil, Invariants{}, err
	}

	// Then as a deployment runs: the replicas work jobs off while
	// producers keep posting.
	b.progress("http: %d × POST /v1/jobs from %d clients over %d replicas, while they work", n, conc, len(urls))
	ids := make([]string, n)
	stopProfile := b.profile(tag, "http")
	activity := w.startActivity(ctx)
	meter := startCPU(ctx, w.admin, w.dbName)
	working, err := load(ctx, conc, n, post(ids))
	self, pg := meter.stop(ctx)
	stopProfile()
	if err != nil {
		return nil, Invariants{}, err
	}
	working.record(s, "post_")
	s.cpu("post_", self, pg, n)

	b.progress("http: %d × GET /v1/jobs/{id}", n)
	stopProfile = b.profile(tag, "http_get")
	get, err := load(ctx, conc, n, func(ctx context.Context, i int) error {
		id := ids[rand.IntN(len(ids))]
		return w.call(ctx, client, http.MethodGet, urls[i%len(urls)]+"/v1/jobs/"+id, nil, http.StatusOK, nil)
	})
	stopProfile()
	if err != nil {
		return nil, Invariants{}, err
	}
	get.record(s, "get_")

	b.progress("http: %d × GET of the same job model from a bare echo handler", n)
	if err := w.bareGets(ctx, client, urls[0], ids[0], conc, n, get, s); err != nil {
		return nil, Invariants{}, fmt.Errorf("bare handler: %w", err)
	}

	if _, err := w.waitDrained(ctx, int64(len(queued)+n), b.cfg.Timeout); err != nil {
		return nil, Invariants{}, err
	}
	stop()
	w.stopReplicas() // their backends exit and publish their counters
	w.waitQuiet(ctx)
	activity.stop(ctx, s, "", n) // POST + GET + the jobs' work
	inv, err := w.check(ctx, append(ids, queued...))
	return s, inv, err
}

// batchSize is how many jobs one POST /v1/jobs/batch of the http scenario
// carries: the most the API takes.
const batchSize = 1000

// batchBody is a POST /v1/jobs/batch body of n jobs.
func batchBody(n int) []byte {
	var buf bytes.Buffer
	buf.WriteString(`{"jobs":[`)
	for i := range n {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(`{"type":"video","params":{"prompt":"bench"}}`)
	}
	buf.WriteString(`]}`)
	return buf.Bytes()
}

// serveAPI puts each replica's API on a loopback listener, wired as
// poolgate serve wires it (key cache included; no per-key rate limit, so
// the load generator measures the API rather than the limiter).
func (w *world) serveAPI(ctx context.Context) ([]string, func(), error) {
	var (
		urls  []string
		stops []func()
	)
	stopAll := func() {
		for _, f := range stops {
			f()
		}
	}
	for _, r := range w.replicas {
		keys := auth.NewStore(r.pool, time.Now)
		cache := auth.NewCache(keys, w.cfg.Logger, time.Minute)
		if err := cache.Start(ctx); err != nil {
			stopAll()
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			cache.Stop(context.Background())
			stopAll()
			return nil, nil, err
		}
		srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: api.New(api.Deps{
			Logger: w.cfg.Logger, DB: r.pool, Keys: keys, Verifier: cache, Accounts: r.store, Jobs: r.sched,
		})}
		go srv.Serve(ln)
		urls = append(urls, "http://"+ln.Addr().String())
		stops = append(stops, func() { srv.Close(); cache.Stop(context.Background()) })
	}
	return urls, stopAll, nil
}

// call sends one authenticated request and decodes the answer into out.
func (w *world) call(ctx context.Context, c *http.Client, method, url string, body []byte, want int, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+w.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %d, want %d: %.300s", method, url, resp.StatusCode, want, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// latencies is what a load phase measured.
type latencies struct {
	elapsed time.Duration
	ms      []float64 // sorted
}

func (l latencies) record(s *sample, prefix string) {
	s.set(prefix+"rps", "req/s", perSec(len(l.ms), l.elapsed))
	s.set(prefix+"p50_ms", "ms", percentile(l.ms, 50))
	s.set(prefix+"p99_ms", "ms", percentile(l.ms, 99))
}

// load runs f(0..n-1) from conc clients and times each call. Any failed
// request fails the phase: under this load none should.
func load(ctx context.Context, conc, n int, f func(ctx context.Context, i int) error) (latencies, error) {
	lat := make([]float64, n) // each client writes only its own indexes
	t0 := time.Now()
	err := parallel(ctx, conc, n, func(ctx context.Context, i int) error {
		start := time.Now()
		if err := f(ctx, i); err != nil {
			return err
		}
		lat[i] = ms(time.Since(start))
		return nil
	})
	elapsed := time.Since(t0)
	slices.Sort(lat)
	return latencies{elapsed: elapsed, ms: lat}, err
}
