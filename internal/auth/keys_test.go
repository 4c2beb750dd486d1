package auth

import (
	"strings"
	"testing"

	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/tenant"
)

func TestNewSecretParses(t *testing.T) {
	for _, mode := range []tenant.Mode{tenant.Live, tenant.Test} {
		seen := map[string]bool{}
		for range 1000 {
			k := NewSecret(mode)
			if !strings.HasPrefix(k, "pgk_"+string(mode)+"_") {
				t.Fatalf("key %q lacks its mode prefix", k)
			}
			got, ok := ParseSecret(k)
			if !ok || got != mode {
				t.Fatalf("ParseSecret(fresh %s key) = %q, %v", mode, got, ok)
			}
			if seen[k] {
				t.Fatal("duplicate key")
			}
			seen[k] = true
			if s := Start(k); s != k[:len("pgk_"+string(mode)+"_")+startLen] {
				t.Fatalf("Start(%q) = %q", k, s)
			}
		}
	}
}

func TestParseSecretRejectsTyposAndForgeries(t *testing.T) {
	good := NewSecret(tenant.Live)
	flip := func(i int) string {
		b := []byte(good)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	cases := map[string]string{
		"empty":              "",
		"prefix only":        "pgk_live_",
		"unknown mode":       strings.Replace(good, "_live_", "_prod_", 1),
		"short":              good[:len(good)-1],
		"long":               good + "x",
		"typo in random":     flip(12),
		"typo in checksum":   flip(len(good) - 1),
		"non-base62":         good[:12] + "-" + good[13:],
		"other product":      "sk_live_" + good[9:],
		"whitespace trailer": good + " ",
	}
	for name, k := range cases {
		t.Run(name, func(t *testing.T) {
			if _, ok := ParseSecret(k); ok {
				t.Fatalf("ParseSecret accepted %q", k)
			}
		})
	}
}

func TestBearerToken(t *testing.T) {
	cases := []struct {
		header, key, code string
	}{
		{"Bearer abc", "abc", ""},
		{"bearer abc", "abc", ""},
		{"BEARER abc", "abc", ""},
		{"", "", "missing_api_key"},
		{"Bearer", "", "malformed_authorization_header"},
		{"Bearer ", "", "malformed_authorization_header"},
		{"Bearer: abc", "", "malformed_authorization_header"},
		{"Bearer  abc", "", "malformed_authorization_header"},
		{"Bearer abc ", "", "malformed_authorization_header"},
		{"Bearer a bc", "", "malformed_authorization_header"},
		{"Bearer\tabc", "", "malformed_authorization_header"},
		{"Basic dXNlcjpwYXNz", "", "malformed_authorization_header"},
		{"Token abc", "", "malformed_authorization_header"},
	}
	for _, c := range cases {
		t.Run(c.header, func(t *testing.T) {
			key, err := BearerToken(c.header)
			if c.code == "" {
				if err != nil || key != c.key {
					t.Fatalf("BearerToken(%q) = %q, %v; want %q", c.header, key, err, c.key)
				}
				return
			}
			if !errs.Is(err, c.code) {
				t.Fatalf("BearerToken(%q) error = %v; want code %s", c.header, err, c.code)
			}
			if strings.Contains(err.Error(), "abc") {
				t.Fatalf("error %q quotes the presented key", err)
			}
		})
	}
}
