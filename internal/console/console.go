// Package console is the operator console served at /console: server-rendered
// pages over the same domain services the API uses. It holds no SQL and no
// business rules; every action runs with exactly the tenant, mode and scopes
// of the API key the operator signed in with, re-verified on every request.
package console

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/alerts"
	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/scheduler"
	"github.com/poolgate/poolgate/internal/tenant"
	"github.com/poolgate/poolgate/internal/usage"
	"github.com/poolgate/poolgate/internal/webhooks"
)

// Prefix is where the console is mounted.
const Prefix = "/console"

// Verifier checks an API key (an *auth.Cache or *auth.Store).
type Verifier interface {
	Verify(ctx context.Context, secret string) (auth.Principal, error)
}

// Sessions keeps signed-in browsers (an *auth.SessionStore).
type Sessions interface {
	Create(ctx context.Context, p auth.Principal, key string) (string, auth.Session, error)
	Get(ctx context.Context, token string) (auth.Session, error)
	Delete(ctx context.Context, token string) error
}

// AccountsService is the account pool (an *accounts.Store).
type AccountsService interface {
	Overview(ctx context.Context, scope tenant.Scope) ([]accounts.Account, error)
	Register(ctx context.Context, scope tenant.Scope, r accounts.Registration) (accounts.Account, error)
	Update(ctx context.Context, scope tenant.Scope, email string, p accounts.Patch) (accounts.Account, error)
	Delete(ctx context.Context, scope tenant.Scope, email string) error
}

// JobsService is the job queue (a *scheduler.Scheduler).
type JobsService interface {
	List(ctx context.Context, scope tenant.Scope, f scheduler.ListFilter) ([]scheduler.Job, string, error)
	Get(ctx context.Context, scope tenant.Scope, id string) (scheduler.Job, error)
	Cancel(ctx context.Context, scope tenant.Scope, id string) (scheduler.Job, error)
	Available(ctx context.Context, scope tenant.Scope) (scheduler.Availability, error)
}

// StatsService reads job flow for the Live page (a *scheduler.Stats).
type StatsService interface {
	QueueDepth(ctx context.Context, scope tenant.Scope) (int, error)
	Activity(ctx context.Context, scope tenant.Scope, now time.Time, minutes int) ([]scheduler.Minute, error)
}

// AlertsService is the alert store (an *alerts.Store).
type AlertsService interface {
	List(ctx context.Context, scope tenant.Scope, f alerts.Filter) ([]alerts.Alert, string, error)
	Ack(ctx context.Context, scope tenant.Scope, id string) (alerts.Alert, error)
	Destination(ctx context.Context, scope tenant.Scope) (*alerts.Destination, error)
	SetDestination(ctx context.Context, scope tenant.Scope, d alerts.Destination) (alerts.Destination, error)
	SendTest(ctx context.Context, scope tenant.Scope) (string, error)
}

// KeysService manages API keys (an *auth.Store).
type KeysService interface {
	List(ctx context.Context, caller auth.Principal) ([]auth.Key, error)
	Create(ctx context.Context, caller auth.Principal, p auth.KeyParams) (auth.Key, string, error)
	Roll(ctx context.Context, caller auth.Principal, id string, grace time.Duration) (auth.Key, string, error)
	Revoke(ctx context.Context, caller auth.Principal, id string) error
	UsageReport(ctx context.Context, caller auth.Principal, id string, days int) (auth.UsageReport, error)
}

// UsageService reads per-account usage for the Pool page (a *usage.Store).
type UsageService interface {
	Usage(ctx context.Context, scope tenant.Scope, rg usage.Range, by usage.GroupBy, account string) ([]usage.Group, error)
}

// DeliveriesService reads a job's webhook deliveries (a *webhooks.DeliveryLog).
type DeliveriesService interface {
	ForJob(ctx context.Context, tenantID int64, replyURL, jobID string) ([]webhooks.Delivery, error)
}

// Deps are what the console needs from the rest of poolgate.
type Deps struct {
	Logger   *slog.Logger
	Verifier Verifier
	Sessions Sessions
	Accounts AccountsService
	Jobs     JobsService
	Stats    StatsService
	Alerts   AlertsService
	Keys     KeysService
	// Deliveries, if set, lists a job's webhook deliveries on its page.
	Deliveries DeliveriesService
	// Usage, if set, shows each account's last 24 hours on the Pool page.
	Usage UsageService
	// ExpiringWithin highlights refresh tokens that expire this soon (the
	// largest alert threshold); 0 means 7 days.
	ExpiringWithin time.Duration
	// ChartTTL is how long a tenant's Live chart data is reused; 0 means
	// 10 seconds, a negative value reads it afresh every time.
	ChartTTL time.Duration
	// Now is the clock pages are rendered by; nil means time.Now.
	Now func() time.Time
}

// Console serves the operator console.
type Console struct {
	Deps
	pages *pages
	mux   *http.ServeMux
	acts  activityCache
}

// New returns the console's handler; mount it at Prefix and Prefix+"/".
func New(d Deps) *Console {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.ExpiringWithin == 0 {
		d.ExpiringWithin = 7 * 24 * time.Hour
	}
	if d.ChartTTL == 0 {
		d.ChartTTL = defaultChartTTL
	}
	c := &Console{Deps: d, pages: mustParsePages(), mux: http.NewServeMux(),
		acts: activityCache{m: map[tenant.Scope]activityEntry{}}}
	c.routes()
	return c
}

// routes lists the console's whole surface. Every POST is a state change
// and needs the session's CSRF token.
func (c *Console) routes() {
	m := c.mux
	m.HandleFunc("GET "+Prefix+"/static/{file}", c.static)
	m.HandleFunc("GET "+Prefix+"/signin", c.signInPage)
	m.HandleFunc("POST "+Prefix+"/signin", c.signIn)
	m.Handle("POST "+Prefix+"/signout", c.session("", c.signOut))
	m.Handle("GET "+Prefix+"/{$}", c.session("", c.home))
	m.Handle("GET "+Prefix, c.session("", c.home))

	m.Handle("GET "+Prefix+"/pool", c.session(auth.ScopeAccountsRead, c.poolPage))
	m.Handle("POST "+Prefix+"/pool/register", c.session(auth.ScopeAccountsWrite, c.registerAccount))
	m.Handle("POST "+Prefix+"/pool/update", c.session(auth.ScopeAccountsWrite, c.updateAccount))
	m.Handle("POST "+Prefix+"/pool/delete", c.session(auth.ScopeAccountsWrite, c.deleteAccount))

	m.Handle("GET "+Prefix+"/live", c.session(auth.ScopeJobsRead, c.livePage))
	m.Handle("GET "+Prefix+"/live.json", c.session(auth.ScopeJobsRead, c.liveJSON))
	m.Handle("GET "+Prefix+"/live/chart.svg", c.session(auth.ScopeJobsRead, c.liveChart))

	m.Handle("GET "+Prefix+"/jobs", c.session(auth.ScopeJobsRead, c.jobsPage))
	m.Handle("GET "+Prefix+"/jobs/{id}", c.session(auth.ScopeJobsRead, c.jobPage))
	m.Handle("POST "+Prefix+"/jobs/cancel", c.session(auth.ScopeJobsWrite, c.cancelJob))

	m.Handle("GET "+Prefix+"/alerts", c.session(auth.ScopeAlertsRead, c.alertsPage))
	m.Handle("POST "+Prefix+"/alerts/ack", c.session(auth.ScopeAlertsWrite, c.ackAlert))
	m.Handle("POST "+Prefix+"/alerts/config", c.session(auth.ScopeAlertsWrite, c.setAlertConfig))
	m.Handle("POST "+Prefix+"/alerts/test", c.session(auth.ScopeAlertsWrite, c.testAlert))

	m.Handle("GET "+Prefix+"/keys", c.session(auth.ScopeKeysAdmin, c.keysPage))
	m.Handle("POST "+Prefix+"/keys/create", c.session(auth.ScopeKeysAdmin, c.createKey))
	m.Handle("POST "+Prefix+"/keys/roll", c.session(auth.ScopeKeysAdmin, c.rollKey))
	m.Handle("POST "+Prefix+"/keys/revoke", c.session(auth.ScopeKeysAdmin, c.revokeKey))

	m.HandleFunc(Prefix+"/", c.notFound)
}

// ServeHTTP sets the headers every console answer carries, then routes.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// No inline script or style anywhere: every asset is a same-origin file.
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	c.mux.ServeHTTP(w, r)
}

// DefaultTimeouts end a console session after 30 idle minutes, and after
// 12 hours whatever the activity: an operator signs in about once a day.
var DefaultTimeouts = auth.SessionTimeouts{Idle: 30 * time.Minute, Max: 12 * time.Hour}
