package results

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"

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
	// PartSize is the multipart upload's part size and so the memory one
	// Put holds at most; 0 means DefaultPartSize. S3 wants at least 5 MiB.
	PartSize uint64
}

// DefaultPartSize bounds a Put's buffer: 50 uploads at once hold 400 MiB at
// most, and a 10,000-part upload still reaches 80 GB.
const DefaultPartSize = 8 << 20

// minPartSize is S3's smallest part (but the last).
const minPartSize = 5 << 20

// S3 is a Store in an S3-compatible bucket (AWS S3, versitygw, SeaweedFS,
// Ceph RGW, R2, …), through minio-go.
type S3 struct {
	client   *minio.Client
	bucket   string
	prefix   string
	partSize uint64
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
	client, err := minio.New(u.Host, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: u.Scheme == "https", Region: cfg.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("S3 client: %w", err)
	}
	return &S3{client: client, bucket: cfg.Bucket, prefix: cfg.Prefix, partSize: cfg.PartSize}, nil
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

// Put uploads r in parts of PartSize (one part buffer per Put, never the
// whole body); the object appears only when the upload completes, so a
// reader never sees part of it.
func (s *S3) Put(ctx context.Context, key string, r io.Reader, contentType string) (int64, error) {
	if err := CheckKey(key); err != nil {
		return 0, err
	}
	if contentType == "" {
		contentType = DefaultContentType
	}
	info, err := s.client.PutObject(ctx, s.bucket, s.prefix+key, r, -1, minio.PutObjectOptions{
		ContentType: contentType, PartSize: s.partSize,
	})
	if err != nil {
		return info.Size, fmt.Errorf("results: upload %s: %w", key, err)
	}
	return info.Size, nil
}

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
