package migrations_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/poolgate/poolgate/internal/pgtest"
	"github.com/poolgate/poolgate/migrations"
)

func TestApplyIsIdempotentAndConcurrent(t *testing.T) {
	pool := pgtest.New(t) // already migrated from the template
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = migrations.Apply(ctx, pool) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: Apply on a current schema failed: %v", i, err)
		}
	}
	all, _ := migrations.All()
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(all) {
		t.Fatalf("schema_migrations has %d rows (%v), want %d", n, err, len(all))
	}
}

func TestApplyFromEmptyDatabase(t *testing.T) {
	pool := pgtest.New(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `DROP SCHEMA public CASCADE; CREATE SCHEMA public`); err != nil {
		t.Fatal(err)
	}
	all, _ := migrations.All()
	n, err := migrations.Apply(ctx, pool)
	if err != nil || n != len(all) {
		t.Fatalf("Apply on an empty database = %d, %v; want %d, nil", n, err, len(all))
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	pool := pgtest.New(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_from_the_future')`); err != nil {
		t.Fatal(err)
	}
	if _, err := migrations.Apply(ctx, pool); !errors.Is(err, migrations.ErrSchemaTooNew) {
		t.Fatalf("Apply on a newer schema = %v, want ErrSchemaTooNew", err)
	}
}
