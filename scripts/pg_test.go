// Package scripts holds no Go code, only tests of the shell scripts next to
// it that make run and make test depend on.
package scripts

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestRunClusterKeepsFsyncOn: the cluster make run starts holds someone's
// accounts and queue, and ran with fsync=off, so a power cut could corrupt
// it. It must run with fsync on (clusters only tests use may keep it off).
func TestRunClusterKeepsFsyncOn(t *testing.T) {
	if _, err := exec.LookPath("initdb"); err != nil {
		if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(m) == 0 {
			t.Skip("no initdb: install PostgreSQL (apt-get install postgresql) to test scripts/pg.sh")
		}
	}
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	env := append(os.Environ(), "POOLGATE_DATA_DIR="+dir, "POOLGATE_PG_PORT="+port, "DATABASE_URL=")
	pgsh := func(arg string) string {
		cmd := exec.Command("./pg.sh", arg)
		cmd.Env = env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("pg.sh %s: %v\n%s%s", arg, err, stderr.String(), serverLog(stderr.String()))
		}
		return strings.TrimSpace(string(out))
	}
	t.Cleanup(func() {
		pgsh("stop")
		if target, err := filepath.EvalSymlinks(filepath.Join(dir, "pg")); err == nil && !strings.HasPrefix(target, dir) {
			os.RemoveAll(target) // the fallback under /tmp used when running as root
		}
	})
	url := pgsh("url-run")
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	defer conn.Close(context.Background())
	var fsync string
	if err := conn.QueryRow(context.Background(), "SHOW fsync").Scan(&fsync); err != nil {
		t.Fatal(err)
	}
	if fsync != "on" {
		t.Errorf("make run's cluster runs with fsync=%s", fsync)
	}
}

// serverLog is the server log pg.sh's message points at ("see
// …/server.log"), for a failure message: the test's cleanup removes the
// cluster, and the log with it, before anyone can read it.
func serverLog(msg string) string {
	_, rest, ok := strings.Cut(msg, "see ")
	if !ok {
		return ""
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return ""
	}
	raw, err := os.ReadFile(strings.TrimRight(fields[0], ";,"))
	if err != nil {
		return ""
	}
	return "server log:\n" + string(raw)
}

func TestServerLogFollowsPgShMessages(t *testing.T) {
	log := filepath.Join(t.TempDir(), "server.log")
	if err := os.WriteFile(log, []byte("FATAL:  could not bind IPv4 address\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{
		"pg.sh: PostgreSQL did not start on 127.0.0.1:1; see " + log + " (is the port taken? set POOLGATE_PG_PORT)",
		"pg.sh: PostgreSQL did not restart on 127.0.0.1:1; see " + log + "\n",
	} {
		if got := serverLog(msg); !strings.Contains(got, "could not bind") {
			t.Errorf("serverLog(%q) = %q, want the log's text", msg, got)
		}
	}
	if got := serverLog("pg.sh: initdb failed"); got != "" {
		t.Errorf("a message naming no log gave %q", got)
	}
}
