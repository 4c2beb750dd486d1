// Package secret seals small secrets (account cookies, webhook signing keys)
// for storage with AES-256-GCM. A dump of the database shows only
// ciphertext, and the associated data binds each ciphertext to the row it
// belongs to, so a sealed value copied onto another row fails to open.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the length of the master key in bytes (AES-256).
const KeySize = 32

// version prefixes every ciphertext so that a later key rotation can tell
// formats apart without guessing.
const version byte = 1

// ErrOpen is returned for ciphertext that does not authenticate: the wrong
// key, the wrong row, or tampering. It deliberately says nothing more.
var ErrOpen = errors.New("secret: ciphertext does not authenticate")

// Box seals and opens values with one master key. It is safe for
// concurrent use.
type Box struct {
	aead cipher.AEAD
}

// NewBox builds a Box from a raw 32-byte key.
func NewBox(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secret key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead}, nil
}

// ParseKey decodes a base64 (standard or URL alphabet, padded or not)
// 32-byte key as found in POOLGATE_SECRET_KEY. Its errors never echo the key.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err := enc.DecodeString(s); err == nil {
			if len(key) != KeySize {
				return nil, fmt.Errorf("secret key must decode to %d bytes, got %d", KeySize, len(key))
			}
			return key, nil
		}
	}
	return nil, errors.New("secret key is not valid base64")
}

// Seal encrypts plaintext bound to aad.
func (b *Box) Seal(plaintext, aad []byte) []byte {
	nonce := make([]byte, b.aead.NonceSize(), 1+b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic("secret: crypto/rand failed: " + err.Error()) // never happens on supported platforms
	}
	out := append([]byte{version}, nonce...)
	return b.aead.Seal(out, nonce, plaintext, aad)
}

// Open decrypts a value sealed with the same key and aad.
func (b *Box) Open(sealed, aad []byte) ([]byte, error) {
	ns := b.aead.NonceSize()
	if len(sealed) < 1+ns+b.aead.Overhead() || sealed[0] != version {
		return nil, ErrOpen
	}
	plain, err := b.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}
