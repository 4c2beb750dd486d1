package webhooks

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	t.Parallel()
	const secret = "whsec_test"
	body := []byte(`{"id":"job_1","status":"succeeded"}`)
	now := time.Unix(1_800_000_000, 0)
	signed := func(ts int64, sig string) http.Header {
		h := http.Header{}
		h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
		h.Set(HeaderSignature, sig)
		return h
	}
	good := Sign(secret, now.Unix(), body)

	tests := []struct {
		name   string
		secret string
		header http.Header
		body   []byte
		want   error
	}{
		{"valid", secret, signed(now.Unix(), good), body, nil},
		{"valid among several signatures", secret, signed(now.Unix(), "v0=abc, v1=00ff,"+good), body, nil},
		{"within tolerance", secret, signed(now.Unix()-299, Sign(secret, now.Unix()-299, body)), body, nil},
		{"tampered body", secret, signed(now.Unix(), good), []byte(`{"id":"job_2"}`), ErrBadSignature},
		{"wrong secret", "whsec_other", signed(now.Unix(), good), body, ErrBadSignature},
		{"signature of another timestamp", secret, signed(now.Unix()+1, good), body, ErrBadSignature},
		{"not hex", secret, signed(now.Unix(), "v1=zz"), body, ErrBadSignature},
		{"missing signature", secret, signed(now.Unix(), ""), body, ErrBadSignature},
		{"stale timestamp", secret, signed(now.Unix()-301, Sign(secret, now.Unix()-301, body)), body, ErrBadTimestamp},
		{"future timestamp", secret, signed(now.Unix()+301, Sign(secret, now.Unix()+301, body)), body, ErrBadTimestamp},
		{"missing timestamp", secret, http.Header{HeaderSignature: {good}}, body, ErrBadTimestamp},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := Verify(tc.secret, tc.header, tc.body, now, 5*time.Minute)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSignKnownVector(t *testing.T) {
	t.Parallel()
	// Computed independently with
	//   printf '1700000000.{}' | openssl dgst -sha256 -hmac whsec_test
	// so receivers in other languages can check themselves against it.
	const want = "v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
	if got := Sign("whsec_test", 1700000000, []byte(`{}`)); got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
}
