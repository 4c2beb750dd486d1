package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/usage"
)

// tokenWarnWithin highlights an lt_token this close to expiry: by then the
// refresher (POOLGATE_REFRESH_LEAD, 10 minutes by default) should have
// renewed it.
const tokenWarnWithin = 10 * time.Minute

// poolPageSize bounds the rows of one Pool page, so a pool of 10,000
// accounts renders as fast as one of 100.
const poolPageSize = 100

type poolView struct {
	Rows           []accountRow
	Total          int
	Running, Slots int
	ByStatus       []statusCount
	CanWrite       bool
	Page, Pages    int
	PrevURL        string
	NextURL        string
	Query          string // the email filter
	ConfirmDelete  string // the account whose deletion awaits confirmation
	RegisterEmail  string
	RegisterMax    string
	RegisterFailed bool
	// Usage is the pool's last 24 hours; nil when usage is not wired.
	Usage *usageCell
}

// usageCell is what an account (or the pool) did over the usage window.
type usageCell struct {
	Started, Succeeded, Failed, Retried int64
	P50, P95                            string // "" when nothing succeeded
}

// usageWindow is how far back the Pool page's usage reaches.
const usageWindow = 24 * time.Hour

func newUsageCell(c usage.Counts) *usageCell {
	u := &usageCell{Started: c.Started, Succeeded: c.Succeeded, Failed: c.Failed, Retried: c.Retried}
	if d, ok := c.Generation.Quantile(0.5); ok {
		u.P50 = shortDuration(d)
	}
	if d, ok := c.Generation.Quantile(0.95); ok {
		u.P95 = shortDuration(d)
	}
	return u
}

// shortDuration is a generation time: 850ms, 3.2s, 4m 10s.
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	default:
		return fmt.Sprintf("%dm %ds", d/time.Minute, (d%time.Minute)/time.Second)
	}
}

type statusCount struct {
	Status string
	Count  int
}

type accountRow struct {
	Email               string
	Status, Reason      string
	Enabled             bool
	Running, MaxJobs    int
	Token, Refresh      countdown
	LastRefresh         *time.Time
	NextRefresh         *time.Time
	Updated             time.Time
	MaxJobsID, EnableID string     // unique ids for labels
	QuarantinedUntil    *time.Time // set while the account rests after a rate limit
	Usage               *usageCell // the last 24 hours; nil when usage is not wired
}

// countdown is a time to come, shown as "in 6d 4h" and highlighted when
// close: Class is ok, warn (within the alert threshold) or bad (passed).
type countdown struct {
	At    *time.Time
	Text  string
	Class string
}

func newCountdown(at *time.Time, now time.Time, warnWithin time.Duration) countdown {
	if at == nil {
		return countdown{Text: "unknown", Class: "none"}
	}
	d := at.Sub(now)
	switch {
	case d <= 0:
		return countdown{At: at, Text: "expired " + human(-d) + " ago", Class: "bad"}
	case d <= warnWithin:
		return countdown{At: at, Text: "in " + human(d), Class: "warn"}
	default:
		return countdown{At: at, Text: "in " + human(d), Class: "ok"}
	}
}

// human is a short duration: 6d 4h, 3h 12m, 45m, 20s.
func human(d time.Duration) string {
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd %dh", d/(24*time.Hour), (d%(24*time.Hour))/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh %dm", d/time.Hour, (d%time.Hour)/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm", d/time.Minute)
	default:
		return fmt.Sprintf("%ds", d/time.Second)
	}
}

func (c *Console) poolPage(w http.ResponseWriter, r *http.Request, rq *request) {
	q := r.URL.Query()
	v := poolView{ConfirmDelete: strings.TrimSpace(q.Get("confirm")), Query: strings.TrimSpace(q.Get("q"))}
	c.renderPool(w, r, rq, http.StatusOK, noticeOf(r), nil, v)
}

func (c *Console) renderPool(w http.ResponseWriter, r *http.Request, rq *request, status int, notice string, errors []string, v poolView) {
	list, err := c.Accounts.Overview(r.Context(), rq.p.Scope)
	if err != nil {
		c.internal(w, r, rq, err)
		return
	}
	now := c.Now()
	byAccount, err := c.recentUsage(r, rq, now, &v)
	if err != nil {
		c.internal(w, r, rq, err)
		return
	}
	counts := map[accounts.Status]int{}
	var matched []accounts.Account
	needle := strings.ToLower(v.Query)
	for _, a := range list {
		counts[a.Status]++
		v.Running += a.Running
		if a.Enabled {
			v.Slots += a.MaxJobs
		}
		if needle == "" || strings.Contains(a.Email, needle) {
			matched = append(matched, a)
		}
	}
	v.Total = len(list)
	for _, s := range []accounts.Status{accounts.StatusActive, accounts.StatusExpiring, accounts.StatusRefreshing, accounts.StatusQuarantined,
		accounts.StatusError, accounts.StatusExpired, accounts.StatusDisabled} {
		if counts[s] > 0 {
			v.ByStatus = append(v.ByStatus, statusCount{string(s), counts[s]})
		}
	}
	v.Pages = max((len(matched)+poolPageSize-1)/poolPageSize, 1)
	v.Page, _ = strconv.Atoi(r.URL.Query().Get("page"))
	v.Page = min(max(v.Page, 1), v.Pages)
	pageURL := func(p int) string {
		u := url.Values{"page": {strconv.Itoa(p)}}
		if v.Query != "" {
			u.Set("q", v.Query)
		}
		return Prefix + "/pool?" + u.Encode()
	}
	if v.Page > 1 {
		v.PrevURL = pageURL(v.Page - 1)
	}
	if v.Page < v.Pages {
		v.NextURL = pageURL(v.Page + 1)
	}
	from := (v.Page - 1) * poolPageSize
	for i, a := range matched[from:min(from+poolPageSize, len(matched))] {
		v.Rows = append(v.Rows, accountRow{
			Email: a.Email, Status: string(a.Status), Reason: a.Reason, Enabled: a.Enabled,
			Running: a.Running, MaxJobs: a.MaxJobs,
			Token:       newCountdown(a.TokenExpiresAt, now, tokenWarnWithin),
			Refresh:     newCountdown(a.RefreshTokenExpiresAt, now, c.ExpiringWithin),
			LastRefresh: a.LastRefreshAt, NextRefresh: a.NextRefreshAt, Updated: a.UpdatedAt,
			MaxJobsID: "maxjobs-" + strconv.Itoa(i), EnableID: "enable-" + strconv.Itoa(i),
		})
		if q := a.QuarantinedUntil; q != nil && q.After(now) {
			v.Rows[len(v.Rows)-1].QuarantinedUntil = q
		}
		if byAccount != nil {
			v.Rows[len(v.Rows)-1].Usage = newUsageCell(byAccount[a.Email])
		}
	}
	v.CanWrite = rq.p.Has(auth.ScopeAccountsWrite)
	c.render(w, r, rq, status, "pool", view{Title: "Pool", Notice: notice, Errors: errors, Data: v})
}

// recentUsage reads the pool's usage of the last 24 hours by account and
// sets v's summary; nil when usage is not wired.
func (c *Console) recentUsage(r *http.Request, rq *request, now time.Time, v *poolView) (map[string]usage.Counts, error) {
	if c.Usage == nil {
		return nil, nil
	}
	groups, err := c.Usage.Usage(r.Context(), rq.p.Scope, usage.Range{From: now.Add(-usageWindow), To: now}, usage.ByAccount, "")
	if err != nil {
		return nil, err
	}
	v.Usage = newUsageCell(usage.Total(groups))
	byAccount := make(map[string]usage.Counts, len(groups))
	for _, g := range groups {
		byAccount[g.Key] = g.Counts
	}
	return byAccount, nil
}

// registerAccount registers (or re-registers) an account from a pasted
// cookie string, with the API's validation and messages.
func (c *Console) registerAccount(w http.ResponseWriter, r *http.Request, rq *request) {
	reg := accounts.Registration{Cookie: r.PostFormValue("cookie"), Email: strings.TrimSpace(r.PostFormValue("email"))}
	maxJobs := strings.TrimSpace(r.PostFormValue("maxJobs"))
	again := func(status int, msgs []string) {
		c.renderPool(w, r, rq, status, "", msgs, poolView{RegisterEmail: reg.Email, RegisterMax: maxJobs, RegisterFailed: true})
	}
	var bad []errs.FieldError
	if strings.TrimSpace(reg.Cookie) == "" {
		bad = append(bad, errs.FieldError{Field: "cookie", Message: "is required: paste the cookie string from the browser"})
	}
	if maxJobs != "" {
		n, err := strconv.Atoi(maxJobs)
		if err != nil || n < 1 || n > 100 {
			bad = append(bad, errs.FieldError{Field: "maxJobs", Message: "must be an integer from 1 to 100"})
		}
		reg.MaxJobs = &n
	}
	if len(bad) > 0 {
		again(http.StatusBadRequest, userErrors(errs.Fields(bad...)))
		return
	}
	if _, err := c.Accounts.Register(r.Context(), rq.p.Scope, reg); err != nil {
		c.actionFailed(w, r, rq, err, again)
		return
	}
	redirect(w, r, Prefix+"/pool", "registered")
}

// updateAccount sets an account's maxJobs or switches it on or off.
func (c *Console) updateAccount(w http.ResponseWriter, r *http.Request, rq *request) {
	email := r.PostFormValue("email")
	var p accounts.Patch
	if v := strings.TrimSpace(r.PostFormValue("maxJobs")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			c.renderPool(w, r, rq, http.StatusBadRequest, "", []string{"maxJobs: must be an integer from 1 to 100"}, poolView{})
			return
		}
		p.MaxJobs = &n
	}
	switch r.PostFormValue("enabled") {
	case "true":
		p.Enabled = new(true)
	case "false":
		p.Enabled = new(false)
	}
	if _, err := c.Accounts.Update(r.Context(), rq.p.Scope, email, p); err != nil {
		c.actionFailed(w, r, rq, err, func(status int, msgs []string) {
			c.renderPool(w, r, rq, status, "", msgs, poolView{})
		})
		return
	}
	redirect(w, r, Prefix+"/pool", "updated")
}

// deleteAccount deletes an account the operator confirmed.
func (c *Console) deleteAccount(w http.ResponseWriter, r *http.Request, rq *request) {
	if err := c.Accounts.Delete(r.Context(), rq.p.Scope, r.PostFormValue("email")); err != nil {
		c.actionFailed(w, r, rq, err, func(status int, msgs []string) {
			c.renderPool(w, r, rq, status, "", msgs, poolView{})
		})
		return
	}
	redirect(w, r, Prefix+"/pool", "deleted")
}
