package console

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/scheduler"
	"github.com/poolgate/poolgate/internal/webhooks"
)

const (
	// jobsPageSize is how many matching jobs one Jobs page shows.
	jobsPageSize = 50
	// jobsScanLimit bounds how many jobs one page reads while filtering by
	// account, type or time (the scheduler filters by state only), so a
	// filter that matches nothing in 100,000 jobs still answers quickly;
	// "older" continues where the scan stopped.
	jobsScanLimit = 2000
	// timeInput is the format of <input type="datetime-local">, read as UTC.
	timeInput = "2006-01-02T15:04"
)

var jobStates = []string{"queued", "dispatching", "running", "succeeded", "failed", "canceled"}

type jobFilter struct {
	State, Account, Type, From, To string
	from, to                       time.Time
}

func (f jobFilter) match(j scheduler.Job) bool {
	if f.Account != "" && (j.Email == nil || !strings.Contains(*j.Email, f.Account)) &&
		(j.PinnedEmail == nil || !strings.Contains(*j.PinnedEmail, f.Account)) {
		return false
	}
	if f.Type != "" && j.Type != f.Type {
		return false
	}
	created := j.CreatedAt
	if !f.from.IsZero() && created.Before(f.from) {
		return false
	}
	if !f.to.IsZero() && !created.Before(f.to) {
		return false
	}
	return true
}

type jobsView struct {
	Filter   jobFilter
	States   []string
	Jobs     []scheduler.Job
	OlderURL string
	Scanned  bool // the scan limit stopped the search before the page filled
}

func (c *Console) jobsPage(w http.ResponseWriter, r *http.Request, rq *request) {
	q := r.URL.Query()
	f := jobFilter{State: q.Get("state"), Account: strings.ToLower(strings.TrimSpace(q.Get("account"))),
		Type: q.Get("type"), From: q.Get("from"), To: q.Get("to")}
	var problems []string
	if f.State != "" && !scheduler.ValidState(f.State) {
		problems = append(problems, "state: must be one of "+strings.Join(jobStates, ", "))
		f.State = ""
	}
	if f.Type != "" && f.Type != "video" && f.Type != "image" {
		problems = append(problems, "type: must be video or image")
		f.Type = ""
	}
	var err error
	if f.From != "" {
		if f.from, err = time.Parse(timeInput, f.From); err != nil {
			problems = append(problems, "from: must be a date and time like 2030-01-02T15:04")
		}
	}
	if f.To != "" {
		if f.to, err = time.Parse(timeInput, f.To); err != nil {
			problems = append(problems, "to: must be a date and time like 2030-01-02T15:04")
		}
	}
	v := jobsView{Filter: f, States: jobStates}
	cursor, scanned := q.Get("cursor"), 0
	for {
		page, next, err := c.Jobs.List(r.Context(), rq.p.Scope, scheduler.ListFilter{State: f.State, Cursor: cursor, Limit: 200})
		if err != nil {
			c.internal(w, r, rq, err)
			return
		}
		for _, j := range page {
			scanned++
			cursor = j.ID
			if f.match(j) {
				if v.Jobs = append(v.Jobs, j); len(v.Jobs) == jobsPageSize {
					break
				}
			}
		}
		if len(v.Jobs) == jobsPageSize {
			break
		}
		if next == "" {
			cursor = ""
			break
		}
		if scanned >= jobsScanLimit {
			v.Scanned = true
			break
		}
	}
	if cursor != "" {
		u := url.Values{"cursor": {cursor}}
		for k, val := range map[string]string{"state": f.State, "account": f.Account, "type": f.Type, "from": f.From, "to": f.To} {
			if val != "" {
				u.Set(k, val)
			}
		}
		v.OlderURL = Prefix + "/jobs?" + u.Encode()
	}
	status := http.StatusOK
	if len(problems) > 0 {
		status = http.StatusBadRequest
	}
	c.render(w, r, rq, status, "jobs", view{Title: "Jobs", Errors: problems, Data: v})
}

type jobView struct {
	Job        scheduler.Job
	Params     string
	Result     string
	ResultURLs []string
	CanCancel  bool
	Deliveries []webhooks.Delivery
}

func (c *Console) jobPage(w http.ResponseWriter, r *http.Request, rq *request) {
	c.renderJob(w, r, rq, http.StatusOK, noticeOf(r), nil, r.PathValue("id"))
}

func (c *Console) renderJob(w http.ResponseWriter, r *http.Request, rq *request, status int, notice string, problems []string, id string) {
	j, err := c.Jobs.Get(r.Context(), rq.p.Scope, id)
	if err != nil {
		if msgs := userErrors(err); msgs != nil {
			c.fail(w, r, rq, http.StatusNotFound, msgs[0])
			return
		}
		c.internal(w, r, rq, err)
		return
	}
	v := jobView{Job: j, Params: pretty(j.Params), Result: pretty(j.Result), ResultURLs: links(j.Result),
		CanCancel: !j.State.Terminal() && rq.p.Has(auth.ScopeJobsWrite)}
	if c.Deliveries != nil && j.ReplyURL != nil {
		if v.Deliveries, err = c.Deliveries.ForJob(r.Context(), rq.p.TenantID, *j.ReplyURL, j.ID); err != nil {
			c.internal(w, r, rq, err)
			return
		}
	}
	c.render(w, r, rq, status, "job", view{Title: "Job " + j.ID, Notice: notice, Errors: problems, Data: v})
}

func pretty(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var b bytes.Buffer
	if json.Indent(&b, raw, "", "  ") != nil {
		return string(raw)
	}
	return b.String()
}

// links finds the http(s) URLs in a job's result, to offer as links. Other
// schemes (javascript:, data:) are never linked.
func links(raw json.RawMessage) []string {
	var v any
	if len(raw) == 0 || json.Unmarshal(raw, &v) != nil {
		return nil
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch t := v.(type) {
		case string:
			if u, err := url.Parse(t); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" {
				out = append(out, t)
			}
		case []any:
			for _, e := range t {
				walk(e)
			}
		case map[string]any:
			for _, e := range t {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

func (c *Console) cancelJob(w http.ResponseWriter, r *http.Request, rq *request) {
	id := r.PostFormValue("id")
	if _, err := c.Jobs.Cancel(r.Context(), rq.p.Scope, id); err != nil {
		c.actionFailed(w, r, rq, err, func(status int, msgs []string) {
			c.renderJob(w, r, rq, status, "", msgs, id)
		})
		return
	}
	redirect(w, r, Prefix+"/jobs/"+url.PathEscape(id), "canceled")
}
