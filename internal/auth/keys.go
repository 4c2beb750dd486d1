// Package auth issues and verifies API keys and decides what a verified key
// may do.
//
// A key is "pgk_<mode>_" followed by 24 random base62 characters (142 bits)
// and a 6-character base62 checksum (CRC-32 of everything before it). The
// checksum lets poolgate, secret scanners and humans reject a mistyped or
// made-up key offline, before any database lookup. Only the SHA-256 of a key
// is stored; a key is found by its hash, so verification is one indexed
// lookup and no stored value can be replayed.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"hash/crc32"
	"strings"

	"github.com/poolgate/poolgate/internal/tenant"
)

const (
	keyPrefix   = "pgk_"
	randomLen   = 24
	checksumLen = 6
	// startLen is how many random characters "start" keeps: enough to tell
	// keys apart in a list, far too few to help guess one.
	startLen = 4
	base62   = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// NewSecret returns a fresh key for mode.
func NewSecret(mode tenant.Mode) string {
	body := keyPrefix + string(mode) + "_" + randomBase62(randomLen)
	return body + checksum(body)
}

// randomBase62 returns n uniformly random base62 characters, by rejection
// sampling so that no character is more likely than another.
func randomBase62(n int) string {
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		rand.Read(buf[:])
		for _, b := range buf {
			if b < 248 && len(out) < n { // 248 = 4*62: keeps the draw uniform
				out = append(out, base62[b%62])
			}
		}
	}
	return string(out)
}

func checksum(body string) string {
	v := crc32.ChecksumIEEE([]byte(body))
	var out [checksumLen]byte
	for i := checksumLen - 1; i >= 0; i-- {
		out[i] = base62[v%62]
		v /= 62
	}
	return string(out[:])
}

// ParseSecret checks a presented key's shape and checksum and returns its
// mode. ok is false for anything that cannot be a key poolgate issued.
func ParseSecret(key string) (mode tenant.Mode, ok bool) {
	rest, found := strings.CutPrefix(key, keyPrefix)
	if !found {
		return "", false
	}
	m, rest, found := strings.Cut(rest, "_")
	mode = tenant.Mode(m)
	if !found || !mode.Valid() || len(rest) != randomLen+checksumLen {
		return "", false
	}
	if strings.Trim(rest, base62) != "" {
		return "", false
	}
	body := key[:len(key)-checksumLen]
	if checksum(body) != key[len(key)-checksumLen:] {
		return "", false
	}
	return mode, true
}

// Hash is what the database stores and looks keys up by.
func Hash(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// Start is the recognisable, non-secret beginning of a key ("pgk_live_" and
// the first random characters). key must have passed ParseSecret.
func Start(key string) string {
	return key[:len(key)-checksumLen-randomLen+startLen]
}
