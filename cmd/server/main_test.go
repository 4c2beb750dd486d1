package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/cookies"
	"github.com/poolgate/poolgate/internal/pgtest"
	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
	"github.com/poolgate/poolgate/internal/provider/sim"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestKeysCreatePrintsSecretAloneFirst(t *testing.T) {
	t.Parallel()
	url := pgtest.NewURL(t)
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"keys", "create", "--tenant", "acme", "--name", "admin", "--scopes", "accounts:read,jobs:write"},
		envOf(map[string]string{"DATABASE_URL": url}), &out, &errOut)
	if err != nil {
		t.Fatalf("keys create: %v\n%s", err, errOut.String())
	}
	first, rest, _ := strings.Cut(out.String(), "\n")
	if _, ok := auth.ParseSecret(first); !ok {
		t.Fatalf("first line %q is not a poolgate key", first)
	}
	if strings.Contains(rest, first) || strings.Contains(errOut.String(), first) {
		t.Error("the secret is printed more than once")
	}
	if !strings.Contains(rest, "scopes=accounts:read,jobs:write") {
		t.Errorf("summary line %q lacks the scopes", rest)
	}
	// A second key for the same tenant reuses it.
	out.Reset()
	if err := run(context.Background(), []string{"keys", "create", "--tenant", "acme", "--name", "second"},
		envOf(map[string]string{"DATABASE_URL": url}), &out, &errOut); err != nil {
		t.Fatal(err)
	}
}

func TestCommandErrors(t *testing.T) {
	t.Parallel()
	url := pgtest.NewURL(t)
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		mention string
	}{
		{"unknown command", []string{"frobnicate"}, nil, "unknown command"},
		{"keys without flags", []string{"keys", "create"}, map[string]string{"DATABASE_URL": url}, "--tenant"},
		{"keys with unknown scope", []string{"keys", "create", "--tenant", "a", "--name", "b", "--scopes", "god"}, map[string]string{"DATABASE_URL": url}, "unknown scope"},
		{"serve without secret key", []string{"serve"}, map[string]string{"DATABASE_URL": url}, "POOLGATE_SECRET_KEY is not set"},
		{"serve with short secret key", []string{"serve"}, map[string]string{"DATABASE_URL": url, "POOLGATE_SECRET_KEY": "c2hvcnQ="}, "32 bytes"},
		{"serve without database", []string{"serve"}, map[string]string{"POOLGATE_SECRET_KEY": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}, "DATABASE_URL is not set"},
		{"bad log level", []string{"serve"}, map[string]string{"DATABASE_URL": url, "POOLGATE_SECRET_KEY": "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=", "POOLGATE_LOG_LEVEL": "loud"}, "POOLGATE_LOG_LEVEL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), c.args, envOf(c.env), &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), c.mention) {
				t.Fatalf("err = %v; want one mentioning %q", err, c.mention)
			}
		})
	}
}

func TestMigrateRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	url := pgtest.NewURL(t)
	env := envOf(map[string]string{"DATABASE_URL": url})
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"migrate"}, env, &out, &errOut); err != nil {
		t.Fatalf("migrate on an up-to-date schema: %v", err)
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `INSERT INTO schema_migrations (version, name) VALUES (9999, 'from the future')`); err != nil {
		t.Fatal(err)
	}
	err = run(context.Background(), []string{"migrate"}, env, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("migrate on a newer schema: err = %v, want a refusal", err)
	}
}

// TestBinaryDoesNotLinkTesting: cmd/server used to link the testing package
// through internal/bench → internal/pgtest. Test tooling stays out of the
// production binary.
func TestBinaryDoesNotLinkTesting(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "testing" || strings.HasSuffix(dep, "/internal/pgtest") {
			t.Errorf("cmd/server links %s", dep)
		}
	}
}

// TestSimCookie: a newcomer had no cookie to try make run with; the
// simulator wants JWT-shaped tokens and nothing printed one.
func TestSimCookie(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"sim", "cookie", "--email", "demo@example.com"}, envOf(nil), &out, &errOut); err != nil {
		t.Fatalf("sim cookie: %v\n%s", err, errOut.String())
	}
	line := strings.TrimSuffix(out.String(), "\n")
	if strings.Contains(line, "\n") {
		t.Fatalf("want the cookie alone on one line, got %q", out.String())
	}
	creds, err := cookies.ParseLTX(line)
	if err != nil || creds.Email != "demo@example.com" || !creds.TokenExpiry.After(time.Now()) {
		t.Fatalf("poolgate would not register it: %+v, %v", creds, err)
	}
	// The simulator accepts it: a refresh with it succeeds.
	upstream := httptest.NewServer(sim.New(sim.DefaultConfig(), nil))
	defer upstream.Close()
	if _, err := ltxstudio.New(upstream.URL, nil).Refresh(context.Background(), provider.Account{Email: creds.Email, Cookie: line}); err != nil {
		t.Errorf("the simulator refuses the cookie: %v", err)
	}
	for _, args := range [][]string{{"sim", "cookie"}, {"sim", "cookie", "--email", "not an address"}} {
		if err := run(context.Background(), args, envOf(nil), io.Discard, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("%v: err %v, want a usage error", args, err)
		}
	}
}
