// Command poolgate is the whole service in one binary:
//
//	poolgate [serve]      run the HTTP API (the default)
//	poolgate migrate      apply database migrations and exit
//	poolgate keys create  create a tenant if needed and issue an API key
//	poolgate sim          run the upstream simulator
//	poolgate sim cookie   print a cookie string the simulator accepts
//	poolgate bench        measure throughput and latency, check invariants
//
// Configuration comes from the environment; see the README's table.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "poolgate:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage error")

const usage = `usage: poolgate <command> [flags]

commands:
  serve        run the HTTP API (default)
  migrate      apply database migrations and exit
  keys create  --tenant NAME --name NAME [--scopes a,b] [--mode live|test]
               create the tenant if needed and print a new API key
  sim          run the upstream simulator (flags: poolgate sim -h)
  sim cookie   --email ADDRESS [--token-lifetime 1h] [--refresh-token-lifetime 720h]
               print a cookie string the simulator accepts, to register a demo account
  bench        benchmark against DATABASE_URL's server (flags: poolgate bench -h)

configuration is read from the environment; see README.md
`

// run is the program: main only supplies the process's environment, so
// tests can run every command in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, getenv, stderr)
	case "migrate":
		return migrate(ctx, getenv, stdout, stderr)
	case "keys":
		return keys(ctx, args, getenv, stdout, stderr)
	case "sim":
		if len(args) > 0 && args[0] == "cookie" {
			return simCookie(args[1:], stdout, stderr)
		}
		return simulate(ctx, args, getenv, stderr)
	case "bench":
		return benchmark(ctx, args, getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
}
