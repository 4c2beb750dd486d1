package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/api"
	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/ltxapi"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/results"
	"github.com/poolgate/poolgate/internal/s3server"
	"github.com/poolgate/poolgate/internal/scheduler"
)

// results is scenario 7: ResultJobs LTX-2 API jobs whose videos weigh
// ResultMB each stream through one replica at once, first in (the
// scheduler runs them on an API-key account and the real ltxapi provider
// streams each video from the simulator into the result store), then out
// (GET /v1/jobs/{id}/result through the replica's API). The process's RSS
// is sampled throughout: streaming must keep it flat, whatever the videos
// weigh together. Every download is checked byte for byte against what
// the simulator sent.
func (b *runner) results(ctx context.Context, tag string) (*sample, Invariants, error) {
	if _, err := rss(); err != nil {
		return nil, Invariants{}, fmt.Errorf("results scenario reads RSS from /proc: %w", err)
	}
	n, size := b.cfg.ResultJobs, int64(b.cfg.ResultMB)<<20
	slots := min(n, 100) // one account; maxJobs is at most 100
	store, closeStore, err := b.resultStore()
	if err != nil {
		return nil, Invariants{}, err
	}
	defer closeStore()
	w, err := newWorld(ctx, b.cfg, b.dbs, tag, sim.Config{Seed: 1,
		LTXAPIDelay: 50 * time.Millisecond, LTXAPIKeyLimit: slots, LTXAPIVideoBytes: int(size)})
	if err != nil {
		return nil, Invariants{}, err
	}
	defer w.close(b.dbs)
	r0 := accounts.NewStore(w.admin, w.box, time.Now)
	if _, err := r0.RegisterAPIKey(ctx, w.scope, accounts.KeyRegistration{APIKey: "bench-ltx2-key", Name: "bench-ltx2", MaxJobs: &slots}); err != nil {
		return nil, Invariants{}, fmt.Errorf("register the API key: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = n
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	err = w.newReplicas(ctx, 1, func(c *scheduler.Config) {
		c.Providers = provider.Set{provider.NameLTXAPI: ltxapi.New(w.simURL, store, client)}
	})
	if err != nil {
		return nil, Invariants{}, err
	}
	r := w.replicas[0]
	srv, err := serveLoopback(api.New(api.Deps{
		Logger: w.cfg.Logger, DB: r.pool, Keys: auth.NewStore(r.pool, time.Now), Accounts: r.store, Jobs: r.sched, Results: store,
	}))
	if err != nil {
		return nil, Invariants{}, err
	}
	defer srv.Close()
	want := sha256.Sum256(sim.VideoBytes(int(size))) // before the meter starts

	runtime.GC()
	debug.FreeOSMemory()
	meter, err := startRSS()
	if err != nil {
		return nil, Invariants{}, err
	}
	defer meter.stop()
	s := newSample()
	b.progress("results: %d LTX-2 API jobs of %d MB each streamed into the %s store at once", n, b.cfg.ResultMB, b.cfg.ResultStore)
	w.startReplicas(ctx)
	ids := make([]string, n)
	nj := scheduler.NewJob{Type: "video", Provider: provider.NameLTXAPI,
		Params: []byte(`{"prompt":"bench","model":"ltx-2-fast","duration":6}`)}
	t0 := time.Now()
	err = parallel(ctx, n, n, func(ctx context.Context, i int) error {
		j, _, err := r.sched.Create(ctx, w.scope, nj, nil)
		ids[i] = j.ID
		return err
	})
	if err != nil {
		return nil, Invariants{}, fmt.Errorf("queue jobs: %w", err)
	}
	if _, err := w.waitDrained(ctx, int64(n), b.cfg.Timeout); err != nil {
		return nil, Invariants{}, err
	}
	put := time.Since(t0)
	putPeak := meter.peak.Load()

	b.progress("results: %d × GET /v1/jobs/{id}/result at once", n)
	t1 := time.Now()
	err = parallel(ctx, n, n, func(ctx context.Context, i int) error {
		return fetchOne(ctx, client, srv.URL+"/v1/jobs/"+ids[i]+"/result", w.key, size, want)
	})
	get := time.Since(t1)
	base, peak := meter.stop()
	if err != nil {
		return nil, Invariants{}, fmt.Errorf("fetch results: %w", err)
	}
	inv, err := w.check(ctx, ids)
	if err != nil {
		return nil, Invariants{}, err
	}
	// check judges the LTX Studio accounts the simulator saw; this run's
	// account is an API key, which the simulator counts apart.
	for _, k := range w.sim.Stats().APIKeys {
		inv.MaxPeak = max(inv.MaxPeak, k.Peak)
		if k.Peak > slots || k.Limited > 0 {
			inv.PeakOver++
		}
	}
	total := float64(int64(n)*size) / (1 << 20)
	s.set("streamed_mb", "MB", total)
	s.set("put_mb_per_s", "MB/s", total/put.Seconds())
	s.set("get_mb_per_s", "MB/s", total/get.Seconds())
	s.set("base_rss_mb", "MB", float64(base)/(1<<20))
	s.set("peak_rss_mb", "MB", float64(peak)/(1<<20))
	s.set("rss_growth_mb", "MB", float64(peak-base)/(1<<20))
	s.set("put_peak_rss_mb", "MB", float64(putPeak)/(1<<20))
	return s, inv, nil
}

// resultStore makes the store ResultStore names: a temporary directory, or
// a bucket on a versitygw started for the run.
func (b *runner) resultStore() (results.Store, func(), error) {
	switch b.cfg.ResultStore {
	case "dir":
		dir, err := os.MkdirTemp("", "poolgate-bench-results-")
		if err != nil {
			return nil, nil, err
		}
		d, err := results.NewDir(dir)
		if err != nil {
			os.RemoveAll(dir)
			return nil, nil, err
		}
		return d, func() { os.RemoveAll(dir) }, nil
	case "s3":
		b.progress("results: starting versitygw (scripts/tools.sh s3server builds it once)")
		srv, err := s3server.Start()
		if err != nil {
			return nil, nil, err
		}
		s, err := results.NewS3(results.S3Config{Endpoint: srv.Endpoint, Bucket: srv.Bucket, Region: srv.Region,
			AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
		if err != nil {
			srv.Stop()
			return nil, nil, err
		}
		return s, srv.Stop, nil
	}
	return nil, nil, fmt.Errorf("result store %q: want dir or s3", b.cfg.ResultStore)
}

// fetchOne downloads one result and checks it is what was stored.
func fetchOne(ctx context.Context, c *http.Client, url, key string, size int64, want [32]byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("GET %s: status %d: %s", url, resp.StatusCode, raw)
	}
	h := sha256.New()
	got, err := io.Copy(h, resp.Body)
	if err != nil {
		return err
	}
	if got != size || !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("GET %s: %d bytes that differ from the %d stored", url, got, size)
	}
	return nil
}

// loopback is an HTTP server on a free loopback port.
type loopback struct {
	URL string
	srv *http.Server
}

func (l *loopback) Close() { l.srv.Close() }

func serveLoopback(h http.Handler) (*loopback, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return &loopback{URL: "http://" + ln.Addr().String(), srv: srv}, nil
}

// rssMeter samples the process's resident set every few milliseconds.
type rssMeter struct {
	base  int64
	peak  atomic.Int64
	done  chan struct{}
	wg    sync.WaitGroup
	close sync.Once
}

func startRSS() (*rssMeter, error) {
	base, err := rss()
	if err != nil {
		return nil, err
	}
	m := &rssMeter{base: base, done: make(chan struct{})}
	m.peak.Store(base)
	m.wg.Go(func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-m.done:
				return
			case <-t.C:
				if v, err := rss(); err == nil && v > m.peak.Load() {
					m.peak.Store(v)
				}
			}
		}
	})
	return m, nil
}

// stop ends the sampling and returns the RSS at the start and the peak.
func (m *rssMeter) stop() (base, peak int64) {
	m.close.Do(func() { close(m.done) })
	m.wg.Wait()
	if v, err := rss(); err == nil && v > m.peak.Load() {
		m.peak.Store(v)
	}
	return m.base, m.peak.Load()
}

// rss is the process's resident set size in bytes (Linux's /proc).
func rss() (int64, error) {
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(raw))
	if len(f) < 2 {
		return 0, errors.New("unexpected /proc/self/statm")
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * int64(os.Getpagesize()), nil
}
