package pgtest

import (
	"testing"

	"github.com/poolgate/poolgate/internal/pgbouncer"
)

// Bouncer starts a real PgBouncer in transaction mode in front of the
// database dsn names and returns a URL through it (see package pgbouncer);
// it stops when t ends. A test that needs it fails, never skips, when
// PgBouncer is not installed.
func Bouncer(t testing.TB, dsn string) string {
	t.Helper()
	through, stop, err := pgbouncer.Start(dsn)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(stop)
	return through
}
