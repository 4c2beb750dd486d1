package console

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/poolgate/poolgate/internal/auth"
	"github.com/poolgate/poolgate/internal/errs"
)

// cookieName holds the session token. The cookie is HttpOnly and
// SameSite=Strict, scoped to the console's path, and Secure over TLS.
const cookieName = "poolgate_console"

// csrfField and csrfHeader carry the session's CSRF token on every POST.
const (
	csrfField  = "csrf"
	csrfHeader = "X-CSRF-Token"
)

// request is what a signed-in handler knows about its caller.
type request struct {
	p     auth.Principal
	sess  auth.Session
	token string
}

type handler func(w http.ResponseWriter, r *http.Request, rq *request)

// session runs h for a signed-in browser whose key still verifies, whose
// POSTs carry the CSRF token, and whose key holds scope ("" for any key).
func (c *Console) session(scope string, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		var token string
		if ck, err := r.Cookie(cookieName); err == nil {
			token = ck.Value
		}
		sess, err := c.Sessions.Get(ctx, token)
		if err != nil {
			c.signedOut(w, r, err, "ended")
			return
		}
		// The key is checked again on every request, so revoking it (or
		// its expiry) ends the session at once.
		p, err := c.Verifier.Verify(ctx, sess.Key)
		if err != nil {
			if derr := c.Sessions.Delete(ctx, token); derr != nil {
				c.Logger.Warn("console: delete session of a refused key", "err", derr)
			}
			clearCookie(w, r)
			c.signedOut(w, r, err, "key")
			return
		}
		rq := &request{p: p, sess: sess, token: token}
		if r.Method == http.MethodPost {
			if msg := checkCSRF(r, sess.CSRF); msg != "" {
				c.fail(w, r, rq, http.StatusForbidden, msg)
				return
			}
		}
		if scope != "" && !p.Has(scope) {
			c.forbidden(w, r, rq, scope)
			return
		}
		h(w, r, rq)
	})
}

// sameOrigin refuses requests a browser marks as coming from another site.
// SameSite=Strict already keeps the cookie off them; this is the second lock.
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s == "cross-site" || s == "same-site" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		return err == nil && u.Host == r.Host
	}
	return true
}

// checkCSRF returns why a POST is refused, or "".
func checkCSRF(r *http.Request, want string) string {
	if !sameOrigin(r) {
		return "This request came from another site and was refused."
	}
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.PostFormValue(csrfField)
	}
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return "This form is missing its security token or it is out of date. Reload the page and try again."
	}
	return ""
}

// signedOut answers a request without a usable session: pages go to the
// sign-in form, with why; data requests get a 401.
func (c *Console) signedOut(w http.ResponseWriter, r *http.Request, err error, why string) {
	var e *errs.Error
	if !errors.As(err, &e) || (e.Kind != errs.KindUnauthenticated) {
		c.internal(w, r, nil, err)
		return
	}
	if r.Method != http.MethodGet || strings.HasSuffix(r.URL.Path, ".json") || strings.HasSuffix(r.URL.Path, ".svg") {
		http.Error(w, "signed out: sign in again at "+Prefix+"/signin", http.StatusUnauthorized)
		return
	}
	target := Prefix + "/signin"
	if _, err := r.Cookie(cookieName); err == nil || why == "key" {
		target += "?m=" + why
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

func setCookie(w http.ResponseWriter, r *http.Request, token string, sess auth.Session) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: token, Path: Prefix, Expires: sess.ExpiresAt,
		HttpOnly: true, Secure: overTLS(r), SameSite: http.SameSiteStrictMode,
	})
}

// overTLS reports whether the browser reached us over TLS, directly or
// through a TLS-terminating proxy. Trusting the header can only make the
// cookie stricter, never weaker.
func overTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: "", Path: Prefix, MaxAge: -1,
		HttpOnly: true, Secure: overTLS(r), SameSite: http.SameSiteStrictMode,
	})
}

// signInNotes are the fixed messages the sign-in page can show; the query
// names one, so nothing from the URL is ever echoed.
var signInNotes = map[string]string{
	"ended":     "Your session has ended. Sign in again.",
	"key":       "The key this session used is no longer valid (revoked, rolled or expired). Sign in with a valid key.",
	"signedout": "You have signed out.",
}

type signInView struct {
	Note  string
	Error string
}

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	c.renderBare(w, http.StatusOK, "signin", signInView{Note: signInNotes[r.URL.Query().Get("m")]})
}

// signIn exchanges an API key for a session.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		c.renderBare(w, http.StatusForbidden, "signin", signInView{Error: "This sign-in came from another site and was refused."})
		return
	}
	key := strings.TrimSpace(r.PostFormValue("key"))
	if key == "" {
		c.renderBare(w, http.StatusBadRequest, "signin", signInView{Error: "Enter an API key (pgk_live_… or pgk_test_…)."})
		return
	}
	p, err := c.Verifier.Verify(r.Context(), key)
	if err != nil {
		e := errs.As(err)
		if e.Kind != errs.KindUnauthenticated {
			c.internal(w, r, nil, err)
			return
		}
		c.renderBare(w, http.StatusUnauthorized, "signin", signInView{Error: "Sign-in refused: " + e.Message + "."})
		return
	}
	token, sess, err := c.Sessions.Create(r.Context(), p, key)
	if err != nil {
		c.internal(w, r, nil, err)
		return
	}
	// A browser signing in again leaves no session of the earlier key behind.
	if old, err := r.Cookie(cookieName); err == nil && old.Value != "" {
		if err := c.Sessions.Delete(r.Context(), old.Value); err != nil {
			c.Logger.Warn("console: delete the session replaced by a sign-in", "err", err)
		}
	}
	setCookie(w, r, token, sess)
	http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request, rq *request) {
	if err := c.Sessions.Delete(r.Context(), rq.token); err != nil {
		c.internal(w, r, rq, err)
		return
	}
	clearCookie(w, r)
	http.Redirect(w, r, Prefix+"/signin?m=signedout", http.StatusSeeOther)
}

// home sends the browser to the first page its key may use.
func (c *Console) home(w http.ResponseWriter, r *http.Request, rq *request) {
	for _, n := range navItems {
		if rq.p.Has(n.scope) {
			http.Redirect(w, r, n.href, http.StatusSeeOther)
			return
		}
	}
	c.render(w, r, rq, http.StatusForbidden, "forbidden", view{Title: "No pages",
		Data: forbiddenView{Message: "This API key holds none of the scopes the console's pages need."}})
}
