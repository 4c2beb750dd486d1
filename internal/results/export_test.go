package results

import "context"

// IncompleteUploads counts the multipart uploads under the store's prefix
// that were neither completed nor aborted.
func (s *S3) IncompleteUploads(ctx context.Context) (int, error) {
	n := 0
	for u := range s.client.ListIncompleteUploads(ctx, s.bucket, s.prefix, true) {
		if u.Err != nil {
			return n, u.Err
		}
		n++
	}
	return n, nil
}
