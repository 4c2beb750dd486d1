package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/api"
	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/secret"
	"github.com/poolgate/poolgate/migrations"
)

// serve runs the API until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: serve takes no arguments", errUsage)
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	logger := newLogger(stderr, cfg.LogLevel)

	pool, err := openDB(ctx, cfg.DatabaseURL, logger)
	if err != nil {
		return err
	}
	defer pool.Close()

	box, err := secret.NewBox(cfg.SecretKey)
	if err != nil {
		return err
	}
	handler := api.New(api.Deps{
		Logger:   logger,
		DB:       pool,
		Keys:     auth.NewStore(pool, time.Now),
		Accounts: accounts.NewStore(pool, box, time.Now),
	})

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on POOLGATE_ADDR=%s: %w", cfg.Addr, err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      2 * time.Minute, // above the longest ?wait= long-poll
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("listening", "addr", ln.Addr().String())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// openDB connects and brings the schema up to date; it refuses a schema
// newer than this binary knows, since it could misread its tables.
func openDB(ctx context.Context, url string, logger *slog.Logger) (*pgxpool.Pool, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("database unreachable: %w", err)
	}
	n, err := migrations.Apply(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	logger.Info("database ready", "migrations_applied", n)
	return pool, nil
}

// migrate applies migrations and exits.
func migrate(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) error {
	url, err := databaseURL(getenv)
	if err != nil {
		return err
	}
	pool, err := openDB(ctx, url, newLogger(stderr, slog.LevelWarn))
	if err != nil {
		return err
	}
	pool.Close()
	fmt.Fprintln(stdout, "schema is up to date")
	return nil
}
