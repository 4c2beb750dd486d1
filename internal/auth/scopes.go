package auth

import (
	"slices"
	"time"

	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/tenant"
)

// Scopes a key can hold. ScopeAll grants every other scope.
const (
	ScopeAll           = "*"
	ScopeAccountsRead  = "accounts:read"
	ScopeAccountsWrite = "accounts:write"
	ScopeJobsRead      = "jobs:read"
	ScopeJobsWrite     = "jobs:write"
	ScopeKeysAdmin     = "keys:admin"
	ScopeAlertsRead    = "alerts:read"
	ScopeAlertsWrite   = "alerts:write"
)

// AllScopes lists every scope a key may be given, in display order.
var AllScopes = []string{
	ScopeAll, ScopeAccountsRead, ScopeAccountsWrite, ScopeJobsRead,
	ScopeJobsWrite, ScopeKeysAdmin, ScopeAlertsRead, ScopeAlertsWrite,
}

// ValidateScopes checks that every scope is known, and returns them sorted
// and without duplicates. An empty list means ScopeAll.
func ValidateScopes(scopes []string) ([]string, error) {
	if len(scopes) == 0 {
		return []string{ScopeAll}, nil
	}
	out := slices.Clone(scopes)
	for _, s := range out {
		if !slices.Contains(AllScopes, s) {
			return nil, errs.Invalid("unknown_scope", "unknown scope %q; known scopes: %v", s, AllScopes)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Principal is who a verified key speaks for.
type Principal struct {
	tenant.Scope
	KeyID     string
	Scopes    []string
	RateLimit *RateLimit // the key's own limit; nil: the server default
	ExpiresAt *time.Time // when the key stops working (expiry or end of a roll's grace); nil: never
}

// Has reports whether p holds scope, directly or through ScopeAll.
func (p Principal) Has(scope string) bool {
	return slices.Contains(p.Scopes, ScopeAll) || slices.Contains(p.Scopes, scope)
}

// Require returns a 403 naming scope unless p holds it.
func (p Principal) Require(scope string) error {
	if p.Has(scope) {
		return nil
	}
	return &errs.Error{
		Kind:    errs.KindForbidden,
		Code:    "insufficient_scope",
		Message: "this API key lacks the scope " + scope,
		Details: map[string]string{"requiredScope": scope},
	}
}
