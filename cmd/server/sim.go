package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/poolgate/poolgate/internal/provider/sim"
)

// simulate runs the upstream simulator on POOLGATE_SIM_ADDR until ctx ends.
func simulate(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg := sim.DefaultConfig()
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	addr := env(getenv).get("POOLGATE_SIM_ADDR", "127.0.0.1:8090")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on POOLGATE_SIM_ADDR=%s: %w", addr, err)
	}
	logger := newLogger(stderr, slog.LevelInfo)
	srv := &http.Server{Handler: sim.New(cfg, nil), ReadHeaderTimeout: 10 * time.Second}
	logger.Info("simulator listening", "addr", ln.Addr().String(), "job_duration", cfg.JobDuration.String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
