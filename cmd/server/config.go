package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/poolgate/poolgate/internal/secret"
)

// config is serve's configuration, read once from the environment. Only
// this package sees it whole; components get the fields they need.
type config struct {
	DatabaseURL     string
	Addr            string
	SecretKey       []byte
	LogLevel        slog.Level
	ShutdownTimeout time.Duration
}

// env reads one variable with its default.
type env func(string) string

func (e env) get(name, def string) string {
	if v := strings.TrimSpace(e(name)); v != "" {
		return v
	}
	return def
}

func (e env) duration(name, def string, errs *[]error) time.Duration {
	v := e.get(name, def)
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		*errs = append(*errs, fmt.Errorf("%s=%q is not a duration like 30s or 5m", name, v))
	}
	return d
}

func databaseURL(getenv func(string) string) (string, error) {
	u := env(getenv).get("DATABASE_URL", "")
	if u == "" {
		return "", errors.New("DATABASE_URL is not set (make run starts a local database and sets it for you)")
	}
	return u, nil
}

func loadConfig(getenv func(string) string) (config, error) {
	e := env(getenv)
	var problems []error
	c := config{
		Addr:            e.get("POOLGATE_ADDR", "127.0.0.1:8080"),
		ShutdownTimeout: e.duration("POOLGATE_SHUTDOWN_TIMEOUT", "30s", &problems),
	}
	var err error
	if c.DatabaseURL, err = databaseURL(getenv); err != nil {
		problems = append(problems, err)
	}
	if err := c.LogLevel.UnmarshalText([]byte(e.get("POOLGATE_LOG_LEVEL", "info"))); err != nil {
		problems = append(problems, fmt.Errorf("POOLGATE_LOG_LEVEL must be debug, info, warn or error"))
	}
	switch raw := e.get("POOLGATE_SECRET_KEY", ""); {
	case raw == "":
		problems = append(problems, errors.New("POOLGATE_SECRET_KEY is not set: it encrypts account cookies; create one with `openssl rand -base64 32` and keep it (make run makes a local one)"))
	default:
		if c.SecretKey, err = secret.ParseKey(raw); err != nil {
			problems = append(problems, fmt.Errorf("POOLGATE_SECRET_KEY: %w", err))
		}
	}
	return c, errors.Join(problems...)
}

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}
