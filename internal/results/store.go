// Package results keeps the files jobs produce (the LTX-2 API's MP4s) where
// every replica can read them: a local directory (one node, or a directory
// all replicas share) or an S3-compatible bucket. Writers stream into the
// store and readers stream out of it, with ranged reads, so a result is
// never held whole in memory.
package results

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Store keeps job results where every replica can read them.
type Store interface {
	// Put streams r to key (never buffering it whole) and returns the bytes written.
	Put(ctx context.Context, key string, r io.Reader, contentType string) (int64, error)
	// Open returns the object for reading with Range support (io.ReadSeekCloser), its size, content type and modification time.
	Open(ctx context.Context, key string) (*Object, error)
	// Delete removes keys; missing keys are not an error.
	Delete(ctx context.Context, keys ...string) error
}

var (
	_ Store = (*Dir)(nil)
	_ Store = (*S3)(nil)
)

// Object is a stored result opened for reading. Seek and Read serve
// ranges; Close releases it.
type Object struct {
	io.ReadSeekCloser
	Size        int64
	ContentType string
	ModTime     time.Time
	// ETag identifies this version of the object (quoted, as HTTP sends
	// it); a retried attempt that overwrites the key changes it.
	ETag string
}

// URLPath is the API path a stored result is served at (GET
// /v1/jobs/{id}/result); a provider that stores a job's result under the
// job id puts it in the result's url.
func URLPath(jobID string) string { return "/v1/jobs/" + jobID + "/result" }

// ErrNotFound is Open's answer for a key that holds nothing.
var ErrNotFound = errors.New("results: no such object")

// DefaultContentType is what an object stored without one is served as.
const DefaultContentType = "application/octet-stream"

// maxKeyLen bounds a key: job ids are far shorter, and every file system
// and S3 accept this much.
const maxKeyLen = 200

// CheckKey refuses keys that could escape the store's directory or name
// something other than one object: only letters, digits, '_', '-' and '.',
// not starting with '.', at most 200 bytes. Job ids pass.
func CheckKey(key string) error {
	if key == "" || len(key) > maxKeyLen || key[0] == '.' {
		return fmt.Errorf("results: invalid key %q", key)
	}
	for _, c := range []byte(key) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.':
		default:
			return fmt.Errorf("results: invalid key %q", key)
		}
	}
	return nil
}

func checkKeys(keys []string) error {
	for _, k := range keys {
		if err := CheckKey(k); err != nil {
			return err
		}
	}
	return nil
}
