// Package resultstest gives tests what checking stored results takes: a
// real MP4 that ffmpeg makes, ffprobe's reading of a file's duration, and
// an S3 store on a real S3-compatible server (versitygw) started once per
// test binary. Test-only: cmd/server never imports it.
package resultstest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/poolgate/poolgate/internal/results"
	"github.com/poolgate/poolgate/internal/s3server"
)

var (
	s3Once sync.Once
	s3Srv  *s3server.Server
	s3Err  error
)

// S3 returns a store on the test binary's one versitygw (started on first
// use; Stop ends it), under a prefix of the test's own. It fails the test,
// never skips it, when the server cannot be built or started.
func S3(t testing.TB) *results.S3 {
	t.Helper()
	return S3With(t, nil)
}

// S3With is S3 with tune's changes to the store's configuration.
func S3With(t testing.TB, tune func(*results.S3Config)) *results.S3 {
	t.Helper()
	s3Once.Do(func() { s3Srv, s3Err = s3server.Start() })
	if s3Err != nil {
		t.Fatalf("S3 test server: %v", s3Err)
	}
	cfg := results.S3Config{
		Endpoint: s3Srv.Endpoint, Bucket: s3Srv.Bucket, Region: s3Srv.Region,
		AccessKey: s3Srv.AccessKey, SecretKey: s3Srv.SecretKey,
		Prefix: strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()) + "/", PartSize: 5 << 20,
	}
	if tune != nil {
		tune(&cfg)
	}
	s, err := results.NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// Stop ends the S3 server if S3 started one; call it from TestMain.
func Stop() {
	if s3Srv != nil {
		s3Srv.Stop()
	}
}

var (
	mp4Once sync.Once
	mp4     []byte
	mp4Err  error
)

// MP4 is a 2-second H.264 clip (ffmpeg's test pattern) made once per test
// binary.
func MP4(t testing.TB) []byte {
	t.Helper()
	mp4Once.Do(func() {
		var ffmpeg string
		if ffmpeg, mp4Err = tool("ffmpeg"); mp4Err != nil {
			return
		}
		dir, err := os.MkdirTemp("", "resultstest-")
		if err != nil {
			mp4Err = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "clip.mp4")
		cmd := exec.Command(ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=2:size=320x240:rate=25",
			"-pix_fmt", "yuv420p", "-movflags", "+faststart", out)
		if b, err := cmd.CombinedOutput(); err != nil {
			mp4Err = errors.New("ffmpeg: " + err.Error() + ": " + string(b))
			return
		}
		mp4, mp4Err = os.ReadFile(out)
	})
	if mp4Err != nil {
		t.Fatal(mp4Err)
	}
	return mp4
}

// MP4Seconds is how long MP4's clip lasts.
const MP4Seconds = 2.0

// Duration is what ffprobe reads as data's duration in seconds; a file it
// cannot read as a video fails the test.
func Duration(t testing.TB, data []byte) float64 {
	t.Helper()
	ffmpeg, err := tool("ffmpeg")
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "read.mp4")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ffprobe := filepath.Join(filepath.Dir(ffmpeg), "ffprobe") // the same package installs both
	out, err := exec.Command(ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", f).Output()
	if err != nil {
		t.Fatalf("ffprobe cannot read the file as a video: %v", err)
	}
	d, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		t.Fatalf("ffprobe duration %q: %v", out, err)
	}
	return d
}

// tool finds a tool through scripts/tools.sh, which installs it if need be.
func tool(name string) (string, error) {
	script, err := toolsScript()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(script, name).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", errors.New("scripts/tools.sh " + name + ": " + string(ee.Stderr))
		}
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

func toolsScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "scripts", "tools.sh")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find scripts/tools.sh above the working directory")
		}
		dir = parent
	}
}

// Dir is a directory store in dir (its files land in dir/objects), for
// tests whose provider streams results into a store.
func Dir(t testing.TB, dir string) *results.Dir {
	t.Helper()
	d, err := results.NewDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
