package secret

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
)

func newTestBox(t *testing.T) *Box {
	t.Helper()
	key := make([]byte, KeySize)
	rand.Read(key)
	b, err := NewBox(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSealOpen(t *testing.T) {
	b := newTestBox(t)
	plain := []byte("lt_token=eyJ.secret.value")
	sealed := b.Seal(plain, []byte("row-1"))
	if bytes.Contains(sealed, plain) {
		t.Fatal("ciphertext contains the plaintext")
	}
	got, err := b.Open(sealed, []byte("row-1"))
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %q, %v; want the plaintext back", got, err)
	}
	t.Run("other row's aad fails", func(t *testing.T) {
		if _, err := b.Open(sealed, []byte("row-2")); err != ErrOpen {
			t.Fatalf("Open with another row's aad = %v, want ErrOpen", err)
		}
	})
	t.Run("other key fails", func(t *testing.T) {
		if _, err := newTestBox(t).Open(sealed, []byte("row-1")); err != ErrOpen {
			t.Fatalf("Open with another key = %v, want ErrOpen", err)
		}
	})
	t.Run("tampering fails", func(t *testing.T) {
		bad := bytes.Clone(sealed)
		bad[len(bad)-1] ^= 1
		if _, err := b.Open(bad, []byte("row-1")); err != ErrOpen {
			t.Fatalf("Open of tampered ciphertext = %v, want ErrOpen", err)
		}
	})
	t.Run("truncated fails", func(t *testing.T) {
		if _, err := b.Open(sealed[:5], []byte("row-1")); err != ErrOpen {
			t.Fatalf("Open of truncated ciphertext = %v, want ErrOpen", err)
		}
	})
	t.Run("nonces differ", func(t *testing.T) {
		if bytes.Equal(b.Seal(plain, nil), b.Seal(plain, nil)) {
			t.Fatal("two seals of the same value are identical; nonce reuse")
		}
	})
}

func TestParseKey(t *testing.T) {
	key := make([]byte, KeySize)
	rand.Read(key)
	for name, s := range map[string]string{
		"std":         base64.StdEncoding.EncodeToString(key),
		"raw url":     base64.RawURLEncoding.EncodeToString(key),
		"with spaces": " " + base64.StdEncoding.EncodeToString(key) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			got, err := ParseKey(s)
			if err != nil || !bytes.Equal(got, key) {
				t.Fatalf("ParseKey = %x, %v", got, err)
			}
		})
	}
	t.Run("short key refused", func(t *testing.T) {
		if _, err := ParseKey(base64.StdEncoding.EncodeToString(key[:16])); err == nil {
			t.Fatal("a 16-byte key was accepted")
		}
	})
	t.Run("error does not echo the key", func(t *testing.T) {
		_, err := ParseKey("not-base64-but-secret!!")
		if err == nil || strings.Contains(err.Error(), "secret!!") {
			t.Fatalf("err = %v", err)
		}
	})
}
