package cookies

import (
	"maps"
	"testing"
)

func TestMasked(t *testing.T) {
	t.Parallel()
	jwt := makeJWT(`{"sub":"u1"}`)
	tests := []struct {
		name  string
		input string
		want  map[string]string
	}{
		{"secrets by name and plain values",
			"lt_id=user123; lt_token=" + jwt + "; lt_refresh_token=r; lang=en",
			map[string]string{"lt_id": "user123", "lt_token": Secured, "lt_refresh_token": Secured, "lang": "en"}},
		{"secret by value",
			"blob=" + jwt,
			map[string]string{"blob": Secured}},
		{"copy of an opaque refresh token under another name",
			"lt_refresh_token=opaque-refresh-1; state=v1:opaque-refresh-1",
			map[string]string{"lt_refresh_token": Secured, "state": Secured}},
		{"copy of a short JWT under another name",
			"a=e30.e30.; lt_token=e30.e30.",
			map[string]string{"a": Secured, "lt_token": Secured}},
		{"secrets under 8 bytes hide only their own cookie",
			"session=1; lt_id=1; sid=abc; theme=abc",
			map[string]string{"session": Secured, "lt_id": "1", "sid": Secured, "theme": "abc"}},
		// The outside review found these shown in clear by a deny-list of
		// secret-looking names; only known-harmless cookies are shown now.
		{"unknown names are hidden, however innocent they look",
			"credential=c1; pass=p1; otp=123456; remember_me=1; cf_clearance=x.y; __cf_bm=b; sig=s; hmac=h; x=abc; lt_id=u1; Theme=dark",
			map[string]string{"credential": Secured, "pass": Secured, "otp": Secured, "remember_me": Secured,
				"cf_clearance": Secured, "__cf_bm": Secured, "sig": Secured, "hmac": Secured, "x": Secured,
				"lt_id": "u1", "Theme": "dark"}},
		{"a harmless name with a token-like value is hidden",
			"lt_id=" + jwt,
			map[string]string{"lt_id": Secured}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			j, err := Parse(tt.input)
			if err != nil {
				t.Fatal(err)
			}
			if got := j.Masked(); !maps.Equal(got, tt.want) {
				t.Errorf("Masked() = %q, want %q", got, tt.want)
			}
		})
	}
}
