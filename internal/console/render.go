package console

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/tenant"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// navItem is one page of the console and the scope its key needs.
type navItem struct {
	name, href, scope string
}

var navItems = []navItem{
	{"Pool", Prefix + "/pool", auth.ScopeAccountsRead},
	{"Live", Prefix + "/live", auth.ScopeJobsRead},
	{"Jobs", Prefix + "/jobs", auth.ScopeJobsRead},
	{"Alerts", Prefix + "/alerts", auth.ScopeAlertsRead},
	{"Keys", Prefix + "/keys", auth.ScopeKeysAdmin},
}

// Link is a navigation entry as templates see it.
type Link struct {
	Name, Href string
	Current    bool
}

// view is what every signed-in page template gets.
type view struct {
	Title  string
	Nav    []Link
	CSRF   string
	Mode   tenant.Mode
	KeyID  string
	Notice string   // a success message
	Errors []string // what went wrong with the last action
	Data   any
}

type pages struct {
	byName map[string]*template.Template
}

var funcs = template.FuncMap{
	"utc": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			return v.UTC().Format("2006-01-02 15:04:05 UTC")
		case *time.Time:
			if v == nil {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04:05 UTC")
		}
		return ""
	},
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"deref": func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	},
	"join": strings.Join,
}

func mustParsePages() *pages {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	p := &pages{byName: map[string]*template.Template{}}
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".html")
		if base == "layout" {
			continue
		}
		p.byName[base] = template.Must(template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n))
	}
	return p
}

// render writes a signed-in page with the layout, its navigation limited to
// the pages the key may use.
func (c *Console) render(w http.ResponseWriter, r *http.Request, rq *request, status int, page string, v view) {
	if rq != nil {
		v.CSRF, v.Mode, v.KeyID = rq.sess.CSRF, rq.p.Mode, rq.p.KeyID
		for _, n := range navItems {
			if rq.p.Has(n.scope) {
				v.Nav = append(v.Nav, Link{Name: n.name, Href: n.href, Current: strings.HasPrefix(r.URL.Path, n.href)})
			}
		}
	}
	c.write(w, status, page, "layout", v)
}

// renderBare writes a page without the signed-in layout (sign-in).
func (c *Console) renderBare(w http.ResponseWriter, status int, page string, data any) {
	c.write(w, status, page, "bare", data)
}

func (c *Console) write(w http.ResponseWriter, status int, page, layout string, data any) {
	t, ok := c.pages.byName[page]
	if !ok {
		panic("console: no template " + page)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, layout, data); err != nil {
		c.Logger.Error("console: render", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store") // pages carry CSRF tokens and, once, key secrets
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

type forbiddenView struct {
	Message string
}

// forbidden tells the operator which scope the page or action needs rather
// than showing an empty page.
func (c *Console) forbidden(w http.ResponseWriter, r *http.Request, rq *request, scope string) {
	c.render(w, r, rq, http.StatusForbidden, "forbidden", view{Title: "Not available with this key",
		Data: forbiddenView{Message: fmt.Sprintf("The API key you signed in with lacks the scope %s, which this page or action needs. Sign in with a key that holds it.", scope)}})
}

// fail shows a refused request on its own page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, rq *request, status int, msg string) {
	c.render(w, r, rq, status, "forbidden", view{Title: "Request refused", Data: forbiddenView{Message: msg}})
}

func (c *Console) internal(w http.ResponseWriter, r *http.Request, rq *request, err error) {
	c.Logger.Error("console: request failed", "path", r.URL.Path, "err", err)
	status, msg := http.StatusInternalServerError, "Something went wrong on the server; it has been logged."
	if errs.As(err).Kind == errs.KindUnavailable {
		status, msg = http.StatusServiceUnavailable, "The database is not answering right now; try again shortly."
	}
	if rq == nil {
		http.Error(w, msg, status)
		return
	}
	c.fail(w, r, rq, status, msg)
}

func (c *Console) notFound(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "no such console page", http.StatusNotFound)
}

// userErrors turns a domain error into the messages to show: the error's
// own message, and each field's, exactly as the API reports them.
func userErrors(err error) []string {
	e := errs.As(err)
	if e.Kind == errs.KindInternal || e.Kind == errs.KindUnavailable {
		return nil
	}
	if fields, ok := e.Details.([]errs.FieldError); ok {
		out := make([]string, 0, len(fields))
		for _, f := range fields {
			out = append(out, f.Field+": "+f.Message)
		}
		return out
	}
	return []string{e.Message}
}

// actionFailed re-renders after a refused action, or logs an internal error.
func (c *Console) actionFailed(w http.ResponseWriter, r *http.Request, rq *request, err error, again func(status int, msgs []string)) {
	msgs := userErrors(err)
	if msgs == nil {
		c.internal(w, r, rq, err)
		return
	}
	status := http.StatusBadRequest
	switch errs.As(err).Kind {
	case errs.KindNotFound:
		status = http.StatusNotFound
	case errs.KindForbidden:
		status = http.StatusForbidden
	case errs.KindConflict:
		status = http.StatusConflict
	}
	again(status, msgs)
}

// notices are the fixed messages a redirect after an action can show; the
// query names one, so nothing from the URL is echoed.
var notices = map[string]string{
	"registered": "Account registered.",
	"updated":    "Account updated.",
	"deleted":    "Account deleted.",
	"canceled":   "Job canceled.",
	"acked":      "Alert acknowledged.",
	"config":     "Alert destination saved.",
	"tested":     "Test alert queued for delivery.",
	"revoked":    "Key revoked.",
}

func noticeOf(r *http.Request) string { return notices[r.URL.Query().Get("m")] }

func redirect(w http.ResponseWriter, r *http.Request, to, notice string) {
	http.Redirect(w, r, to+"?m="+notice, http.StatusSeeOther)
}

// static serves the embedded CSS and JavaScript.
func (c *Console) static(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	body, err := staticFS.ReadFile("static/" + name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	switch path.Ext(name) {
	case ".css":
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case ".js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	case ".svg":
		w.Header().Set("Content-Type", "image/svg+xml")
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(body)
}
