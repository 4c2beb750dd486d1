package ltxapi

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// DirSink is the smallest Sink: one file per key in a local directory,
// written to a temporary file and renamed into place, so a reader never
// sees half a video and a retried attempt replaces the file whole. It is
// single-node; poolgate's result store (internal/results) is the Sink
// serve wires when it is there.
type DirSink string

// Put implements Sink.
func (d DirSink) Put(ctx context.Context, key string, r io.Reader, _ string) (int64, error) {
	if key == "" || strings.ContainsAny(key, `/\`) || strings.HasPrefix(key, ".") {
		return 0, errors.New("invalid result key")
	}
	if err := os.MkdirAll(string(d), 0o750); err != nil {
		return 0, err
	}
	f, err := os.CreateTemp(string(d), ".put-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name()) // after the rename, a no-op
	n, err := io.Copy(f, ctxReader{ctx, r})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, err
	}
	return n, os.Rename(f.Name(), filepath.Join(string(d), key))
}

// ctxReader stops a copy once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
