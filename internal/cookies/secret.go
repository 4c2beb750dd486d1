package cookies

import "strings"

// Secured replaces secret values in Masked.
const Secured = "…secured…"

// harmlessNames are the cookies whose values Masked shows: identifiers and
// preferences known to carry no credential. Every other cookie is hidden,
// whatever its name: sites name credentials "credential", "pass", "otp",
// "remember_me", "cf_clearance", "__cf_bm", "sig", "hmac"…, and a list of
// bad names is never complete, while a list of good ones only costs a
// value shown as "…secured…" that could have been shown.
var harmlessNames = map[string]bool{
	"lt_id": true, "theme": true, "locale": true, "lang": true, "language": true,
	"timezone": true, "tz": true, "color_scheme": true,
}

// minOpaqueLen is the shortest run of base64/hex characters treated as an
// opaque secret; identifiers like "user123" are much shorter.
const minOpaqueLen = 32

// IsSecret reports whether a cookie must be hidden from display: any cookie
// not known to be harmless, and a harmless-named one whose value looks like
// a token.
func IsSecret(name, value string) bool {
	if !harmlessNames[strings.ToLower(name)] {
		return true
	}
	return secretValue(value)
}

// minRevealLen is the shortest secret value Masked also hides inside other
// cookies. Shorter values ("1", "true") are not credentials, and hiding
// every cookie that shares them would hide harmless values.
const minRevealLen = 8

// Masked returns every cookie name mapped to its value, or to Secured when
// IsSecret says the value must not be shown or the value contains the value
// of a cookie IsSecret hides.
//
// The second rule exists because IsSecret judges one cookie at a time: an
// opaque or short credential (an lt_refresh_token like "r-8f3k2…", a small
// JWT) copied into a cookie with an innocuous name (a "state" cookie) would
// otherwise be displayed there. FuzzParseLTX checks this.
func (j Jar) Masked() map[string]string {
	var hidden []string
	for _, p := range j.pairs {
		if len(p.Value) >= minRevealLen && IsSecret(p.Name, p.Value) {
			hidden = append(hidden, p.Value)
		}
	}
	m := make(map[string]string, len(j.pairs))
	for _, p := range j.pairs {
		if IsSecret(p.Name, p.Value) || containsAny(p.Value, hidden) {
			m[p.Name] = Secured
		} else {
			m[p.Name] = p.Value
		}
	}
	return m
}

func containsAny(v string, subs []string) bool {
	for _, s := range subs {
		if strings.Contains(v, s) {
			return true
		}
	}
	return false
}

// secretValue reports whether v looks like a JWT or contains a long run of
// base64, base64url or hex characters.
func secretValue(v string) bool {
	return looksLikeJWT(v) || longestOpaqueRun(v) >= minOpaqueLen
}

func looksLikeJWT(v string) bool {
	parts := strings.Split(v, ".")
	if len(parts) != 3 || !strings.HasPrefix(parts[0], "eyJ") {
		return false
	}
	for _, p := range parts {
		if strings.ContainsFunc(p, func(r rune) bool { return !isBase64URL(r) && r != '=' }) {
			return false
		}
	}
	return true
}

func longestOpaqueRun(v string) int {
	longest, run := 0, 0
	for _, r := range v {
		if isBase64URL(r) || r == '+' || r == '/' || r == '=' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return longest
}
