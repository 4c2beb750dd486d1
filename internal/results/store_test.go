package results_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/poolgate/poolgate/internal/results"
	"github.com/poolgate/poolgate/internal/results/resultstest"
)

// stores runs f against a fresh directory store and the S3 store on a
// real versitygw.
func stores(t *testing.T, f func(t *testing.T, s results.Store)) {
	t.Run("dir", func(t *testing.T) {
		d, err := results.NewDir(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		f(t, d)
	})
	t.Run("s3", func(t *testing.T) {
		f(t, resultstest.S3(t))
	})
}

func TestMain(m *testing.M) {
	code := m.Run()
	resultstest.Stop()
	os.Exit(code)
}

func readAll(t *testing.T, s results.Store, key string) (*results.Object, []byte) {
	t.Helper()
	obj, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatalf("Open(%s): %v", key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return obj, b
}

func TestStoredMP4IsIdenticalAndPlays(t *testing.T) {
	video := resultstest.MP4(t)
	stores(t, func(t *testing.T, s results.Store) {
		ctx := context.Background()
		// A plain reader: the store cannot learn the length in advance.
		n, err := s.Put(ctx, "job_mp4", io.MultiReader(bytes.NewReader(video)), "video/mp4")
		if err != nil || n != int64(len(video)) {
			t.Fatalf("Put = %d, %v; want %d bytes", n, err, len(video))
		}
		obj, got := readAll(t, s, "job_mp4")
		if !bytes.Equal(got, video) {
			t.Fatalf("stored MP4 differs from what was sent (%d bytes read, %d sent)", len(got), len(video))
		}
		if obj.Size != int64(len(video)) || obj.ContentType != "video/mp4" || obj.ModTime.IsZero() || obj.ETag == "" {
			t.Errorf("object = size %d, type %q, time %v, etag %q; want %d bytes of video/mp4 with a time and an ETag",
				obj.Size, obj.ContentType, obj.ModTime, obj.ETag, len(video))
		}
		if d := resultstest.Duration(t, got); d < resultstest.MP4Seconds-0.1 || d > resultstest.MP4Seconds+0.1 {
			t.Errorf("ffprobe reads a duration of %.3fs; the clip lasts 2s", d)
		}
	})
}

func TestRangedReads(t *testing.T) {
	video := resultstest.MP4(t)
	stores(t, func(t *testing.T, s results.Store) {
		if _, err := s.Put(context.Background(), "job_range", bytes.NewReader(video), "video/mp4"); err != nil {
			t.Fatal(err)
		}
		obj, err := s.Open(context.Background(), "job_range")
		if err != nil {
			t.Fatal(err)
		}
		defer obj.Close()
		for _, r := range []struct{ off, n int64 }{{1000, 500}, {0, 16}, {int64(len(video)) - 100, 100}, {10, 3}} {
			if _, err := obj.Seek(r.off, io.SeekStart); err != nil {
				t.Fatalf("Seek(%d): %v", r.off, err)
			}
			got := make([]byte, r.n)
			if _, err := io.ReadFull(obj, got); err != nil {
				t.Fatalf("read %d bytes at %d: %v", r.n, r.off, err)
			}
			if !bytes.Equal(got, video[r.off:r.off+r.n]) {
				t.Errorf("bytes %d-%d differ from the file's", r.off, r.off+r.n-1)
			}
		}
		if end, err := obj.Seek(0, io.SeekEnd); err != nil || end != int64(len(video)) {
			t.Errorf("Seek(0, end) = %d, %v; want %d", end, err, len(video))
		}
	})
}

// TestLargeStreamedPut sends 12 MiB of unknown length: more than two S3
// parts, so the multipart upload and its reassembly are exercised.
func TestLargeStreamedPut(t *testing.T) {
	stores(t, func(t *testing.T, s results.Store) {
		const size = 12<<20 + 12345
		sum := sha256.New()
		src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{7}), size), sum)
		n, err := s.Put(context.Background(), "job_big", src, "video/mp4")
		if err != nil || n != size {
			t.Fatalf("Put = %d, %v; want %d", n, err, size)
		}
		obj, err := s.Open(context.Background(), "job_big")
		if err != nil {
			t.Fatal(err)
		}
		defer obj.Close()
		got := sha256.New()
		if m, err := io.Copy(got, obj); err != nil || m != size {
			t.Fatalf("read back %d bytes, %v; want %d", m, err, size)
		}
		if !bytes.Equal(got.Sum(nil), sum.Sum(nil)) {
			t.Fatal("the object read back differs from what was streamed in")
		}
	})
}

// TestS3UploadsShareBoundedBuffers: more concurrent Puts than part
// buffers, of sizes that end inside a part and exactly on a part boundary,
// all complete intact.
func TestS3UploadsShareBoundedBuffers(t *testing.T) {
	s := resultstest.S3With(t, func(c *results.S3Config) { c.UploadBuffers = 2 })
	sizes := []int64{5 << 20, 10 << 20, 11<<20 + 1, 1, 0, 7 << 20}
	sums := make([][32]byte, len(sizes))
	var wg sync.WaitGroup
	errs := make([]error, len(sizes))
	for i, size := range sizes {
		wg.Go(func() {
			h := sha256.New()
			src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{byte(i)}), size), h)
			n, err := s.Put(context.Background(), "job_c"+strconv.Itoa(i), src, "video/mp4")
			if err == nil && n != size {
				err = fmt.Errorf("Put wrote %d bytes of %d", n, size)
			}
			errs[i] = err
			copy(sums[i][:], h.Sum(nil))
		})
	}
	wg.Wait()
	for i, size := range sizes {
		if errs[i] != nil {
			t.Errorf("Put of %d bytes: %v", size, errs[i])
			continue
		}
		obj, b := readAll(t, s, "job_c"+strconv.Itoa(i))
		if obj.Size != size || sha256.Sum256(b) != sums[i] {
			t.Errorf("object of %d bytes reads back %d bytes that differ", size, len(b))
		}
	}
}

func TestOverwriteAndDelete(t *testing.T) {
	stores(t, func(t *testing.T, s results.Store) {
		ctx := context.Background()
		if _, err := s.Put(ctx, "job_x", strings.NewReader("first attempt"), "video/mp4"); err != nil {
			t.Fatal(err)
		}
		first, _ := readAll(t, s, "job_x")
		if _, err := s.Put(ctx, "job_x", strings.NewReader("second, retried attempt"), "video/mp4"); err != nil {
			t.Fatal(err)
		}
		second, b := readAll(t, s, "job_x")
		if string(b) != "second, retried attempt" {
			t.Fatalf("after a retried Put the key reads %q", b)
		}
		if first.ETag == second.ETag {
			t.Errorf("overwritten object kept its ETag %s", first.ETag)
		}
		if err := s.Delete(ctx, "job_x", "job_never_stored"); err != nil {
			t.Fatalf("Delete with a missing key: %v", err)
		}
		if _, err := s.Open(ctx, "job_x"); !errors.Is(err, results.ErrNotFound) {
			t.Fatalf("Open after Delete = %v; want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "job_x"); err != nil {
			t.Fatalf("deleting twice: %v", err)
		}
	})
}

func TestKeysCannotEscape(t *testing.T) {
	stores(t, func(t *testing.T, s results.Store) {
		ctx := context.Background()
		for _, key := range []string{"", "../outside", "a/b", ".hidden", "..", "x\x00y", "a\\b", strings.Repeat("k", 201)} {
			if _, err := s.Put(ctx, key, strings.NewReader("x"), "video/mp4"); err == nil {
				t.Errorf("Put(%q) was accepted", key)
			}
			if _, err := s.Open(ctx, key); !errors.Is(err, results.ErrNotFound) {
				t.Errorf("Open(%q) = %v; want ErrNotFound", key, err)
			}
			if err := s.Delete(ctx, key); err == nil {
				t.Errorf("Delete(%q) was accepted", key)
			}
		}
	})
}

// failingReader delivers some bytes, then fails, as an upstream that drops
// the connection mid-video does.
type failingReader struct{ left int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.left == 0 {
		return 0, errors.New("connection reset")
	}
	n := min(len(p), f.left)
	for i := range p[:n] {
		p[i] = 'z'
	}
	f.left -= n
	return n, nil
}

// TestFailedPutLeavesTheOldObject: a stream that breaks off never becomes
// the object, and the previous attempt's object stays readable whole.
func TestFailedPutLeavesTheOldObject(t *testing.T) {
	stores(t, func(t *testing.T, s results.Store) {
		ctx := context.Background()
		if _, err := s.Put(ctx, "job_y", strings.NewReader("complete video"), "video/mp4"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Put(ctx, "job_y", &failingReader{left: 6 << 20}, "video/mp4"); err == nil {
			t.Fatal("a Put whose reader failed reported success")
		}
		if _, b := readAll(t, s, "job_y"); string(b) != "complete video" {
			t.Fatalf("after a failed Put the key reads %d bytes, not the earlier object", len(b))
		}
		if _, err := s.Put(ctx, "job_z", &failingReader{left: 100}, "video/mp4"); err == nil {
			t.Fatal("a Put whose reader failed reported success")
		}
		if _, err := s.Open(ctx, "job_z"); !errors.Is(err, results.ErrNotFound) {
			t.Fatalf("a failed first Put left an object: Open = %v", err)
		}
		if s3, ok := s.(*results.S3); ok {
			if n, err := s3.IncompleteUploads(ctx); err != nil || n != 0 {
				t.Errorf("after a failed multipart Put the bucket holds %d unfinished uploads (%v); want them aborted", n, err)
			}
		}
	})
}

// TestDirLeavesNoTempFiles: after Puts, good and failed, the directory holds
// the objects and nothing else.
func TestDirLeavesNoTempFiles(t *testing.T) {
	root := t.TempDir()
	d, err := results.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d.Put(ctx, "job_a", strings.NewReader("a"), "video/mp4")
	d.Put(ctx, "job_b", &failingReader{left: 10}, "video/mp4")
	tmp, _ := os.ReadDir(filepath.Join(root, "tmp"))
	if len(tmp) != 0 {
		t.Errorf("temp files left behind: %v", tmp)
	}
	objs, _ := os.ReadDir(filepath.Join(root, "objects"))
	if len(objs) != 1 || objs[0].Name() != "job_a" {
		t.Errorf("objects directory holds %v; want job_a only", objs)
	}
}

// TestReadersNeverSeePartialObjects: while a key is overwritten again and
// again, every read gets one whole version, never a mix or a prefix. An S3
// read that spans an overwrite may instead fail whole: minio-go reads the
// rest of an object with If-Match on the ETag it started with.
func TestReadersNeverSeePartialObjects(t *testing.T) {
	stores(t, func(t *testing.T, s results.Store) {
		ctx := context.Background()
		const size = 6 << 20 // above the S3 test part size: multipart
		versions := [][]byte{bytes.Repeat([]byte("a"), size), bytes.Repeat([]byte("b"), size)}
		if _, err := s.Put(ctx, "job_rw", bytes.NewReader(versions[0]), "video/mp4"); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			defer close(done)
			for i := range 6 {
				if _, err := s.Put(ctx, "job_rw", bytes.NewReader(versions[(i+1)%2]), "video/mp4"); err != nil {
					t.Errorf("Put: %v", err)
					return
				}
			}
		})
		for range 2 {
			wg.Go(func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					obj, err := s.Open(ctx, "job_rw")
					if err != nil {
						t.Errorf("Open during overwrites: %v", err)
						return
					}
					b, err := io.ReadAll(obj)
					obj.Close()
					if changedWhileRead(err) {
						continue // refused, not mixed: S3 reads pin the version they started on
					}
					if err != nil {
						t.Errorf("read during overwrites: %v", err)
						return
					}
					if !bytes.Equal(b, versions[0]) && !bytes.Equal(b, versions[1]) {
						t.Errorf("a read returned %d bytes that are neither version whole", len(b))
						return
					}
				}
			})
		}
		wg.Wait()
	})
}

// changedWhileRead reports whether err is S3 refusing the rest of a read
// because the object was replaced after it began (412 Precondition
// Failed on the pinned ETag).
func changedWhileRead(err error) bool {
	return err != nil && minio.ToErrorResponse(err).Code == "PreconditionFailed"
}
