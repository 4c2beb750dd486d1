package sim

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/poolgate/poolgate/internal/cookies"
	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
)

// maxRequestBytes bounds a request body, mirroring what the client reads.
const maxRequestBytes = ltxstudio.MaxResponseBytes

// Error messages never quote the cookie: the simulator's answers end up in
// poolgate's errors and logs.
const (
	msgUnauthorized = "missing, malformed or expired lt_token"
	msgNotFound     = "generation not found"
)

func (s *Server) handleSubmit(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get(ltxstudio.HeaderIdempotencyKey)
	if key == "" {
		writeError(w, http.StatusBadRequest, ltxstudio.CodeInvalid, ltxstudio.HeaderIdempotencyKey+" header is required")
		return
	}
	s.countSubmit(key)
	email, ok := s.identify(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, ltxstudio.CodeUnauthorized, msgUnauthorized)
		return
	}
	req, msg := decodeSubmit(w, r)
	if msg != "" {
		writeError(w, http.StatusBadRequest, ltxstudio.CodeInvalid, msg)
		return
	}
	g, created, f := s.submit(email, key, req)
	switch {
	case f != nil:
		f.write(w)
	case created:
		writeJSON(w, http.StatusCreated, g)
	default:
		writeJSON(w, http.StatusOK, g)
	}
}

// decodeSubmit reads a SubmitRequest; a non-empty msg says why it is
// unacceptable.
func decodeSubmit(w http.ResponseWriter, r *http.Request) (ltxstudio.SubmitRequest, string) {
	var req ltxstudio.SubmitRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBytes)).Decode(&req); err != nil {
		return req, "request body is not a valid generation request"
	}
	if req.Type != "video" && req.Type != "image" {
		return req, `type must be "video" or "image"`
	}
	return req, ""
}

// moderated reports whether params.prompt contains ModerationTrigger.
func moderated(params json.RawMessage) bool {
	var p struct {
		Prompt string `json:"prompt"`
	}
	_ = json.Unmarshal(params, &p) // params that are not an object have no prompt
	return strings.Contains(strings.ToLower(p.Prompt), ModerationTrigger)
}

// authed wraps a handler that needs a valid lt_token and passes it the
// account's email.
func (s *Server) authed(h func(w http.ResponseWriter, r *http.Request, email string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		email, ok := s.identify(r)
		if !ok {
			writeError(w, http.StatusUnauthorized, ltxstudio.CodeUnauthorized, msgUnauthorized)
			return
		}
		h(w, r, email)
	}
}

// identify returns the email of a request whose lt_token is a JWT with an
// email claim and an exp after now.
func (s *Server) identify(r *http.Request) (string, bool) {
	tok, _ := requestCookies(r).Get(ltxstudio.CookieToken)
	c, err := s.tokens.claims(tok)
	if err != nil || c.Email == "" || !c.Expiry.After(s.now()) {
		return "", false
	}
	return c.Email, true
}

// requester names the account a request is made as, for counting only:
// lt_token's email claim whether or not it has expired, or else
// lt_refresh_token's; "" if neither names one.
func (s *Server) requester(jar cookies.Jar) string {
	for _, name := range []string{ltxstudio.CookieToken, ltxstudio.CookieRefreshToken} {
		if tok, _ := jar.Get(name); tok != "" {
			if c, err := s.tokens.claims(tok); err == nil && c.Email != "" {
				return c.Email
			}
		}
	}
	return ""
}

// jarKey holds, in a request's context, the cookies ServeHTTP parsed.
type jarKey struct{}

// requestCookies is r's cookies, parsed once per request by ServeHTTP.
func requestCookies(r *http.Request) cookies.Jar {
	if jar, ok := r.Context().Value(jarKey{}).(cookies.Jar); ok {
		return jar
	}
	return parseCookies(r)
}

// parseCookies parses every Cookie header of r; unparsable ones give an
// empty Jar, which no route accepts.
func parseCookies(r *http.Request) cookies.Jar {
	jar, _ := cookies.Parse(strings.Join(r.Header.Values(ltxstudio.HeaderCookie), "; "))
	return jar
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request, email string) {
	g, ok := s.status(email, r.PathValue(ltxstudio.PathParamID))
	writeGeneration(w, g, ok)
}

func (s *Server) handleLookup(w http.ResponseWriter, r *http.Request, email string) {
	key := r.URL.Query().Get(ltxstudio.QueryIdempotencyKey)
	if key == "" {
		writeError(w, http.StatusBadRequest, ltxstudio.CodeInvalid, ltxstudio.QueryIdempotencyKey+" query parameter is required")
		return
	}
	g, ok := s.lookup(email, key)
	writeGeneration(w, g, ok)
}

func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request, email string) {
	g, ok := s.cancel(email, r.PathValue(ltxstudio.PathParamID))
	writeGeneration(w, g, ok)
}

// handleRefresh needs lt_refresh_token rather than lt_token, which is
// usually expired by then. A refresh token that is not a JWT is accepted
// as opaque; one that is a JWT must not have expired. The account is the
// refresh token's email claim, or else lt_token's (expired or not).
func (s *Server) handleRefresh(w http.ResponseWriter, r *http.Request) {
	jar := requestCookies(r)
	rt, _ := jar.Get(ltxstudio.CookieRefreshToken)
	if rt == "" {
		writeError(w, http.StatusUnauthorized, ltxstudio.CodeUnauthorized, "missing lt_refresh_token")
		return
	}
	var email string
	if c, err := cookies.DecodeJWT(rt); err == nil {
		if !c.Expiry.IsZero() && !c.Expiry.After(s.now()) {
			writeError(w, http.StatusUnauthorized, ltxstudio.CodeUnauthorized, "lt_refresh_token has expired")
			return
		}
		email = c.Email
	}
	if email == "" {
		tok, _ := jar.Get(ltxstudio.CookieToken)
		if c, err := cookies.DecodeJWT(tok); err == nil {
			email = c.Email
		}
	}
	if email == "" {
		writeError(w, http.StatusUnauthorized, ltxstudio.CodeUnauthorized, "cookies name no account")
		return
	}
	writeJSON(w, http.StatusOK, s.refresh(email))
}

func (s *Server) handleStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

func (s *Server) handleReset(w http.ResponseWriter, _ *http.Request) {
	s.Reset()
	w.WriteHeader(http.StatusNoContent)
}

func writeGeneration(w http.ResponseWriter, g ltxstudio.Generation, found bool) {
	if !found {
		writeError(w, http.StatusNotFound, ltxstudio.CodeNotFound, msgNotFound)
		return
	}
	writeJSON(w, http.StatusOK, g)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, ltxstudio.ErrorResponse{Error: ltxstudio.ErrorDetail{Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing to tell it
}
