package provider

import "context"

// Set is the upstreams poolgate speaks, by name (NameLTXStudio, NameLTXAPI).
// It is itself a Provider: each call goes to the provider of the account it
// runs as, so whatever takes one Provider (the scheduler, the refresher, a
// prober) serves a pool of mixed accounts.
type Set map[string]Provider

var _ Provider = Set(nil)

// For returns the provider of a's accounts. One the set lacks answers every
// call with a ClassAuth error naming it: the account leaves rotation with a
// reason that says what to configure, and its jobs run elsewhere.
func (s Set) For(a Account) Provider {
	if p, ok := s[a.ProviderName()]; ok {
		return p
	}
	return missing(a.ProviderName())
}

// Submit implements Provider.
func (s Set) Submit(ctx context.Context, a Account, sub Submission) (Status, error) {
	return s.For(a).Submit(ctx, a, sub)
}

// Status implements Provider.
func (s Set) Status(ctx context.Context, a Account, upstreamID string) (Status, error) {
	return s.For(a).Status(ctx, a, upstreamID)
}

// Lookup implements Provider.
func (s Set) Lookup(ctx context.Context, a Account, idempotencyKey string) (Status, bool, error) {
	return s.For(a).Lookup(ctx, a, idempotencyKey)
}

// Cancel implements Provider.
func (s Set) Cancel(ctx context.Context, a Account, upstreamID string) error {
	return s.For(a).Cancel(ctx, a, upstreamID)
}

// Refresh implements Provider.
func (s Set) Refresh(ctx context.Context, a Account) (Tokens, error) {
	return s.For(a).Refresh(ctx, a)
}

// Probe implements Provider.
func (s Set) Probe(ctx context.Context, a Account) error {
	return s.For(a).Probe(ctx, a)
}

// missing stands for a provider a Set lacks.
type missing string

func (m missing) err() error {
	return &Error{Class: ClassAuth, Message: "provider " + string(m) + " is not configured on this replica"}
}

func (m missing) Submit(context.Context, Account, Submission) (Status, error) {
	return Status{}, m.err()
}
func (m missing) Status(context.Context, Account, string) (Status, error) { return Status{}, m.err() }
func (m missing) Lookup(context.Context, Account, string) (Status, bool, error) {
	return Status{}, false, m.err()
}
func (m missing) Cancel(context.Context, Account, string) error    { return m.err() }
func (m missing) Refresh(context.Context, Account) (Tokens, error) { return Tokens{}, m.err() }
func (m missing) Probe(context.Context, Account) error             { return m.err() }
