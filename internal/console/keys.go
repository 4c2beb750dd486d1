package console

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/tenant"
)

// usageShown bounds how many keys get their usage totals read (one query
// each) on the Keys page.
const usageShown = 50

type keysView struct {
	Keys          []keyRow
	Scopes        []scopeOption
	Modes         []tenant.Mode
	NewSecret     string // shown once, right after create or roll
	NewName       string
	ConfirmRevoke *keyRow
	Form          keyForm
}

type keyRow struct {
	auth.Key
	Status         string
	Requests, Jobs int64
	UsageKnown     bool
	ScopeList      string
}

type scopeOption struct {
	Name, ID string
	Checked  bool
}

type keyForm struct {
	Name, Mode, Expires, RateLimit string
}

func (c *Console) keysPage(w http.ResponseWriter, r *http.Request, rq *request) {
	v := keysView{}
	if id := r.URL.Query().Get("revoke"); id != "" {
		v.ConfirmRevoke = &keyRow{Key: auth.Key{ID: id}}
	}
	c.renderKeys(w, r, rq, http.StatusOK, noticeOf(r), nil, v, nil)
}

func (c *Console) renderKeys(w http.ResponseWriter, r *http.Request, rq *request, status int, notice string, problems []string, v keysView, checked []string) {
	ctx := r.Context()
	list, err := c.Keys.List(ctx, rq.p)
	if err != nil {
		c.internal(w, r, rq, err)
		return
	}
	now := c.Now()
	for i, k := range list {
		row := keyRow{Key: k, Status: k.Status(now), ScopeList: strings.Join(k.Scopes, ", ")}
		if i < usageShown {
			u, err := c.Keys.UsageReport(ctx, rq.p, k.ID, 1)
			if err != nil {
				c.internal(w, r, rq, err)
				return
			}
			row.Requests, row.Jobs, row.UsageKnown = u.Requests, u.Jobs, true
		}
		if v.ConfirmRevoke != nil && v.ConfirmRevoke.ID == k.ID {
			v.ConfirmRevoke = &row
		}
		v.Keys = append(v.Keys, row)
	}
	if v.ConfirmRevoke != nil && v.ConfirmRevoke.Name == "" {
		v.ConfirmRevoke = nil // not one of this caller's keys
	}
	for _, s := range auth.AllScopes {
		v.Scopes = append(v.Scopes, scopeOption{Name: s, ID: "scope-" + strings.NewReplacer(":", "-", "*", "all").Replace(s),
			Checked: slices.Contains(checked, s)})
	}
	v.Modes = []tenant.Mode{tenant.Live, tenant.Test}
	if v.Form.Mode == "" {
		v.Form.Mode = string(rq.p.Mode)
	}
	if v.NewSecret != "" {
		w.Header().Set("Cache-Control", "no-store")
	}
	c.render(w, r, rq, status, "keys", view{Title: "Keys", Notice: notice, Errors: problems, Data: v})
}

// createKey issues a key; its secret is shown on this one answer only.
func (c *Console) createKey(w http.ResponseWriter, r *http.Request, rq *request) {
	r.ParseForm()
	form := keyForm{Name: strings.TrimSpace(r.PostFormValue("name")), Mode: r.PostFormValue("mode"),
		Expires: strings.TrimSpace(r.PostFormValue("expires")), RateLimit: strings.TrimSpace(r.PostFormValue("rateLimit"))}
	scopes := r.PostForm["scopes"]
	p := auth.KeyParams{Name: form.Name, Mode: tenant.Mode(form.Mode), Scopes: scopes}
	var bad []errs.FieldError
	if form.Name == "" || len(form.Name) > 100 {
		bad = append(bad, errs.FieldError{Field: "name", Message: "is required, at most 100 characters"})
	}
	if form.Expires != "" {
		t, err := time.Parse(timeInput, form.Expires)
		if err != nil {
			bad = append(bad, errs.FieldError{Field: "expires", Message: "must be a date and time like 2030-01-02T15:04"})
		}
		p.ExpiresAt = &t
	}
	if form.RateLimit != "" {
		rl, err := auth.ParseRateLimit(form.RateLimit)
		if err != nil {
			bad = append(bad, errs.FieldError{Field: "rateLimit", Message: "must look like 600/1m"})
		}
		p.RateLimit = &rl
	}
	again := func(status int, msgs []string) {
		c.renderKeys(w, r, rq, status, "", msgs, keysView{Form: form}, scopes)
	}
	if len(bad) > 0 {
		again(http.StatusBadRequest, userErrors(errs.Fields(bad...)))
		return
	}
	k, secret, err := c.Keys.Create(r.Context(), rq.p, p)
	if err != nil {
		c.actionFailed(w, r, rq, err, again)
		return
	}
	c.renderKeys(w, r, rq, http.StatusCreated, "Key created. Copy its secret now: it is shown only this once.", nil,
		keysView{NewSecret: secret, NewName: k.Name}, nil)
}

// rollKey issues a replacement; the old key works for the grace period.
func (c *Console) rollKey(w http.ResponseWriter, r *http.Request, rq *request) {
	again := func(status int, msgs []string) { c.renderKeys(w, r, rq, status, "", msgs, keysView{}, nil) }
	grace, err := time.ParseDuration(strings.TrimSpace(r.PostFormValue("grace")))
	if err != nil {
		again(http.StatusBadRequest, []string{"grace: must be a duration like 24h, 30m or 0"})
		return
	}
	k, secret, err := c.Keys.Roll(r.Context(), rq.p, r.PostFormValue("id"), grace)
	if err != nil {
		c.actionFailed(w, r, rq, err, again)
		return
	}
	c.renderKeys(w, r, rq, http.StatusCreated, "Key rolled. Copy the new secret now: it is shown only this once.", nil,
		keysView{NewSecret: secret, NewName: k.Name}, nil)
}

func (c *Console) revokeKey(w http.ResponseWriter, r *http.Request, rq *request) {
	id := r.PostFormValue("id")
	if err := c.Keys.Revoke(r.Context(), rq.p, id); err != nil {
		c.actionFailed(w, r, rq, err, func(status int, msgs []string) {
			c.renderKeys(w, r, rq, status, "", msgs, keysView{}, nil)
		})
		return
	}
	if id == rq.p.KeyID {
		// The session's own key: the next request would bounce anyway.
		http.Redirect(w, r, Prefix+"/signin?m=key", http.StatusSeeOther)
		return
	}
	redirect(w, r, Prefix+"/keys", "revoked")
}
