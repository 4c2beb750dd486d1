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
			t.Fatalf("pg.sh %s: %v\n%s", arg, err, stderr.String())
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
