package ltxapi_test

import (
	"context"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/ltxapi"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/results/resultstest"
)

// BenchmarkStream50x20MB streams 50 concurrent 20 MB videos from the
// simulator through the adapter into a directory sink, and reports the
// peak Go heap and the process's peak RSS (VmHWM, simulator included):
// both should stay far below the 1 GB the videos add up to.
func BenchmarkStream50x20MB(b *testing.B) {
	const n, size = 50, 20 << 20
	s := sim.New(sim.Config{LTXAPIVideoBytes: size, Seed: 1}, nil)
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := ltxapi.New(srv.URL, resultstest.Dir(b, b.TempDir()), nil)
	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	for b.Loop() {
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				id := "job_" + strconv.Itoa(i)
				a := provider.Account{Email: id, Provider: provider.NameLTXAPI, APIKey: "ltxv_bench_" + id}
				if _, err := c.Submit(context.Background(), a, video(id, `{"prompt":"bench"}`)); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
	}
	close(stop)
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(n*size)/(1<<20), "streamed-MB/op")
	if st, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(st), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				b.ReportMetric(kb/1024, "peak-RSS-MB")
			}
		}
	}
}
