package cookies

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestParseAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		input string
		want  []Pair
	}{
		{"devtools copy", "lt_id=user123; lt_token=eyJ.a.b; lt_refresh_token=abc123",
			[]Pair{{"lt_id", "user123"}, {"lt_token", "eyJ.a.b"}, {"lt_refresh_token", "abc123"}}},
		{"single pair", "a=1", []Pair{{"a", "1"}}},
		{"no space after semicolon", "a=1;b=2", []Pair{{"a", "1"}, {"b", "2"}}},
		{"spaces tabs and newlines around pairs", " \t a=1 ;\n\tb=2\r\n", []Pair{{"a", "1"}, {"b", "2"}}},
		{"whitespace around equals", "a = 1; b\t=\t2", []Pair{{"a", "1"}, {"b", "2"}}},
		{"cookie prefix", "Cookie: a=1; b=2", []Pair{{"a", "1"}, {"b", "2"}}},
		{"cookie prefix lower case without space", "cookie:a=1", []Pair{{"a", "1"}}},
		{"cookie prefix upper case with tabs", "  COOKIE:\t\ta=1", []Pair{{"a", "1"}}},
		{"trailing semicolon", "a=1; b=2;", []Pair{{"a", "1"}, {"b", "2"}}},
		{"empty segments", "a=1;; ;b=2;;", []Pair{{"a", "1"}, {"b", "2"}}},
		{"leading semicolon", "; a=1", []Pair{{"a", "1"}}},
		{"quoted value", `a="v"`, []Pair{{"a", "v"}}},
		{"quoted value keeps inner spaces", `a=" v w "`, []Pair{{"a", " v w "}}},
		{"only one pair of quotes is removed", `a=""v""`, []Pair{{"a", `"v"`}}},
		{"lone quote stays", `a="`, []Pair{{"a", `"`}}},
		{"unbalanced quote stays", `a="v`, []Pair{{"a", `"v`}}},
		{"empty quoted value", `a=""`, []Pair{{"a", ""}}},
		{"empty value", "a=; b=2", []Pair{{"a", ""}, {"b", "2"}}},
		{"value containing equals", "a=b=c==", []Pair{{"a", "b=c=="}}},
		{"value with inner space", "a=x y", []Pair{{"a", "x y"}}},
		{"unicode value", "a=héllo☃", []Pair{{"a", "héllo☃"}}},
		{"duplicate name last value first position", "a=1; b=2; a=3", []Pair{{"a", "3"}, {"b", "2"}}},
		{"names are case-sensitive", "a=1; A=2", []Pair{{"a", "1"}, {"A", "2"}}},
		{"name with allowed punctuation", "__Host-x.y_z!#$%&'*+^`|~=1", []Pair{{"__Host-x.y_z!#$%&'*+^`|~", "1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			j, err := Parse(tt.input)
			if err != nil {
				t.Fatalf("Parse(%q) rejected a valid cookie string: %v", tt.input, err)
			}
			if got := j.Pairs(); !slices.Equal(got, tt.want) {
				t.Errorf("Parse(%q) pairs = %q, want %q", tt.input, got, tt.want)
			}
			assertRoundTrip(t, j)
		})
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		input   string
		wantMsg string
	}{
		{"empty input", "", "invalid cookie string: empty"},
		{"whitespace only", " \t\n", "invalid cookie string: empty"},
		{"prefix only", "Cookie: ", "invalid cookie string: empty"},
		{"only separators", " ; ;; ", "invalid cookie string: no cookies found"},
		{"segment without equals", "abc", "invalid cookie string: segment 1 has no '='"},
		{"later segment without equals", "a=1; b", "invalid cookie string: segment 2 has no '='"},
		{"empty name", "=v", "invalid cookie string: segment 1 has an empty name"},
		{"blank name", "a=1; \t=v", "invalid cookie string: segment 2 has an empty name"},
		{"name with space", "a b=1", "segment 1 has a name containing whitespace"},
		{"name with non-breaking space", "a\u00a0b=1", "segment 1 has a name containing whitespace"},
		{"name with control character", "a\x01b=1", "segment 1 has a name containing whitespace"},
		{"name with DEL", "a\x7f=1", "segment 1 has a name containing whitespace"},
		{"value with control character", "a=1\x02", `invalid cookie string: value of "a" contains a control character`},
		{"value with DEL", "a=x\x7fy", `value of "a" contains a control character`},
		{"value with inner tab", "a=x\ty", `value of "a" contains a control character`},
		{"value with inner newline", "a=1\nb=2", `value of "a" contains a control character`},
		{"invalid UTF-8", "a=\xff", "invalid cookie string: not valid UTF-8"},
		{"longer than 16 KiB", "a=" + strings.Repeat("x", maxLen-1), "invalid cookie string: longer than 16 KiB"},
	}
	for _, r := range nameSeparators {
		if r == ';' || r == '=' { // these split segments and pairs instead
			continue
		}
		tests = append(tests, struct {
			name    string
			input   string
			wantMsg string
		}{"name with separator " + string(r), "a" + string(r) + "b=1", "segment 1 has a name containing"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			j, err := Parse(tt.input)
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) = %q, %v; want a *SyntaxError", tt.input, j.String(), err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Parse(%q) error = %q, want it to contain %q", tt.input, err, tt.wantMsg)
			}
		})
	}
}

func TestParseLengthLimit(t *testing.T) {
	t.Parallel()
	t.Run("exactly 16 KiB is accepted", func(t *testing.T) {
		t.Parallel()
		input := "a=" + strings.Repeat("x", maxLen-2)
		if _, err := Parse(input); err != nil {
			t.Fatalf("Parse of a %d-byte string: %v", len(input), err)
		}
	})
	t.Run("input whose canonical form would exceed 16 KiB is rejected", func(t *testing.T) {
		t.Parallel()
		// "a=1;" grows to "a=1; " in canonical form, so this input fits but
		// its String would not parse back.
		var b strings.Builder
		for i := 0; b.Len() < maxLen-16; i++ {
			fmt.Fprintf(&b, "c%06d=1;", i)
		}
		input := b.String()
		if len(input) > maxLen {
			t.Fatalf("test input is %d bytes, want <= %d", len(input), maxLen)
		}
		_, err := Parse(input)
		var se *SyntaxError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), "longer than 16 KiB") {
			t.Fatalf("Parse = %v, want a length SyntaxError", err)
		}
	})
}

func TestJarString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		pairs []Pair
		want  string
	}{
		{"plain values", []Pair{{"a", "1"}, {"b", "2"}}, "a=1; b=2"},
		{"empty value", []Pair{{"a", ""}}, "a="},
		{"value with equals stays bare", []Pair{{"a", "b=c"}}, "a=b=c"},
		{"inner space is quoted", []Pair{{"a", "x y"}}, `a="x y"`},
		{"comma is quoted", []Pair{{"a", "x,y"}}, `a="x,y"`},
		{"leading space is quoted", []Pair{{"a", " x"}}, `a=" x"`},
		{"value wrapped in quotes is quoted again", []Pair{{"a", `"x"`}}, `a=""x""`},
		{"lone quote stays bare", []Pair{{"a", `"`}}, `a="`},
		{"inner quote stays bare", []Pair{{"a", `x"y`}}, `a=x"y`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var j Jar
			for _, p := range tt.pairs {
				j = j.With(p.Name, p.Value)
			}
			if got := j.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			assertRoundTrip(t, j)
		})
	}
}

// assertRoundTrip checks that j's canonical form parses back to j.
func assertRoundTrip(t *testing.T, j Jar) {
	t.Helper()
	back, err := Parse(j.String())
	if err != nil {
		t.Fatalf("Parse(String()) of %q failed: %v", j.String(), err)
	}
	if !slices.Equal(back.Pairs(), j.Pairs()) {
		t.Errorf("round trip changed the jar: %q became %q", j.Pairs(), back.Pairs())
	}
}

func TestJarGet(t *testing.T) {
	t.Parallel()
	j, err := Parse("lt_id=user123; empty=")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		key       string
		wantValue string
		wantOK    bool
	}{
		{"present", "lt_id", "user123", true},
		{"present but empty", "empty", "", true},
		{"absent", "lt_token", "", false},
		{"lookup is case-sensitive", "LT_ID", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, ok := j.Get(tt.key)
			if v != tt.wantValue || ok != tt.wantOK {
				t.Errorf("Get(%q) = %q, %v; want %q, %v", tt.key, v, ok, tt.wantValue, tt.wantOK)
			}
		})
	}
}

func TestJarWith(t *testing.T) {
	t.Parallel()
	orig, err := Parse("a=1; lt_token=old; b=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("replaces in place", func(t *testing.T) {
		t.Parallel()
		got := orig.With("lt_token", "new").Pairs()
		want := []Pair{{"a", "1"}, {"lt_token", "new"}, {"b", "2"}}
		if !slices.Equal(got, want) {
			t.Errorf("With = %q, want %q", got, want)
		}
	})
	t.Run("appends a new name", func(t *testing.T) {
		t.Parallel()
		got := orig.With("c", "3").Pairs()
		want := []Pair{{"a", "1"}, {"lt_token", "old"}, {"b", "2"}, {"c", "3"}}
		if !slices.Equal(got, want) {
			t.Errorf("With = %q, want %q", got, want)
		}
	})
	t.Run("leaves the original unchanged", func(t *testing.T) {
		t.Parallel()
		_ = orig.With("lt_token", "new").With("d", "4")
		if got := orig.String(); got != "a=1; lt_token=old; b=2" {
			t.Errorf("original jar changed to %q", got)
		}
	})
	t.Run("works on the zero jar", func(t *testing.T) {
		t.Parallel()
		var j Jar
		if got := j.With("a", "1").String(); got != "a=1" || j.Len() != 0 {
			t.Errorf("zero Jar With = %q (zero len %d), want a=1 and an unchanged zero jar", got, j.Len())
		}
	})
}

func TestJarPairsIsACopy(t *testing.T) {
	t.Parallel()
	j, err := Parse("a=1")
	if err != nil {
		t.Fatal(err)
	}
	j.Pairs()[0].Value = "changed"
	if v, _ := j.Get("a"); v != "1" {
		t.Errorf("modifying Pairs() changed the jar: a=%q", v)
	}
}

func TestSyntaxErrorsDoNotLeakValues(t *testing.T) {
	t.Parallel()
	const marker = "SECRETMARKER"
	tests := []struct {
		name  string
		input string
	}{
		{"control character in token", "lt_token=eyJ" + marker + "\x01.x.y"},
		{"token pasted without equals", "lt_id=1; lt_token " + marker},
		{"token fragment as name with space", "lt_token: eyJ" + marker + "=="},
		{"token fragment as valid name", "eyJhbGciOiJIUzI1NiJ9" + marker + "abcdefghijklmnop=\x01"},
		{"control character in other cookie", "session=" + marker + "\x7f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(tt.input)
			if err == nil {
				t.Fatalf("Parse(%q) accepted an invalid string", tt.input)
			}
			assertNoLeak(t, err.Error(), marker)
		})
	}
}
