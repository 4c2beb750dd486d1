// Package s3server starts a real S3-compatible server, versitygw on a
// posix directory, on a free loopback port, for the S3 result store's tests
// and benchmarks. scripts/tools.sh s3server builds the binary once (go
// install, into a cache directory); Start runs that script when it has to.
package s3server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/poolgate/poolgate/internal/loopback"
)

// Server is a running S3 endpoint with one empty bucket.
type Server struct {
	Endpoint  string // http://127.0.0.1:port
	Region    string
	AccessKey string
	SecretKey string
	Bucket    string

	cmd    *exec.Cmd
	dir    string
	exited chan struct{}
}

// Start builds (once) and starts versitygw, waits until it answers and
// creates Bucket. Stop ends it and removes its files.
func Start() (*Server, error) {
	bin, err := binary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "s3server-")
	if err != nil {
		return nil, err
	}
	root, sidecar := filepath.Join(dir, "root"), filepath.Join(dir, "meta")
	for _, d := range []string{root, sidecar} {
		if err := os.Mkdir(d, 0o755); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	port, err := loopback.FreePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{
		Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), Region: "us-east-1",
		AccessKey: "poolgate" + randHex(4), SecretKey: randHex(16), Bucket: "results",
		dir: dir, exited: make(chan struct{}),
	}
	// The sidecar keeps object metadata (content type, ETag) in files, so
	// the test directory's file system need not support extended attributes.
	s.cmd = exec.Command(bin, "--port", fmt.Sprintf("127.0.0.1:%d", port), "--region", s.Region, "--quiet",
		"posix", "--sidecar", sidecar, root)
	s.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	out, err := os.Create(filepath.Join(dir, "output"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer out.Close()
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start versitygw: %w", err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	if err := s.makeBucket(); err != nil {
		log, _ := os.ReadFile(out.Name())
		s.Stop()
		return nil, fmt.Errorf("versitygw on %s: %w\n%s", s.Endpoint, err, log)
	}
	return s, nil
}

// makeBucket creates the bucket, retrying while the server starts.
func (s *Server) makeBucket() error {
	client, err := minio.New(strings.TrimPrefix(s.Endpoint, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Region: s.Region,
	})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = client.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{Region: s.Region})
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("versitygw exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("versitygw did not create a bucket: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends the server and removes its directory.
func (s *Server) Stop() {
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	os.RemoveAll(s.dir)
}

// binary finds versitygw: $POOLGATE_S3SERVER, or what scripts/tools.sh
// s3server prints (it builds the binary the first time).
func binary() (string, error) {
	if p := os.Getenv("POOLGATE_S3SERVER"); p != "" {
		return p, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(root, "scripts", "tools.sh"), "s3server")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("scripts/tools.sh s3server: %v\n%s", err, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// repoRoot is the directory holding go.mod, above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "tools.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("s3server: cannot find scripts/tools.sh above the working directory; set POOLGATE_S3SERVER to a versitygw binary")
		}
		dir = parent
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
