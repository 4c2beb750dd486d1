package results

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// staleTemp is how old a temp file must be before NewDir takes it for a
// crashed Put's leftover: no Put of a result takes this long.
const staleTemp = 24 * time.Hour

// Dir is a Store in a local directory. Every replica that serves results
// must see the same directory (one node, or a shared mount); otherwise a
// result written on one replica is missing on another.
//
// Layout: objects/<key> holds the bytes, types/<key> the content type,
// tmp/ the files being written. A Put writes both into tmp/, fsyncs them
// and renames them into place, so a reader sees the old object or the new
// one, never a partial file; a crash mid-Put leaves only a temp file,
// which the next NewDir removes.
type Dir struct {
	root string
}

// NewDir returns the store rooted at root, creating it if need be.
func NewDir(root string) (*Dir, error) {
	if root == "" {
		return nil, errors.New("results: no directory")
	}
	for _, sub := range []string{"objects", "types", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o750); err != nil {
			return nil, fmt.Errorf("results directory: %w", err)
		}
	}
	// Temp files left by a crash are never renamed into place; clear them.
	// (Another replica sharing the directory may be writing one now, so
	// only old ones go.)
	d := &Dir{root: root}
	d.clearStaleTemp()
	return d, nil
}

func (d *Dir) clearStaleTemp() {
	entries, _ := os.ReadDir(filepath.Join(d.root, "tmp"))
	for _, e := range entries {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTemp {
			os.Remove(filepath.Join(d.root, "tmp", e.Name()))
		}
	}
}

func (d *Dir) objectPath(key string) string { return filepath.Join(d.root, "objects", key) }
func (d *Dir) typePath(key string) string   { return filepath.Join(d.root, "types", key) }

// Put streams r into a temp file, fsyncs it and renames it over key.
func (d *Dir) Put(ctx context.Context, key string, r io.Reader, contentType string) (int64, error) {
	if err := CheckKey(key); err != nil {
		return 0, err
	}
	tmpDir := filepath.Join(d.root, "tmp")
	data, err := os.CreateTemp(tmpDir, key+".*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(data.Name()) // a no-op once renamed
	n, err := io.Copy(data, ctxReader{ctx, r})
	if err == nil {
		err = data.Sync()
	}
	if cerr := data.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("results: write %s: %w", key, err)
	}
	typ, err := writeTemp(tmpDir, key+".type.*", contentType)
	if err != nil {
		return n, err
	}
	defer os.Remove(typ)
	// The type goes first: a reader that meets the new bytes then finds
	// their type (a key's type rarely changes between attempts anyway).
	if err := os.Rename(typ, d.typePath(key)); err != nil {
		return n, err
	}
	if err := os.Rename(data.Name(), d.objectPath(key)); err != nil {
		return n, err
	}
	return n, syncDirs(filepath.Join(d.root, "types"), filepath.Join(d.root, "objects"))
}

// Open opens key's file; its size and time are the file's.
func (d *Dir) Open(ctx context.Context, key string) (*Object, error) {
	if err := CheckKey(key); err != nil {
		return nil, ErrNotFound
	}
	f, err := os.Open(d.objectPath(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	typ := DefaultContentType
	if b, err := os.ReadFile(d.typePath(key)); err == nil && len(b) > 0 {
		typ = string(b)
	}
	etag := `"` + strconv.FormatInt(info.Size(), 36) + "-" + strconv.FormatInt(info.ModTime().UnixNano(), 36) + `"`
	return &Object{ReadSeekCloser: f, Size: info.Size(), ContentType: typ, ModTime: info.ModTime(), ETag: etag}, nil
}

// Delete removes keys' files; missing ones are skipped.
func (d *Dir) Delete(ctx context.Context, keys ...string) error {
	if err := checkKeys(keys); err != nil {
		return err
	}
	var problems []error
	for _, k := range keys {
		// The bytes first: an object without a type file is still served
		// (as octet-stream); a type file alone is harmless.
		for _, p := range []string{d.objectPath(k), d.typePath(k)} {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				problems = append(problems, err)
			}
		}
	}
	return errors.Join(problems...)
}

func writeTemp(dir, pattern, content string) (string, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	_, err = io.WriteString(f, content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// syncDirs makes the renames into dirs durable.
func syncDirs(dirs ...string) error {
	for _, dir := range dirs {
		f, err := os.Open(dir)
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil && !errors.Is(err, syscall.EINVAL) { // some file systems cannot sync a directory
			return err
		}
	}
	return nil
}

// ctxReader stops a long copy when ctx ends.
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
