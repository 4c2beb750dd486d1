package api

import (
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestOpenAPIMatchesRouter keeps the document honest: every route the
// router serves is documented, and every documented operation is served.
// The operator console under /console is HTML for browsers, not part of
// the contract, and is left out explicitly.
func TestOpenAPIMatchesRouter(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.yaml does not parse: %v", err)
	}
	var documented []string
	methods := []string{"get", "put", "post", "patch", "delete", "head", "options"}
	for path, ops := range doc.Paths {
		for m := range ops {
			if slices.Contains(methods, m) {
				documented = append(documented, strings.ToUpper(m)+" "+path)
			}
		}
	}
	param := regexp.MustCompile(`:(\w+)`)
	var served []string
	srv := NewServer(Deps{Logger: slog.New(slog.DiscardHandler), Console: http.NotFoundHandler()})
	for _, r := range srv.Echo().Routes() {
		if r.Path == "/console" || strings.HasPrefix(r.Path, "/console/") {
			continue
		}
		served = append(served, r.Method+" "+param.ReplaceAllString(r.Path, "{$1}"))
	}
	slices.Sort(documented)
	slices.Sort(served)
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is served but not in openapi.yaml", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(served, r) {
			t.Errorf("openapi.yaml documents %s, which the router does not serve", r)
		}
	}
}
