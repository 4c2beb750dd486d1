package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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

	"github.com/poolgate/poolgate/internal/api"
	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/results"
	"github.com/poolgate/poolgate/internal/s3server"
)

// results is scenario 7 (6 is the soak on main): ResultJobs results of ResultMB each stream
// through one replica at once, first in (each replica-side upload reads
// an upstream response on loopback into the result directory, as the
// LTX-2 API provider stores a video), then out (GET /v1/jobs/{id}/result
// through the replica's API). The process's RSS is sampled throughout:
// streaming must keep it flat, whatever the bodies weigh together. Every
// download is checked byte for byte against what was uploaded.
func (b *runner) results(ctx context.Context, tag string) (*sample, Invariants, error) {
	if _, err := rss(); err != nil {
		return nil, Invariants{}, fmt.Errorf("results scenario reads RSS from /proc: %w", err)
	}
	n, size := b.cfg.ResultJobs, int64(b.cfg.ResultMB)<<20
	w, err := newWorld(ctx, b.cfg, b.dbs, tag, sim.Config{Seed: 1})
	if err != nil {
		return nil, Invariants{}, err
	}
	defer w.close(b.dbs)
	if err := w.addAccounts(ctx, 1, min(n, 100)); err != nil {
		return nil, Invariants{}, err
	}
	if err := w.newReplicas(ctx, 1, nil); err != nil {
		return nil, Invariants{}, err
	}
	w.startReplicas(ctx)
	b.progress("results: %d jobs succeed first", n)
	ids, _, _, err := w.createJobs(ctx, n, 1)
	if err != nil {
		return nil, Invariants{}, err
	}
	if _, err := w.waitDrained(ctx, int64(n), b.cfg.Timeout); err != nil {
		return nil, Invariants{}, err
	}
	inv, err := w.check(ctx, ids)
	if err != nil {
		return nil, Invariants{}, err
	}

	store, closeStore, err := b.resultStore()
	if err != nil {
		return nil, Invariants{}, err
	}
	defer closeStore()
	upstream, stopUpstream, err := serveBodies(size)
	if err != nil {
		return nil, Invariants{}, err
	}
	defer stopUpstream()
	r := w.replicas[0]
	srv, err := serveLoopback(api.New(api.Deps{
		Logger: w.cfg.Logger, DB: r.pool, Keys: auth.NewStore(r.pool, time.Now), Accounts: r.store, Jobs: r.sched, Results: store,
	}))
	if err != nil {
		return nil, Invariants{}, err
	}
	defer srv.Close()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = n
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()

	runtime.GC()
	debug.FreeOSMemory()
	meter, err := startRSS()
	if err != nil {
		return nil, Invariants{}, err
	}
	s := newSample()
	b.progress("results: %d × %d MB streamed into the %s store at once", n, b.cfg.ResultMB, b.cfg.ResultStore)
	sums := make([][32]byte, n)
	t0 := time.Now()
	err = parallel(ctx, n, n, func(ctx context.Context, i int) error {
		return storeOne(ctx, client, upstream+"/"+strconv.Itoa(i), store, ids[i], size, &sums[i])
	})
	put := time.Since(t0)
	putPeak := meter.peak.Load()
	if err != nil {
		meter.stop()
		return nil, Invariants{}, fmt.Errorf("store results: %w", err)
	}
	// What the LTX-2 provider's terminal status carries.
	if _, err := w.admin.Exec(ctx, `UPDATE jobs SET result = jsonb_build_object('url', '/v1/jobs/' || id || '/result',
		'contentType', 'video/mp4', 'size', $2::bigint) WHERE id = ANY($1)`, ids, size); err != nil {
		meter.stop()
		return nil, Invariants{}, err
	}
	b.progress("results: %d × GET /v1/jobs/{id}/result at once", n)
	t1 := time.Now()
	err = parallel(ctx, n, n, func(ctx context.Context, i int) error {
		return fetchOne(ctx, client, srv.URL+"/v1/jobs/"+ids[i]+"/result", w.key, size, sums[i])
	})
	get := time.Since(t1)
	base, peak := meter.stop()
	if err != nil {
		return nil, Invariants{}, fmt.Errorf("fetch results: %w", err)
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

// storeOne reads one upstream body into the store, as a provider does,
// hashing what it sent.
func storeOne(ctx context.Context, c *http.Client, url string, store results.Store, key string, size int64, sum *[32]byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	h := sha256.New()
	got, err := store.Put(ctx, key, io.TeeReader(resp.Body, h), resp.Header.Get("Content-Type"))
	if err != nil {
		return err
	}
	if got != size {
		return fmt.Errorf("%s: stored %d bytes of %d", key, got, size)
	}
	copy(sum[:], h.Sum(nil))
	return nil
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

// serveBodies serves GET /{i}: size pseudo-random bytes (seeded by i) as
// video/mp4, generated while written, like an upstream streaming a video.
func serveBodies(size int64) (string, func(), error) {
	srv, err := serveLoopback(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seed, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		w.Header().Set("Content-Type", "video/mp4")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		io.Copy(w, io.LimitReader(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}), size))
	}))
	if err != nil {
		return "", nil, err
	}
	return srv.URL, srv.Close, nil
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
