// Package ids makes the public identifiers of keys, jobs and alerts:
// a short type prefix, then 26 characters of Crockford base32 holding a
// 48-bit millisecond timestamp and 80 random bits (the ULID layout). Ids
// sort by creation time as plain strings, which cursor pagination uses, and
// are unguessable, so knowing one id says nothing about another.
package ids

import (
	"crypto/rand"
	"encoding/binary"
	"strings"
	"time"
)

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// New returns prefix + "_" + a fresh id made at t.
func New(prefix string, t time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixMilli())<<16)
	rand.Read(b[6:]) // never fails (crypto/rand contract since Go 1.24)
	return prefix + "_" + encode(b)
}

// encode writes 128 bits as 26 base32 digits, most significant first (the
// first digit carries only the top 3 bits).
func encode(b [16]byte) string {
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// Time returns the creation time embedded in an id made by New with the
// given prefix, to the millisecond. ok is false for anything New could not
// have made, so a caller never draws conclusions from a malformed id.
func Time(prefix, id string) (t time.Time, ok bool) {
	body, found := strings.CutPrefix(id, prefix+"_")
	if !found || len(body) != 26 || body[0] > '7' {
		return time.Time{}, false
	}
	// The first 10 digits carry 50 bits: 2 leading zero bits (the top
	// digit holds only 3 bits) and the 48-bit millisecond timestamp.
	var ms uint64
	for i := 0; i < 10; i++ {
		v := strings.IndexByte(crockford, body[i])
		if v < 0 {
			return time.Time{}, false
		}
		ms = ms<<5 | uint64(v)
	}
	if strings.Trim(body[10:], crockford) != "" {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(ms)).UTC(), true
}

// Valid reports whether s has the shape of an id New(prefix, …) makes:
// the prefix, "_" and 26 Crockford base32 digits. It says nothing about
// whether such an id exists.
func Valid(prefix, s string) bool {
	rest, ok := strings.CutPrefix(s, prefix+"_")
	if !ok || len(rest) != 26 || rest[0] > '7' {
		return false
	}
	for i := range len(rest) {
		if strings.IndexByte(crockford, rest[i]) < 0 {
			return false
		}
	}
	return true
}
