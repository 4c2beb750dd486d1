// Package dbx holds the few helpers every store shares: the DBTX interface
// that both a pool and a transaction satisfy, and error classification at
// the storage boundary.
package dbx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/poolgate/poolgate/internal/errs"
)

// DBTX is what store helpers run queries on: a *pgxpool.Pool or a pgx.Tx.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

var (
	_ DBTX = (*pgxpool.Pool)(nil)
	_ DBTX = (pgx.Tx)(nil)
)

// Beginner starts transactions: a *pgxpool.Pool, or a pgx.Tx (whose Begin
// is a savepoint).
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// IsUniqueViolation reports whether err is a unique_violation, optionally of
// the named constraint ("" matches any).
func IsUniqueViolation(err error, constraint string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && (constraint == "" || pe.ConstraintName == constraint)
}

// InTx runs fn in a transaction on pool, committing if fn returns nil.
func InTx(ctx context.Context, pool *pgxpool.Pool, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, pool, fn)
}

// Classify turns an error from the database into a domain error: errors
// that are already domain errors pass through; a lost connection, a
// timeout, an overloaded or restarting server becomes a 503 the caller may
// retry; anything else (a query the database refused, a bug) is internal,
// since retrying it would fail the same way.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	var e *errs.Error
	if errors.As(err, &e) {
		return e
	}
	if Transient(err) {
		return errs.Unavailable(err)
	}
	return errs.Internal(err)
}

// Transient reports whether err says the database could not be reached or
// could not serve the query just now, rather than that the query is wrong.
func Transient(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "08", // connection exception
			"40", // transaction rollback (serialization failure, deadlock)
			"53", // insufficient resources
			"57", // operator intervention (shutdown, statement timeout)
			"58": // system error
			return true
		}
		return false
	}
	var (
		ce *pgconn.ConnectError
		ne net.Error
	)
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// WithDatabase returns dsn (a URL or a key=value string) naming database db
// instead of its own. It lives here, not in pgtest, so that the benchmark
// and chaos tools can use it without linking the testing package into the
// binary.
func WithDatabase(dsn, db string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("DATABASE_URL is not a valid URL")
		}
		u.Path = "/" + db
		return u.String(), nil
	}
	return dsn + " dbname=" + db, nil
}
