package webhooks

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func TestSignVerify(t *testing.T) {
	t.Parallel()
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, err := KeyOf(secret)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := KeyOf(FormatSecret(newKey()))
	body := []byte(`{"id":"job_1","status":"succeeded"}`)
	now := time.Unix(1_800_000_000, 0)
	const id = "dlv_1"
	signed := func(id string, ts int64, sig string) http.Header {
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
		h.Set(HeaderSignature, sig)
		return h
	}
	good := Sign(key, id, now.Unix(), body)

	tests := []struct {
		name   string
		secret string
		header http.Header
		body   []byte
		want   error
	}{
		{"valid", secret, signed(id, now.Unix(), good), body, nil},
		{"valid among several signatures", secret, signed(id, now.Unix(), "v0,abc "+Sign(other, id, now.Unix(), body)+" "+good), body, nil},
		{"within tolerance", secret, signed(id, now.Unix()-299, Sign(key, id, now.Unix()-299, body)), body, nil},
		{"tampered body", secret, signed(id, now.Unix(), good), []byte(`{"id":"job_2"}`), ErrBadSignature},
		{"wrong secret", FormatSecret(other), signed(id, now.Unix(), good), body, ErrBadSignature},
		{"signature of another timestamp", secret, signed(id, now.Unix()+1, good), body, ErrBadSignature},
		{"signature of another id", secret, signed("dlv_2", now.Unix(), good), body, ErrBadSignature},
		{"not base64", secret, signed(id, now.Unix(), "v1,@@"), body, ErrBadSignature},
		{"missing signature", secret, signed(id, now.Unix(), ""), body, ErrBadSignature},
		{"missing id", secret, signed("", now.Unix(), good), body, ErrBadSignature},
		{"stale timestamp", secret, signed(id, now.Unix()-301, Sign(key, id, now.Unix()-301, body)), body, ErrBadTimestamp},
		{"future timestamp", secret, signed(id, now.Unix()+301, Sign(key, id, now.Unix()+301, body)), body, ErrBadTimestamp},
		{"missing timestamp", secret, http.Header{HeaderID: {id}, HeaderSignature: {good}}, body, ErrBadTimestamp},
		{"secret without prefix", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", signed(id, now.Unix(), good), body, ErrBadSecret},
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

// TestSignKnownVector checks Sign against the Standard Webhooks
// specification's example and against the official Go library, so
// receivers in any language can rely on their own library.
func TestSignKnownVector(t *testing.T) {
	t.Parallel()
	const (
		secret  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		id      = "msg_p5jXN8AQM9LWM0D4loKWxJek"
		ts      = 1614265330
		payload = `{"test": 2432232314}`
		want    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	)
	key, err := KeyOf(secret)
	if err != nil {
		t.Fatal(err)
	}
	if got := Sign(key, id, ts, []byte(payload)); got != want {
		t.Errorf("Sign = %q, want the specification's %q", got, want)
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	lib, _ := wh.Sign(id, time.Unix(ts, 0), []byte(payload))
	if lib != want {
		t.Errorf("the official library signs %q", lib)
	}
}

func TestLegacySecretsStillRead(t *testing.T) {
	t.Parallel()
	key := newKey()
	for _, s := range []string{FormatSecret(key), SecretPrefix + "" + rawURL(key)} {
		got, err := KeyOf(s)
		if err != nil || string(got) != string(key) {
			t.Errorf("KeyOf(%q) = %x, %v; want %x", s, got, err, key)
		}
	}
}

func rawURL(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
