// Package cookies reads the browser cookie string an operator copies from
// LTX Studio (for example "lt_id=user123; lt_token=eyJ…; lt_refresh_token=…"),
// checks the fields LTX needs, reads JWT claims without verifying signatures,
// and masks secrets for display.
//
// Nothing in this package puts a cookie value into an error message: errors
// end up in HTTP responses and logs.
package cookies

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxLen bounds both the input and its canonical form. Real LTX cookie
// strings are a few KiB; the bound keeps a pasted file from becoming work.
const maxLen = 16 << 10

// cookieSpace is what Parse trims around pairs, names and values. It is
// ASCII-only so that String can tell exactly which values need quoting.
const cookieSpace = " \t\r\n"

// nameSeparators are the RFC 2616 separators that may not appear in a
// cookie name; whitespace and control characters are checked separately.
const nameSeparators = `()<>@,;:\"/[]?={}`

// Pair is one cookie.
type Pair struct{ Name, Value string }

// Jar is an ordered set of cookies with unique names, kept in first-seen
// order. The zero Jar is empty and ready to use. A Jar is immutable: With
// returns a modified copy, so Jars can be shared between goroutines.
type Jar struct {
	pairs []Pair
}

// Parse reads a cookie string as browsers and devtools copy it. It checks
// syntax only; see ParseLTX for the fields LTX Studio requires. Errors are
// *SyntaxError.
//
// A duplicate name keeps the position of its first occurrence and the value
// of its last, which is how a later Set-Cookie overrides an earlier one.
func Parse(s string) (Jar, error) {
	if len(s) > maxLen {
		return Jar{}, syntaxErrorf("longer than %d KiB", maxLen>>10)
	}
	if !utf8.ValidString(s) {
		return Jar{}, syntaxErrorf("not valid UTF-8")
	}
	s = trimCookiePrefix(strings.Trim(s, cookieSpace))
	if s == "" {
		return Jar{}, syntaxErrorf("empty")
	}
	j, err := parsePairs(s)
	if err != nil {
		return Jar{}, err
	}
	// String may quote values and spaces out separators, so an input just
	// under the limit can grow past it; checking the canonical form too is
	// what lets every accepted Jar parse back from its String.
	if len(j.String()) > maxLen {
		return Jar{}, syntaxErrorf("longer than %d KiB", maxLen>>10)
	}
	return j, nil
}

// trimCookiePrefix drops a leading "Cookie:" header name, which devtools
// include when copying request headers.
func trimCookiePrefix(s string) string {
	const prefix = "cookie:"
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return strings.TrimLeft(s[len(prefix):], cookieSpace)
	}
	return s
}

func parsePairs(s string) (Jar, error) {
	var j Jar
	index := make(map[string]int)
	segment := 0
	for seg := range strings.SplitSeq(s, ";") {
		segment++
		seg = strings.Trim(seg, cookieSpace)
		if seg == "" {
			continue
		}
		p, err := parsePair(seg, segment)
		if err != nil {
			return Jar{}, err
		}
		if i, ok := index[p.Name]; ok {
			j.pairs[i].Value = p.Value
			continue
		}
		index[p.Name] = len(j.pairs)
		j.pairs = append(j.pairs, p)
	}
	if len(j.pairs) == 0 {
		return Jar{}, syntaxErrorf("no cookies found")
	}
	return j, nil
}

// parsePair reads one "name=value" segment; segment is its 1-based position,
// used in errors instead of content that might be secret.
func parsePair(seg string, segment int) (Pair, error) {
	name, value, ok := strings.Cut(seg, "=")
	if !ok {
		return Pair{}, syntaxErrorf("segment %d has no '='", segment)
	}
	name = strings.Trim(name, cookieSpace)
	if name == "" {
		return Pair{}, syntaxErrorf("segment %d has an empty name", segment)
	}
	if !validName(name) {
		return Pair{}, syntaxErrorf("segment %d has a name containing whitespace, a control character or a separator", segment)
	}
	value = unquote(strings.Trim(value, cookieSpace))
	if strings.ContainsFunc(value, isControl) {
		return Pair{}, syntaxErrorf("value of %s contains a control character", describeName(name, segment))
	}
	return Pair{Name: name, Value: value}, nil
}

func validName(name string) bool {
	return !strings.ContainsFunc(name, func(r rune) bool {
		return isControl(r) || unicode.IsControl(r) || unicode.IsSpace(r) ||
			strings.ContainsRune(nameSeparators, r)
	})
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// describeName names a cookie in an error. A garbled paste can turn part of
// a token into a syntactically valid name, so names that look like secrets
// are referred to by position instead.
func describeName(name string, segment int) string {
	if secretValue(name) {
		return fmt.Sprintf("the cookie in segment %d", segment)
	}
	return fmt.Sprintf("%q", name)
}

// unquote strips one pair of surrounding double quotes, which RFC 6265
// allows around a cookie value.
func unquote(v string) string {
	if isQuoted(v) {
		return v[1 : len(v)-1]
	}
	return v
}

func isQuoted(v string) bool {
	return len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"'
}

// Get returns the value of the named cookie. Names are case-sensitive.
func (j Jar) Get(name string) (string, bool) {
	for _, p := range j.pairs {
		if p.Name == name {
			return p.Value, true
		}
	}
	return "", false
}

// Pairs returns a copy of the cookies in order.
func (j Jar) Pairs() []Pair { return slices.Clone(j.pairs) }

// Len returns the number of cookies.
func (j Jar) Len() int { return len(j.pairs) }

// With returns a copy of j with name set to value, in place if the name is
// already present and appended otherwise; j itself is unchanged. It is meant
// for refreshed tokens and does not validate: name and value must follow the
// rules Parse enforces, or String will not parse back.
func (j Jar) With(name, value string) Jar {
	pairs := slices.Clone(j.pairs)
	for i := range pairs {
		if pairs[i].Name == name {
			pairs[i].Value = value
			return Jar{pairs: pairs}
		}
	}
	return Jar{pairs: append(pairs, Pair{Name: name, Value: value})}
}

// String returns the canonical "k=v; k2=v2" form sent upstream in a Cookie
// header. Parse reads it back to an identical Jar.
func (j Jar) String() string {
	var b strings.Builder
	for i, p := range j.pairs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.Name)
		b.WriteByte('=')
		if needsQuotes(p.Value) {
			b.WriteByte('"')
			b.WriteString(p.Value)
			b.WriteByte('"')
		} else {
			b.WriteString(p.Value)
		}
	}
	return b.String()
}

// needsQuotes reports whether a value written bare would read back
// differently: Parse would trim its edges or strip its own quotes. Values
// with spaces or commas are quoted as net/http does, since some servers
// split cookie headers on them.
func needsQuotes(v string) bool {
	return v != strings.Trim(v, cookieSpace) || isQuoted(v) || strings.ContainsAny(v, " ,")
}
