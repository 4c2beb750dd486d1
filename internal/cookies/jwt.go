package cookies

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
)

// Reasons a token is not a JWT. They are fixed phrases so that no decoder
// message, which can quote input bytes, reaches an error.
const (
	reasonSegments     = "expected three dot-separated segments"
	reasonHeaderBase64 = "header is not base64url"
	reasonHeaderJSON   = "header is not a JSON object"
	reasonPayloadB64   = "payload is not base64url"
	reasonPayloadJSON  = "payload is not JSON"
	reasonPayloadObj   = "payload is not a JSON object"
	reasonExpNotNumber = "exp claim is not a number"
)

// maxExpiry is the latest Expiry DecodeJWT reports. Larger exp values are
// clamped to it because time.Time cannot marshal years past 9999 to JSON.
var maxExpiry = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// Claims are the JWT claims poolgate uses.
type Claims struct {
	Expiry time.Time // from "exp" (seconds since epoch, integer or float); zero if absent
	Email  string    // from "email", lower-cased and trimmed; "" if absent or not a string
}

// DecodeJWT reads a JWT's claims without checking its signature: poolgate
// does not hold LTX's keys and only needs the expiry and email to schedule
// refreshes and route jobs. Errors are *MalformedTokenError with an empty
// Field.
func DecodeJWT(token string) (Claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Claims{}, &MalformedTokenError{Reason: reasonSegments}
	}
	header, ok := decodeSegment(parts[0])
	if !ok {
		return Claims{}, &MalformedTokenError{Reason: reasonHeaderBase64}
	}
	if _, err := jsonObject(header); err != nil {
		return Claims{}, &MalformedTokenError{Reason: reasonHeaderJSON}
	}
	payload, ok := decodeSegment(parts[1])
	if !ok {
		return Claims{}, &MalformedTokenError{Reason: reasonPayloadB64}
	}
	claims, err := jsonObject(payload)
	if err != nil {
		return Claims{}, &MalformedTokenError{Reason: err.Error()}
	}
	return readClaims(claims)
}

// decodeSegment decodes base64url with or without padding. Padding, when
// present, must be correct.
func decodeSegment(seg string) ([]byte, bool) {
	if seg == "" || strings.ContainsFunc(seg, func(r rune) bool { return !isBase64URL(r) && r != '=' }) {
		return nil, false
	}
	enc := base64.RawURLEncoding
	if strings.HasSuffix(seg, "=") {
		enc = base64.URLEncoding
	}
	b, err := enc.DecodeString(seg)
	return b, err == nil
}

// jsonObject decodes b as a JSON object. Its error is one of the fixed
// payload reasons.
func jsonObject(b []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		if json.Valid(b) {
			return nil, reasonError(reasonPayloadObj)
		}
		return nil, reasonError(reasonPayloadJSON)
	}
	if m == nil { // the literal null
		return nil, reasonError(reasonPayloadObj)
	}
	return m, nil
}

type reasonError string

func (e reasonError) Error() string { return string(e) }

func readClaims(m map[string]json.RawMessage) (Claims, error) {
	var c Claims
	if raw, ok := m["exp"]; ok {
		exp, ok := numericDate(raw)
		if !ok {
			return Claims{}, &MalformedTokenError{Reason: reasonExpNotNumber}
		}
		c.Expiry = exp
	}
	var email string
	if json.Unmarshal(m["email"], &email) == nil {
		c.Email = strings.ToLower(strings.TrimSpace(email))
	}
	return c, nil
}

// numericDate converts a JSON number of seconds since the epoch to a UTC
// time, clamped to [epoch, maxExpiry]. Clamping below keeps a nonsensical
// negative exp non-zero, so it still reads as present and expired.
func numericDate(raw json.RawMessage) (time.Time, bool) {
	s := string(bytes.TrimSpace(raw))
	if s == "" || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) {
		return time.Time{}, false
	}
	// A valid JSON number only fails ParseFloat with ErrRange, which
	// yields ±Inf; the clamps below absorb it.
	f, _ := strconv.ParseFloat(s, 64)
	switch {
	case f <= 0:
		return time.Unix(0, 0).UTC(), true
	case f >= float64(maxExpiry.Unix()):
		return maxExpiry, true
	}
	// In this range whole seconds are below 2^53, so integers stay exact.
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), true
}

func isBase64URL(r rune) bool {
	return r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}
