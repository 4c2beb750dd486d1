package console

import (
	"net/http"
	"strings"

	"github.com/poolgate/poolgate/internal/alerts"
	"github.com/poolgate/poolgate/internal/auth"
)

// alertsShown bounds each list of the Alerts page.
const alertsShown = 100

type alertsView struct {
	Open, Acked []alerts.View
	Destination alerts.Destination
	CanWrite    bool
}

func (c *Console) alertsPage(w http.ResponseWriter, r *http.Request, rq *request) {
	c.renderAlerts(w, r, rq, http.StatusOK, noticeOf(r), nil, nil)
}

// renderAlerts shows the alerts; dest, when set, is the destination the
// operator just submitted (kept in the form after an error).
func (c *Console) renderAlerts(w http.ResponseWriter, r *http.Request, rq *request, status int, notice string, problems []string, dest *alerts.Destination) {
	ctx, scope := r.Context(), rq.p.Scope
	v := alertsView{CanWrite: rq.p.Has(auth.ScopeAlertsWrite)}
	for state, into := range map[string]*[]alerts.View{"open": &v.Open, "acked": &v.Acked} {
		list, _, err := c.Alerts.List(ctx, scope, alerts.Filter{State: state, Limit: alertsShown})
		if err != nil {
			c.internal(w, r, rq, err)
			return
		}
		for _, a := range list {
			*into = append(*into, a.View())
		}
	}
	if dest != nil {
		v.Destination = *dest
	} else {
		d, err := c.Alerts.Destination(ctx, scope)
		if err != nil {
			c.internal(w, r, rq, err)
			return
		}
		if d != nil {
			v.Destination = *d
		}
	}
	if v.Destination.Format == "" {
		v.Destination.Format = alerts.FormatJSON
	}
	c.render(w, r, rq, status, "alerts", view{Title: "Alerts", Notice: notice, Errors: problems, Data: v})
}

func (c *Console) ackAlert(w http.ResponseWriter, r *http.Request, rq *request) {
	if _, err := c.Alerts.Ack(r.Context(), rq.p.Scope, r.PostFormValue("id")); err != nil {
		c.actionFailed(w, r, rq, err, func(status int, msgs []string) {
			c.renderAlerts(w, r, rq, status, "", msgs, nil)
		})
		return
	}
	redirect(w, r, Prefix+"/alerts", "acked")
}

func (c *Console) setAlertConfig(w http.ResponseWriter, r *http.Request, rq *request) {
	d := alerts.Destination{URL: strings.TrimSpace(r.PostFormValue("url")), Format: r.PostFormValue("format")}
	if len(d.URL) > 2048 {
		c.renderAlerts(w, r, rq, http.StatusBadRequest, "", []string{"url: must be at most 2048 characters"}, &d)
		return
	}
	if _, err := c.Alerts.SetDestination(r.Context(), rq.p.Scope, d); err != nil {
		c.actionFailed(w, r, rq, err, func(status int, msgs []string) {
			c.renderAlerts(w, r, rq, status, "", msgs, &d)
		})
		return
	}
	redirect(w, r, Prefix+"/alerts", "config")
}

func (c *Console) testAlert(w http.ResponseWriter, r *http.Request, rq *request) {
	if _, err := c.Alerts.SendTest(r.Context(), rq.p.Scope); err != nil {
		c.actionFailed(w, r, rq, err, func(status int, msgs []string) {
			c.renderAlerts(w, r, rq, status, "", msgs, nil)
		})
		return
	}
	redirect(w, r, Prefix+"/alerts", "tested")
}
