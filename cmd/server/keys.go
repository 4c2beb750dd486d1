package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/tenant"
)

// keys is "poolgate keys create": the operator's way to get the first key.
// The secret is printed alone on stdout's first line so scripts can take it
// with head -1; it is never shown again.
func keys(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return fmt.Errorf("%w: keys create --tenant NAME --name NAME [--scopes a,b] [--mode live|test]", errUsage)
	}
	fs := flag.NewFlagSet("keys create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tenantName := fs.String("tenant", "", "tenant name (created if it does not exist)")
	name := fs.String("name", "", "key name, to recognise it later")
	scopes := fs.String("scopes", auth.ScopeAll, "comma-separated scopes: "+strings.Join(auth.AllScopes, ","))
	mode := fs.String("mode", string(tenant.Live), "live or test")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *tenantName == "" || *name == "" || fs.NArg() > 0 {
		return fmt.Errorf("%w: keys create needs --tenant and --name", errUsage)
	}
	url, err := databaseURL(getenv)
	if err != nil {
		return err
	}
	pool, err := openDB(ctx, url, listenURL(getenv, url), newLogger(stderr, slog.LevelWarn))
	if err != nil {
		return err
	}
	defer pool.Close()

	key, secret, err := auth.NewStore(pool, time.Now).Bootstrap(ctx, *tenantName, auth.KeyParams{
		Name: *name, Mode: tenant.Mode(*mode), Scopes: splitList(*scopes),
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, secret)
	fmt.Fprintf(stdout, "id=%s tenant=%s mode=%s scopes=%s\n", key.ID, *tenantName, key.Mode, strings.Join(key.Scopes, ","))
	fmt.Fprintln(stderr, "store this key now: poolgate keeps only its hash and cannot show it again")
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
