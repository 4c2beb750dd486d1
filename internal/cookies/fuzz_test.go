package cookies

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Run a fuzzer with, for example:
//
//	go test ./internal/cookies -run '^$' -fuzz '^FuzzParse$' -fuzztime 45s
//
// Crashers are saved under testdata/fuzz/<FuzzName>/ and replayed by every
// plain "go test" as regression tests.

// leakWindow is the shortest value fragment the leak checks look for.
// Shorter fragments match error text by coincidence ("segment", digits).
const leakWindow = 8

// seedLTXToken and seedRefreshToken are realistic tokens: LTX-style claims
// with an exp, an email and a long payload.
var (
	seedLTXToken = makeJWT(`{"sub":"user_2abcDEF","email":"Someone@Example.COM","iat":1735689600,"exp":1893456000}`)
	seedRefresh  = makeJWT(`{"sub":"user_2abcDEF","typ":"refresh","exp":1896048000}`)
)

func parseSeeds() []string {
	return []string{
		"Cookie: lt_id=1; lt_token=" + seedLTXToken + "; lt_refresh_token=" + seedRefresh + ";",
		"lt_id=user123; lt_token=" + seedLTXToken + "; lt_refresh_token=abc123",
		"cookie:lt_token=\"" + seedLTXToken + "\";lt_refresh_token=\"" + seedRefresh + "\"",
		`a="quoted value"; b=""; c="; d=""x""; e=" padded "`,
		"a=b=c==; d==; e=x=",
		"a=1; b=2; a=3; b=; a=4",
		" \t a = 1 ;\n b\t=\t2\r\n",
		";;; a=1;; ; ;b=2;;",
		"a=héllo☃; ☃=1; ключ=значение; e=\u00a0x\u2028",
		"a=x,y; b=x y; c=\t\"x\"\t",
		"a=1\x01",
		"a\x7f=1",
		"a\u00a0b=1",
		"lt_token=eyJSECRETMARKER\x01.x.y",
		"lt_id=1; lt_token " + seedLTXToken,
		"lt_token: " + seedLTXToken + "==",
		"eyJhbGciOiJIUzI1NiJ9SECRETMARKERabcdefghijklmnop=\x01",
		"session=SECRETMARKER\x7f",
		"a=\xff",
		"Cookie: ",
		"=v",
		"a=\u0085; b=\ufeff",
		"a=" + strings.Repeat("x", 200),
		strings.Repeat("c=1;", 50),
	}
}

func jwtSeeds() []string {
	return []string{
		seedLTXToken,
		seedRefresh,
		makeJWT(`{"exp":1.5e9,"email":"  MiXeD@Case.Org \t"}`),
		makeJWT(`{"exp":-5}`),
		makeJWT(`{"exp":-0}`),
		makeJWT(`{"exp":0.9999999999}`),
		makeJWT(`{"exp":1e400}`),
		makeJWT(`{"exp":253402300798.9999999}`),
		makeJWT(`{"exp":"1893456000"}`),
		makeJWT(`{"exp":null,"email":null}`),
		makeJWT(`{"exp":true}`),
		makeJWT(`{"email":"İSTANBUL@ÖRNEK.TR"}`),
		makeJWT(`{"email":42}`),
		makeJWT(`{"exp":1,"exp":2}`),
		makeJWT(`[]`),
		makeJWT(`null`),
		makeJWT(`{`),
		makeJWT(`"SECRETMARKERPAYLOAD"`),
		makeJWTWith(base64.URLEncoding, jwtHeader, `{"exp":1700000000}`),
		makeJWTWith(base64.StdEncoding, `{"alg":"none"}`, `{"email":"a+b/c@d.e"}`),
		"e30.e30.",
		"e30.e30",
		"a.b.c.d",
		"",
		"eyJ",
		"....",
		"e30=.e30==.x",
		"\xff.\xfe.\xfd",
	}
}

// FuzzParse checks that Parse never panics, that every accepted string
// yields the pairs a simple model predicts and round-trips through String,
// and that errors never depend on or quote cookie values.
func FuzzParse(f *testing.F) {
	for _, s := range parseSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		j, err := Parse(s)

		// Errors must not depend on what the values say, only on their
		// shape: replacing every value character that Parse treats as
		// ordinary with 'x' must give the same result. This is the
		// general form of "no value reaches an error".
		masked := maskValues(s)
		mj, merr := Parse(masked)
		if (err == nil) != (merr == nil) || err != nil && err.Error() != merr.Error() {
			t.Fatalf("result depends on value content:\nParse(%q) error = %v\nParse(%q) error = %v", s, err, masked, merr)
		}
		if err != nil {
			displayed := checkSyntaxError(t, s, err)
			checkNoValueLeak(t, s, err.Error(), displayed)
			return
		}
		if mj.Len() != j.Len() {
			t.Fatalf("masking values changed the number of cookies: %d vs %d", j.Len(), mj.Len())
		}
		checkJar(t, s, j)
	})
}

// FuzzDecodeJWT checks that DecodeJWT never panics, returns claims that
// can be marshalled and are normalised, and fails only with fixed messages.
func FuzzDecodeJWT(f *testing.F) {
	for _, s := range jwtSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := DecodeJWT(token)
		if err != nil {
			mt := checkMalformedTokenError(t, err, "")
			msg := err.Error()
			secrets := []string{token}
			if parts := strings.Split(token, "."); len(parts) == 3 {
				secrets = append(secrets, parts[0], parts[1])
				if b, ok := decodeSegment(parts[1]); ok {
					secrets = append(secrets, string(b))
				}
			}
			for _, secret := range secrets {
				if len(secret) >= leakWindow && strings.Contains(msg, secret) && !strings.Contains(errorVocabulary, secret) {
					t.Fatalf("DecodeJWT error %q (reason %q) quotes the token: %q", msg, mt.Reason, secret)
				}
			}
			return
		}
		if n := strings.Count(token, "."); n != 2 {
			t.Fatalf("DecodeJWT accepted a token with %d dots: %q", n, token)
		}
		checkExpiry(t, c.Expiry)
		if c.Email != strings.TrimSpace(c.Email) {
			t.Errorf("Email %q is not trimmed", c.Email)
		}
		if c.Email != strings.ToLower(c.Email) {
			t.Errorf("Email %q is not lower-case", c.Email)
		}
		if !utf8.ValidString(c.Email) {
			t.Errorf("Email %q is not valid UTF-8", c.Email)
		}
		if again, err := DecodeJWT(token); err != nil || again != c {
			t.Errorf("DecodeJWT is not deterministic: %+v, %v then %+v, %v", c, nil, again, err)
		}
	})
}

// FuzzParseLTX checks that ParseLTX never panics, that accepted credentials
// are consistent with the jar and never shown by Masked, and that errors
// never quote lt_token.
func FuzzParseLTX(f *testing.F) {
	for _, s := range parseSeeds() {
		f.Add(s)
	}
	jwt := seedLTXToken
	for _, s := range []string{
		"lt_token=" + jwt + "; lt_refresh_token=opaque-refresh-value",
		"lt_token=" + jwt + "; lt_refresh_token=",
		"lt_token=; lt_refresh_token=" + jwt,
		"lt_id=1",
		"lt_token=not-a-jwt-SECRETMARKER; lt_refresh_token=r",
		"lt_token=" + jwt + "x; lt_refresh_token=r",
		"lt_token=e30.e30.; lt_refresh_token=e30.e30.",
		"lt_token=old; lt_refresh_token=r; lt_token=" + jwt,
		"lt_token=" + jwt + "; lt_refresh_token=r; lt_token=",
		"lt_token=\"" + jwt + "\"; lt_refresh_token=\" spaced refresh \"",
		"LT_TOKEN=" + jwt + "; lt_refresh_token=r",
		"lt_token=" + makeJWT(`{"exp":1e999,"email":"X@Y"}`) + "; lt_refresh_token=" + makeJWT(`{"exp":-1}`),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseLTX(s)
		if err != nil {
			checkLTXError(t, s, err)
			return
		}
		if c.Token == "" || c.RefreshToken == "" {
			t.Fatalf("ParseLTX accepted empty tokens: %q, %q", c.Token, c.RefreshToken)
		}
		if v, _ := c.Jar.Get(fieldToken); v != c.Token {
			t.Errorf("Token = %q but the jar holds %q", c.Token, v)
		}
		if v, _ := c.Jar.Get(fieldRefreshToken); v != c.RefreshToken {
			t.Errorf("RefreshToken = %q but the jar holds %q", c.RefreshToken, v)
		}
		j, err := Parse(s)
		if err != nil || !slices.Equal(j.Pairs(), c.Jar.Pairs()) {
			t.Fatalf("ParseLTX jar %q differs from Parse: %q, %v", c.Jar.Pairs(), j.Pairs(), err)
		}
		claims, err := DecodeJWT(c.Token)
		if err != nil || !claims.Expiry.Equal(c.TokenExpiry) || claims.Email != c.Email {
			t.Errorf("credentials %+v disagree with DecodeJWT(Token) = %+v, %v", c, claims, err)
		}
		if rc, err := DecodeJWT(c.RefreshToken); err == nil && !rc.Expiry.Equal(c.RefreshTokenExpiry) {
			t.Errorf("RefreshTokenExpiry = %v, want %v", c.RefreshTokenExpiry, rc.Expiry)
		} else if err != nil && !c.RefreshTokenExpiry.IsZero() {
			t.Errorf("opaque refresh token has RefreshTokenExpiry %v, want zero", c.RefreshTokenExpiry)
		}
		checkExpiry(t, c.TokenExpiry)
		checkExpiry(t, c.RefreshTokenExpiry)

		m := c.Jar.Masked()
		for _, field := range []string{fieldToken, fieldRefreshToken} {
			if m[field] != Secured {
				t.Errorf("Masked()[%q] = %q, want %q", field, m[field], Secured)
			}
		}
		// No other cookie may display a credential either, whatever its
		// name. lt_token, being a JWT, is always at least 8 bytes ("e30.e30.");
		// a shorter refresh token is no secret worth hiding elsewhere.
		for name, shown := range m {
			for _, secret := range []string{c.Token, c.RefreshToken} {
				if shown != Secured && len(secret) >= leakWindow && strings.Contains(shown, secret) {
					t.Errorf("Masked()[%q] = %q shows a credential", name, shown)
				}
			}
		}
	})
}

// maskValues replaces every value character that Parse gives no meaning
// with 'x' repeated to the same byte length. Kept are what Parse and
// String act on: ASCII control characters (including the whitespace Parse
// trims), spaces, commas, double quotes, and invalid UTF-8 bytes. Segment
// structure, names, lengths, quoting and validity are therefore unchanged.
func maskValues(s string) string {
	var b strings.Builder
	for i, seg := range strings.Split(s, ";") {
		if i > 0 {
			b.WriteByte(';')
		}
		name, value, ok := strings.Cut(seg, "=")
		if !ok {
			b.WriteString(seg)
			continue
		}
		b.WriteString(name)
		b.WriteByte('=')
		for value != "" {
			r, size := utf8.DecodeRuneInString(value)
			if r == utf8.RuneError && size == 1 || isControl(r) || strings.ContainsRune(` ,"`, r) {
				b.WriteString(value[:size])
			} else {
				b.WriteString(strings.Repeat("x", size))
			}
			value = value[size:]
		}
	}
	return b.String()
}

// modelParse is a deliberately naive reading of the rules Parse documents,
// for inputs Parse accepted: split on ';', drop blank segments, cut at the
// first '=', trim, strip one pair of quotes, and let a duplicate name keep
// its first position and take its last value.
func modelParse(s string) []Pair {
	s = strings.Trim(s, cookieSpace)
	if len(s) >= len("cookie:") && strings.EqualFold(s[:len("cookie:")], "cookie:") {
		s = strings.TrimLeft(s[len("cookie:"):], cookieSpace)
	}
	var pairs []Pair
	for seg := range strings.SplitSeq(s, ";") {
		if strings.Trim(seg, cookieSpace) == "" {
			continue
		}
		name, value, _ := strings.Cut(seg, "=")
		name = strings.Trim(name, cookieSpace)
		value = strings.Trim(value, cookieSpace)
		if len(value) >= 2 && strings.HasPrefix(value, `"`) && strings.HasSuffix(value, `"`) {
			value = value[1 : len(value)-1]
		}
		if i := slices.IndexFunc(pairs, func(p Pair) bool { return p.Name == name }); i >= 0 {
			pairs[i].Value = value
		} else {
			pairs = append(pairs, Pair{name, value})
		}
	}
	return pairs
}

// checkJar checks an accepted jar against the model, String round trip and
// Masked.
func checkJar(t *testing.T, s string, j Jar) {
	t.Helper()
	pairs := j.Pairs()
	if want := modelParse(s); !slices.Equal(pairs, want) {
		t.Fatalf("Parse(%q) = %q, want %q", s, pairs, want)
	}
	if len(pairs) == 0 {
		t.Fatalf("Parse(%q) accepted a string with no cookies", s)
	}
	canon := j.String()
	if len(canon) > maxLen {
		t.Fatalf("String() is %d bytes, longer than the %d Parse accepts", len(canon), maxLen)
	}
	back, err := Parse(canon)
	if err != nil {
		t.Fatalf("Parse(%q).String() = %q does not parse back: %v", s, canon, err)
	}
	if !slices.Equal(back.Pairs(), pairs) {
		t.Fatalf("round trip of %q changed the pairs: %q became %q", s, pairs, back.Pairs())
	}
	if again := back.String(); again != canon {
		t.Fatalf("String is not canonical: %q then %q", canon, again)
	}
	m := j.Masked()
	if len(m) != len(pairs) {
		t.Fatalf("Masked has %d entries for %d cookies", len(m), len(pairs))
	}
	var secrets []string
	for _, p := range pairs {
		if IsSecret(p.Name, p.Value) && len(p.Value) >= minRevealLen {
			secrets = append(secrets, p.Value)
		}
	}
	for _, p := range pairs {
		if got, ok := j.Get(p.Name); !ok || got != p.Value {
			t.Errorf("Get(%q) = %q, %v; want %q", p.Name, got, ok, p.Value)
		}
		want := p.Value
		if IsSecret(p.Name, p.Value) || slices.ContainsFunc(secrets, func(s string) bool { return strings.Contains(p.Value, s) }) {
			want = Secured
		}
		if m[p.Name] != want {
			t.Errorf("Masked()[%q] = %q, want %q", p.Name, m[p.Name], want)
		}
	}
}

// errorVocabulary holds every fixed text this package puts in errors,
// separated by '"', which no leak-checked fragment contains. A value that
// happens to spell part of it ("character", "lt_refresh_token") appears in
// an error by coincidence, not because it leaked.
var errorVocabulary = func() string {
	words := []string{
		"invalid cookie string: empty",
		"invalid cookie string: not valid UTF-8",
		"invalid cookie string: no cookies found",
		fmt.Sprintf("invalid cookie string: longer than %d KiB", maxLen>>10),
		"invalid cookie string: segment ", " has no '='", " has an empty name",
		" has a name containing whitespace, a control character or a separator",
		"invalid cookie string: value of ", "the cookie in segment ", " contains a control character",
		"Missing required cookie fields: lt_token | lt_refresh_token",
		"Missing required cookie fields: lt_refresh_token",
	}
	for _, r := range jwtReasons {
		words = append(words, "token is not a valid JWT: "+r, fieldToken+" is not a valid JWT: "+r)
	}
	return strings.Join(words, `"`)
}()

var jwtReasons = []string{
	reasonSegments, reasonHeaderBase64, reasonHeaderJSON, reasonPayloadB64,
	reasonPayloadJSON, reasonPayloadObj, reasonExpNotNumber,
}

// syntaxMessage matches every message a *SyntaxError can have. Group 1 is
// the quoted cookie name, the only input text an error may show.
var (
	syntaxMessage = regexp.MustCompile(`^invalid cookie string: (?:` +
		`empty|not valid UTF-8|no cookies found|longer than ` + strconv.Itoa(maxLen>>10) + ` KiB|` +
		`segment [1-9][0-9]* has no '='|` +
		`segment [1-9][0-9]* has an empty name|` +
		`segment [1-9][0-9]* has a name containing whitespace, a control character or a separator|` +
		`value of (?:the cookie in segment [1-9][0-9]*|(".*")) contains a control character)$`)
	segmentNumber = regexp.MustCompile(`segment ([0-9]+)`)
)

// checkSyntaxError checks that err is a *SyntaxError whose message is one
// of the fixed forms, and returns the cookie name it shows, if any. A shown
// name must be a valid name from the input that does not look like a secret.
func checkSyntaxError(t *testing.T, s string, err error) (displayed string) {
	t.Helper()
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("Parse(%q) error %T %v, want *SyntaxError", s, err, err)
	}
	msg := err.Error()
	m := syntaxMessage.FindStringSubmatch(msg)
	if m == nil {
		t.Fatalf("Parse(%q) error has an unexpected form: %q", s, msg)
	}
	if m[1] != "" {
		name, uerr := strconv.Unquote(m[1])
		if uerr != nil {
			t.Fatalf("error %q quotes a name badly: %v", msg, uerr)
		}
		if !validName(name) || !strings.Contains(s, name) {
			t.Fatalf("error %q names %q, which is not a cookie name in the input", msg, name)
		}
		if secretValue(name) {
			t.Fatalf("error %q shows a name that looks like a token", msg)
		}
		displayed = name
	}
	if sm := segmentNumber.FindStringSubmatch(msg); sm != nil {
		n, _ := strconv.Atoi(sm[1])
		if segments := strings.Count(s, ";") + 1; n > segments {
			t.Fatalf("error %q names segment %d of %d", msg, n, segments)
		}
	}
	return displayed
}

// explained reports whether fragment, found in an error message, is
// accounted for by fixed error text or by the cookie name the message
// shows. It is only meaningful for fragments without spaces, double quotes
// or backslashes: those cannot straddle a boundary between fixed text and
// the quoted name, so such a fragment lies wholly inside one of them.
func explained(fragment, displayed string) bool {
	return strings.Contains(errorVocabulary, fragment) ||
		displayed != "" && strings.Contains(strconv.Quote(displayed), fragment)
}

// leakCheckable reports whether explained can judge fragment; see there.
// Real tokens (base64url, dots) always qualify. Fragments that do not are
// still covered by the exact message forms and the masking check.
func leakCheckable(fragment string) bool {
	return !strings.ContainsAny(fragment, ` "\`)
}

// valueTexts returns the text of every value in s, as typed: what follows
// the first '=' of each segment, or the whole segment when it has none
// (a token pasted without its name).
func valueTexts(s string) []string {
	var values []string
	for seg := range strings.SplitSeq(s, ";") {
		if _, v, ok := strings.Cut(seg, "="); ok {
			values = append(values, v)
		} else {
			values = append(values, seg)
		}
	}
	return values
}

// checkNoValueLeak fails if msg contains a fragment of leakWindow bytes of
// any value in s that neither fixed error text nor the displayed cookie
// name accounts for. Checking every window of exactly leakWindow bytes
// covers every longer fragment too.
func checkNoValueLeak(t *testing.T, s, msg, displayed string) {
	t.Helper()
	for _, v := range valueTexts(s) {
		for i := 0; i+leakWindow <= len(v); i++ {
			w := v[i : i+leakWindow]
			if leakCheckable(w) && strings.Contains(msg, w) && !explained(w, displayed) {
				t.Fatalf("error %q for input %q leaks value fragment %q", msg, s, w)
			}
		}
	}
}

// checkMalformedTokenError checks that err is a *MalformedTokenError for
// field with a fixed reason and the documented message.
func checkMalformedTokenError(t *testing.T, err error, field string) *MalformedTokenError {
	t.Helper()
	var mt *MalformedTokenError
	if !errors.As(err, &mt) {
		t.Fatalf("error %T %v, want *MalformedTokenError", err, err)
	}
	if mt.Field != field {
		t.Fatalf("MalformedTokenError.Field = %q, want %q", mt.Field, field)
	}
	if !slices.Contains(jwtReasons, mt.Reason) {
		t.Fatalf("MalformedTokenError.Reason %q is not a fixed phrase", mt.Reason)
	}
	name := field
	if name == "" {
		name = "token"
	}
	if want := name + " is not a valid JWT: " + mt.Reason; err.Error() != want {
		t.Fatalf("error = %q, want %q", err.Error(), want)
	}
	return mt
}

// checkLTXError checks a ParseLTX error against the cause Parse and
// DecodeJWT report, and that it does not quote lt_token.
func checkLTXError(t *testing.T, s string, err error) {
	t.Helper()
	msg := err.Error()
	var displayed string
	var (
		se *SyntaxError
		mf *MissingFieldsError
		mt *MalformedTokenError
	)
	switch {
	case errors.As(err, &se):
		displayed = checkSyntaxError(t, s, err)
		checkNoValueLeak(t, s, msg, displayed)
		if _, perr := Parse(s); perr == nil || perr.Error() != msg {
			t.Fatalf("ParseLTX syntax error %q, but Parse says %v", msg, perr)
		}
	case errors.As(err, &mf):
		j, perr := Parse(s)
		if perr != nil {
			t.Fatalf("ParseLTX reports missing fields for unparsable %q", s)
		}
		var want []string
		for _, field := range []string{fieldToken, fieldRefreshToken} {
			if v, _ := j.Get(field); v == "" {
				want = append(want, field)
			}
		}
		if !slices.Equal(mf.Fields, want) {
			t.Fatalf("MissingFieldsError.Fields = %q, want %q", mf.Fields, want)
		}
		if exp := "Missing required cookie fields: " + strings.Join(want, " | "); msg != exp {
			t.Fatalf("error = %q, want %q", msg, exp)
		}
	case errors.As(err, &mt):
		checkMalformedTokenError(t, err, fieldToken)
		j, perr := Parse(s)
		if perr != nil {
			t.Fatalf("ParseLTX reports a malformed token for unparsable %q", s)
		}
		token, _ := j.Get(fieldToken)
		_, derr := DecodeJWT(token)
		var dmt *MalformedTokenError
		if !errors.As(derr, &dmt) || dmt.Reason != mt.Reason {
			t.Fatalf("ParseLTX reason %q, but DecodeJWT(lt_token) = %v", mt.Reason, derr)
		}
	default:
		t.Fatalf("ParseLTX(%q) error %T %v is not one of the documented types", s, err, err)
	}
	for _, v := range ltTokenValues(s) {
		if len(v) >= leakWindow && leakCheckable(v) && strings.Contains(msg, v) && !explained(v, displayed) {
			t.Fatalf("ParseLTX error %q quotes the lt_token value %q", msg, v)
		}
	}
}

// ltTokenValues returns every value given for lt_token in s, both as typed
// and with whitespace and one pair of quotes removed, whether or not s
// parses.
func ltTokenValues(s string) []string {
	var values []string
	for seg := range strings.SplitSeq(s, ";") {
		name, v, ok := strings.Cut(seg, "=")
		if !ok {
			continue
		}
		name = strings.Trim(name, cookieSpace)
		if name != fieldToken && trimCookiePrefix(name) != fieldToken {
			continue
		}
		values = append(values, v, unquote(strings.Trim(v, cookieSpace)))
	}
	return values
}

// checkExpiry checks that an expiry is zero or a UTC time in [epoch,
// maxExpiry] that survives a JSON round trip.
func checkExpiry(t *testing.T, exp time.Time) {
	t.Helper()
	b, err := json.Marshal(exp)
	if err != nil {
		t.Fatalf("expiry %v does not marshal to JSON: %v", exp, err)
	}
	var back time.Time
	if err := json.Unmarshal(b, &back); err != nil || !back.Equal(exp) {
		t.Fatalf("expiry %v JSON round trip gave %v, %v", exp, back, err)
	}
	if exp.IsZero() {
		return
	}
	if y := exp.Year(); y < 1 || y > 9999 {
		t.Fatalf("expiry %v has year %d outside 1..9999", exp, y)
	}
	if exp.Location() != time.UTC {
		t.Errorf("expiry %v is not UTC", exp)
	}
	if exp.Before(time.Unix(0, 0)) || exp.After(maxExpiry) {
		t.Errorf("expiry %v is outside [epoch, %v]", exp, maxExpiry)
	}
}
