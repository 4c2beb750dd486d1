package bench

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// serveBare serves GET /v1/jobs/:id on loopback from a bare echo handler
// that encodes job, a decoded job model, as JSON on every request: no
// authentication, no middleware, no database. Against it the same load
// generator measures what the machine and the HTTP stack can do at all,
// the yardstick of http.get_vs_bare.
func serveBare(job map[string]any) (url string, stop func(), err error) {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/v1/jobs/:id", func(c echo.Context) error { return c.JSON(http.StatusOK, job) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// bareGets runs the GET load against a bare handler serving the model of
// job id (read once through the real API at url, so both answer the same
// bytes) and records bare_rps, bare_p99_ms and get_vs_bare, the ratio of
// the API's GET rate to the bare one.
func (w *world) bareGets(ctx context.Context, client *http.Client, url, id string, conc, n int, get latencies, s *sample) error {
	var job map[string]any
	if err := w.call(ctx, client, http.MethodGet, url+"/v1/jobs/"+id, nil, http.StatusOK, &job); err != nil {
		return err
	}
	bare, stop, err := serveBare(job)
	if err != nil {
		return err
	}
	defer stop()
	lat, err := load(ctx, conc, n, func(ctx context.Context, i int) error {
		return w.call(ctx, client, http.MethodGet, bare+"/v1/jobs/"+id, nil, http.StatusOK, nil)
	})
	if err != nil {
		return err
	}
	lat.record(s, "bare_")
	if bareRPS := perSec(len(lat.ms), lat.elapsed); bareRPS > 0 {
		s.set("get_vs_bare", "ratio", perSec(len(get.ms), get.elapsed)/bareRPS)
	}
	return nil
}
