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
	"net/mail"
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

// simCookie prints, alone on one line, a browser cookie string for email
// that the simulator accepts: JWT-shaped lt_token and lt_refresh_token
// with the given lifetimes. Registering it through POST /v1/accounts gives
// a newcomer a working account without an LTX Studio login.
func simCookie(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sim cookie", flag.ContinueOnError)
	fs.SetOutput(stderr)
	email := fs.String("email", "", "the account's email (required)")
	tokenLife := fs.Duration("token-lifetime", time.Hour, "lifetime of lt_token")
	refreshLife := fs.Duration("refresh-token-lifetime", 720*time.Hour, "lifetime of lt_refresh_token")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	a, err := mail.ParseAddress(*email)
	switch {
	case *email == "":
		return fmt.Errorf("%w: sim cookie needs --email", errUsage)
	case err != nil || a.Address != *email:
		return fmt.Errorf("%w: --email %q is not an email address", errUsage, *email)
	case fs.NArg() > 0:
		return fmt.Errorf("%w: sim cookie takes no arguments, only flags", errUsage)
	case *tokenLife <= 0 || *refreshLife <= 0:
		return fmt.Errorf("%w: lifetimes must be above 0", errUsage)
	}
	now := time.Now()
	_, err = fmt.Fprintln(stdout, sim.Cookie(*email, now.Add(*tokenLife), now.Add(*refreshLife)))
	return err
}
