// Package pgbouncer starts a real PgBouncer (Debian's package) in
// transaction mode in front of one database, for tests and the chaos run.
package pgbouncer

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/loopback"
)

// Start runs PgBouncer in transaction mode in front of the database dsn
// names and returns a URL through it and a function that stops it. Queries
// on that URL get a server connection per transaction, as in production
// setups; session state (prepared statements, LISTEN, session locks) does
// not survive between transactions.
func Start(dsn string) (through string, stop func(), err error) {
	bin := findBouncer()
	if bin == "" {
		return "", nil, errors.New("pgbouncer not found; install it (Debian/Ubuntu: apt-get install pgbouncer) — make test does so when it can")
	}
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		return "", nil, fmt.Errorf("PgBouncer needs a postgres:// URL, got %s", "(DATABASE_URL)")
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "5432"
	}
	if host == "" || host == "localhost" {
		host = "127.0.0.1"
	}
	dbname := strings.TrimPrefix(u.Path, "/")
	pgUser := u.User.Username()
	if pgUser == "" {
		pgUser = "postgres"
	}

	dir, err := os.MkdirTemp("", "pgbouncer-")
	if err != nil {
		return "", nil, err
	}
	fail := func(err error) (string, func(), error) {
		os.RemoveAll(dir)
		return "", nil, err
	}
	listen, err := loopback.FreePort()
	if err != nil {
		return fail(err)
	}
	ini := fmt.Sprintf(`[databases]
%s = host=%s port=%s dbname=%s user=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 20
max_client_conn = 500
ignore_startup_parameters = extra_float_digits,application_name
logfile = %s
pidfile = %s
`, dbname, host, port, dbname, pgUser, listen, filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
	conf := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(conf, []byte(ini), 0o644); err != nil {
		return fail(err)
	}
	args := []string{conf}
	// PgBouncer refuses to run as root; -u makes it drop to another user.
	if os.Geteuid() == 0 {
		owner := "postgres"
		if _, err := user.Lookup(owner); err != nil {
			owner = "nobody"
		}
		if err := os.Chmod(dir, 0o777); err != nil {
			return fail(err)
		}
		args = []string{"-u", owner, conf}
	}
	cmd := exec.Command(bin, args...)
	out, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		return fail(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start pgbouncer: %w", err))
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop = func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		os.RemoveAll(dir)
	}

	through = fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", pgUser, listen, dbname)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, through+"&default_query_exec_mode=simple_protocol")
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return through, stop, nil
		}
		select {
		case <-exited:
			stdout, _ := os.ReadFile(out.Name())
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			return fail(fmt.Errorf("pgbouncer exited: %s\n%s", stdout, log))
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("pgbouncer did not accept connections on port %d: %v", listen, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func findBouncer() string {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer", "/usr/local/bin/pgbouncer"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}
