package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// Account label modes of POOLGATE_METRICS_ACCOUNT_LABEL.
const (
	accountLabelEmail = "email" // per-account series carry email="…"
	accountLabelHash  = "hash"  // they carry account="acct_<sha256(email)[:12]>" instead
)

// loadMetricsConfig reads where metrics are served and how accounts are
// named in them.
func loadMetricsConfig(e env, c *config, problems *[]error) {
	c.MetricsAddr = e.get("POOLGATE_METRICS_ADDR", "127.0.0.1:9464")
	c.MetricsAccountLabel = e.get("POOLGATE_METRICS_ACCOUNT_LABEL", accountLabelEmail)
	if c.MetricsAccountLabel != accountLabelEmail && c.MetricsAccountLabel != accountLabelHash {
		*problems = append(*problems, errors.New("POOLGATE_METRICS_ACCOUNT_LABEL must be email or hash"))
	}
}

// startMetrics serves GET /metrics on its own listener, away from the API:
// the series name tenants and accounts, which API clients must not read.
// addr "off" serves nothing. stop closes the listener.
func startMetrics(addr, accountLabel string, g prometheus.Gatherer, logger *slog.Logger) (stop func(), err error) {
	if addr == "off" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on POOLGATE_METRICS_ADDR=%s: %w", addr, err)
	}
	if accountLabel == accountLabelHash {
		g = hashedAccounts{g}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: time.Minute,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	logger.Info("serving metrics", "addr", ln.Addr().String(), "account_label", accountLabel)
	go srv.Serve(ln)
	return func() { srv.Close() }, nil
}

// hashedAccounts replaces every email label with an account label holding
// a pseudonym (the first 12 hex digits of the email's SHA-256), so an
// operator can tell accounts apart, and find one by hashing its email,
// without the scrape itself listing addresses.
type hashedAccounts struct{ prometheus.Gatherer }

func (h hashedAccounts) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := h.Gatherer.Gather()
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			for _, lp := range m.Label {
				if lp.GetName() == "email" {
					lp.Name, lp.Value = proto.String("account"), proto.String(accountPseudonym(lp.GetValue()))
				}
			}
			slices.SortFunc(m.Label, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
		}
	}
	return mfs, err
}

func accountPseudonym(email string) string {
	sum := sha256.Sum256([]byte(email))
	return "acct_" + hex.EncodeToString(sum[:6])
}
