package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

const sharedURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// pickPostgres chooses the server, as make test does: DATABASE_URL, else
// the shared server on 127.0.0.1:5432, else the throwaway cluster of
// scripts/pg.sh. Postgres is restarted during the run only if this run
// started that cluster: restarting a server others use would break them.
func (h *harness) pickPostgres(ctx context.Context) error {
	if h.cfg.pgMode == "auto" {
		if u := h.getenv("DATABASE_URL"); u != "" {
			h.server, h.pgWhy = u, "DATABASE_URL is set: not restarting a server this run did not start"
			return nil
		}
		if answers(ctx, sharedURL) {
			h.server, h.pgWhy = sharedURL, "shared server on 127.0.0.1:5432: Postgres restart skipped"
			return nil
		}
	}
	port := h.getenv("POOLGATE_PG_PORT")
	if port == "" {
		port = "54329"
	}
	url := fmt.Sprintf("postgres://postgres@127.0.0.1:%s/postgres?sslmode=disable", port)
	if answers(ctx, url) {
		h.server, h.pgWhy = url, "the throwaway cluster was already running, not started by this run: Postgres restart skipped"
		return nil
	}
	h.logf("starting the throwaway Postgres cluster (scripts/pg.sh)")
	if out, err := exec.CommandContext(ctx, "scripts/pg.sh", "url-run").CombinedOutput(); err != nil {
		return fmt.Errorf("scripts/pg.sh url-run: %v: %s", err, strings.TrimSpace(string(out)))
	}
	h.server, h.ownPG, h.pgWhy = url, true, "throwaway cluster started by this run"
	return nil
}

func answers(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return false
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx) == nil
}
