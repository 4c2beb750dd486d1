package provider_test

import (
	"context"
	"strings"
	"testing"

	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/ltxapi"
	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
	"github.com/poolgate/poolgate/internal/results/resultstest"
)

// A Set sends each call to the account's provider, and one it lacks takes
// the account out of rotation with a reason instead of failing obscurely.
func TestSetDispatchesByAccountProvider(t *testing.T) {
	studio := ltxstudio.New("http://127.0.0.1:1", nil)
	set := provider.Set{provider.NameLTXStudio: studio}
	if set.For(provider.Account{Email: "a@x.io"}) != studio {
		t.Fatal("an account without a provider is not LTX Studio's")
	}
	key := provider.Account{Email: "k", Provider: provider.NameLTXAPI, APIKey: "ltxv_x"}
	_, err := set.Submit(context.Background(), key, provider.Submission{JobID: "j"})
	if provider.ClassOf(err) != provider.ClassAuth || !strings.Contains(err.Error(), "ltx-api is not configured") {
		t.Fatalf("missing provider: err = %v, want ClassAuth naming it", err)
	}
	set[provider.NameLTXAPI] = ltxapi.New("http://127.0.0.1:1", resultstest.Dir(t, t.TempDir()), nil)
	if _, _, err := set.Lookup(context.Background(), key, "j/1"); err != provider.ErrNoLookup {
		t.Fatalf("Lookup through the set: %v, want the ltx-api adapter's ErrNoLookup", err)
	}
}
