// Package migrations holds poolgate's schema as numbered SQL files embedded
// in the binary, and applies them. Several replicas may start at once, so
// Apply runs under a Postgres advisory lock; a server never runs on a schema
// newer than the files it carries.
package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed *.sql
var files embed.FS

// lockKey is the advisory lock id every replica takes while migrating.
const lockKey = 0x706f6f6c67617465 // "poolgate"

// ErrSchemaTooNew means the database was migrated by a newer poolgate.
var ErrSchemaTooNew = errors.New("database schema is newer than this binary knows; upgrade poolgate")

// Migration is one numbered SQL file.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// All returns the embedded migrations in order.
func All() ([]Migration, error) {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %q is not named NNNN_name.sql", e.Name())
		}
		body, err := files.ReadFile(e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: strings.TrimSuffix(e.Name(), ".sql"), SQL: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("two migrations share version %d", ms[i].Version)
		}
	}
	return ms, nil
}

// Apply brings the schema up to date and returns how many migrations it
// applied. It fails with ErrSchemaTooNew on a schema it does not know.
func Apply(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	ms, err := All()
	if err != nil {
		return 0, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(lockKey)); err != nil {
		return 0, fmt.Errorf("take migration lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(lockKey))

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return 0, err
	}
	applied, err := appliedVersions(ctx, conn.Conn())
	if err != nil {
		return 0, err
	}
	known := make(map[int]string, len(ms))
	for _, m := range ms {
		known[m.Version] = m.Name
	}
	for v, name := range applied {
		if want, ok := known[v]; !ok {
			return 0, fmt.Errorf("%w (it has migration %d %q)", ErrSchemaTooNew, v, name)
		} else if want != name {
			return 0, fmt.Errorf("migration %d is %q in the database but %q in this binary", v, name, want)
		}
	}
	n := 0
	for _, m := range ms {
		if _, done := applied[m.Version]; done {
			continue
		}
		if err := pgx.BeginFunc(ctx, conn.Conn(), func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
			return err
		}); err != nil {
			return n, fmt.Errorf("apply migration %s: %w", m.Name, err)
		}
		n++
	}
	return n, nil
}

func appliedVersions(ctx context.Context, conn *pgx.Conn) (map[int]string, error) {
	rows, err := conn.Query(ctx, `SELECT version, name FROM schema_migrations`)
	if err != nil {
		return nil, err
	}
	applied := map[int]string{}
	var v int
	var name string
	_, err = pgx.ForEachRow(rows, []any{&v, &name}, func() error {
		applied[v] = name
		return nil
	})
	return applied, err
}
