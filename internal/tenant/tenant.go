// Package tenant names the boundary every query is scoped to: a tenant and
// one of its two modes. Live and test mode are separate pools (like Stripe's
// test mode), so a test key can never see or touch a live account or job.
package tenant

// Mode is the pool a key works in.
type Mode string

// The two modes.
const (
	Live Mode = "live"
	Test Mode = "test"
)

// Valid reports whether m is a known mode.
func (m Mode) Valid() bool { return m == Live || m == Test }

// Scope is what every domain query filters on. Its zero value matches
// nothing, so a forgotten scope fails closed.
type Scope struct {
	TenantID int64
	Mode     Mode
}
