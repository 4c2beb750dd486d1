package results

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config says where an S3-compatible bucket is.
type S3Config struct {
	// Endpoint is the service's URL, e.g. https://s3.eu-west-1.amazonaws.com
	// or http://127.0.0.1:7070; its scheme decides TLS.
	Endpoint  string
	Bucket    string
	Region    string // "" means us-east-1
	AccessKey string
	SecretKey string
	// Prefix is put before every key, so one bucket can hold several
	// installations (e.g. "poolgate/").
	Prefix string
	// PartSize is the multipart upload's part size; 0 means
	// DefaultPartSize. S3 wants at least 5 MiB.
	PartSize uint64
	// UploadBuffers is how many part buffers all Puts share (0:
	// DefaultUploadBuffers): the store's upload memory is at most
	// UploadBuffers × PartSize however many Puts run at once.
	UploadBuffers int
}

// DefaultPartSize is the multipart part size: a 10,000-part upload still
// reaches 80 GB.
const DefaultPartSize = 8 << 20

// DefaultUploadBuffers bounds the store's upload memory to 64 MiB with the
// default part size.
const DefaultUploadBuffers = 8

// minPartSize is S3's smallest part (but the last).
const minPartSize = 5 << 20

// S3 is a Store in an S3-compatible bucket (AWS S3, versitygw, SeaweedFS,
// Ceph RGW, R2, …), through minio-go.
type S3 struct {
	client  *minio.Client
	bucket  string
	prefix  string
	buffers *bufferPool
}

// NewS3 returns the store; it does not talk to the service yet (Check does).
func NewS3(cfg S3Config) (*S3, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("S3 endpoint must be http(s)://host[:port], got %q", cfg.Endpoint)
	}
	if cfg.Bucket == "" {
		return nil, errors.New("S3 bucket is not set")
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	switch {
	case cfg.PartSize == 0:
		cfg.PartSize = DefaultPartSize
	case cfg.PartSize < minPartSize:
		return nil, fmt.Errorf("S3 part size must be at least 5 MiB, got %d bytes", cfg.PartSize)
	}
	if cfg.UploadBuffers <= 0 {
		cfg.UploadBuffers = DefaultUploadBuffers
	}
	client, err := minio.New(u.Host, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: u.Scheme == "https", Region: cfg.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("S3 client: %w", err)
	}
	return &S3{client: client, bucket: cfg.Bucket, prefix: cfg.Prefix, buffers: newBufferPool(cfg.UploadBuffers, int(cfg.PartSize))}, nil
}

// Check reports whether the bucket exists and the credentials reach it.
func (s *S3) Check(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("S3 bucket %s: %w", s.bucket, err)
	}
	if !ok {
		return fmt.Errorf("S3 bucket %s does not exist", s.bucket)
	}
	return nil
}

// Put uploads r part by part, each part read into one of the store's
// shared buffers and sent before the buffer goes back, so all Puts
// together hold at most UploadBuffers parts. A body that fits one part is
// one PUT; a longer one a multipart upload, which the bucket shows only
// once complete (and aborts on failure), so a reader never sees part of it.
func (s *S3) Put(ctx context.Context, key string, r io.Reader, contentType string) (int64, error) {
	if err := CheckKey(key); err != nil {
		return 0, err
	}
	if contentType == "" {
		contentType = DefaultContentType
	}
	name, opts := s.prefix+key, minio.PutObjectOptions{ContentType: contentType}
	buf, err := s.buffers.get(ctx)
	if err != nil {
		return 0, err
	}
	n, last, err := readPart(ctx, r, buf)
	if err != nil {
		s.buffers.put(buf)
		return 0, fmt.Errorf("results: read %s: %w", key, err)
	}
	if last {
		defer s.buffers.put(buf)
		_, err := s.client.PutObject(ctx, s.bucket, name, bytes.NewReader(buf[:n]), int64(n), opts)
		if err != nil {
			return 0, fmt.Errorf("results: upload %s: %w", key, err)
		}
		return int64(n), nil
	}
	written, err := s.putParts(ctx, name, r, buf, n, opts)
	if err != nil {
		return written, fmt.Errorf("results: upload %s: %w", key, err)
	}
	return written, nil
}

// putParts runs a multipart upload whose first part, n bytes, is in buf
// (which it returns to the pool).
func (s *S3) putParts(ctx context.Context, name string, r io.Reader, buf []byte, n int, opts minio.PutObjectOptions) (int64, error) {
	core := minio.Core{Client: s.client}
	id, err := core.NewMultipartUpload(ctx, s.bucket, name, opts)
	if err != nil {
		s.buffers.put(buf)
		return 0, err
	}
	abort := func(err error) (int64, error) {
		// The upload's parts would otherwise stay in the bucket, unseen.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		return 0, errors.Join(err, core.AbortMultipartUpload(actx, s.bucket, name, id))
	}
	var parts []minio.CompletePart
	var total int64
	last := false // the first part filled its buffer
	for num := 1; ; num++ {
		p, err := core.PutObjectPart(ctx, s.bucket, name, id, num, bytes.NewReader(buf[:n]), int64(n), minio.PutObjectPartOptions{})
		s.buffers.put(buf)
		if err != nil {
			return abort(err)
		}
		parts, total = append(parts, minio.CompletePart{PartNumber: p.PartNumber, ETag: p.ETag}), total+int64(n)
		if last {
			break
		}
		if buf, err = s.buffers.get(ctx); err != nil {
			return abort(err)
		}
		if n, last, err = readPart(ctx, r, buf); err != nil || n == 0 {
			s.buffers.put(buf)
			if err != nil {
				return abort(err)
			}
			break // the body ended on a part boundary
		}
	}
	if _, err := core.CompleteMultipartUpload(ctx, s.bucket, name, id, parts, opts); err != nil {
		return abort(err)
	}
	return total, nil
}

// readPart fills buf from r; last says r ended (n may then be short or 0).
func readPart(ctx context.Context, r io.Reader, buf []byte) (n int, last bool, err error) {
	n, err = io.ReadFull(ctxReader{ctx, r}, buf)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return n, true, nil
	case err != nil:
		return n, false, err
	}
	return n, false, nil
}

// bufferPool hands out at most max buffers of size bytes, made on first
// need and reused; get waits while all are out.
type bufferPool struct {
	free   chan []byte
	tokens chan struct{} // one per buffer that may still be made
	size   int
}

func newBufferPool(max, size int) *bufferPool {
	p := &bufferPool{free: make(chan []byte, max), tokens: make(chan struct{}, max), size: size}
	for range max {
		p.tokens <- struct{}{}
	}
	return p
}

func (p *bufferPool) get(ctx context.Context) ([]byte, error) {
	select {
	case b := <-p.free:
		return b, nil
	default:
	}
	select {
	case b := <-p.free:
		return b, nil
	case <-p.tokens:
		return make([]byte, p.size), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *bufferPool) put(b []byte) { p.free <- b }

// Open stats key and returns it as a minio Object, which reads ranges with
// ranged GETs when seeked.
func (s *S3) Open(ctx context.Context, key string) (*Object, error) {
	if err := CheckKey(key); err != nil {
		return nil, ErrNotFound
	}
	obj, err := s.client.GetObject(ctx, s.bucket, s.prefix+key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s3Error(err)
	}
	info, err := obj.Stat()
	if err != nil {
		obj.Close()
		return nil, s3Error(err)
	}
	typ := info.ContentType
	if typ == "" {
		typ = DefaultContentType
	}
	return &Object{ReadSeekCloser: obj, Size: info.Size, ContentType: typ, ModTime: info.LastModified, ETag: `"` + info.ETag + `"`}, nil
}

// Delete removes keys with multi-object deletes; S3 reports no error for
// keys that are already gone.
func (s *S3) Delete(ctx context.Context, keys ...string) error {
	if err := checkKeys(keys); err != nil {
		return err
	}
	ch := make(chan minio.ObjectInfo)
	go func() {
		defer close(ch)
		for _, k := range keys {
			select {
			case ch <- minio.ObjectInfo{Key: s.prefix + k}:
			case <-ctx.Done():
				return
			}
		}
	}()
	var problems []error
	for e := range s.client.RemoveObjects(ctx, s.bucket, ch, minio.RemoveObjectsOptions{}) {
		if e.Err != nil && minio.ToErrorResponse(e.Err).Code != "NoSuchKey" {
			problems = append(problems, fmt.Errorf("delete %s: %w", e.ObjectName, e.Err))
		}
	}
	if err := ctx.Err(); err != nil {
		problems = append(problems, err)
	}
	return errors.Join(problems...)
}

func s3Error(err error) error {
	switch minio.ToErrorResponse(err).Code {
	case "NoSuchKey", "NotFound":
		return ErrNotFound
	}
	return err
}
