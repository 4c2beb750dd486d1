package api

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/poolgate/poolgate/internal/errs"
)

// singleHeaders may appear at most once in a request: with two, which one
// a proxy or poolgate honours is a guess, and a guess about a credential or
// an idempotency key is a bug waiting for its day.
var singleHeaders = []string{echo.HeaderAuthorization, "Idempotency-Key"}

// MaxHeaderBytes bounds a request's headers. net/http refuses headers over
// its own, larger limit (http.Server.MaxHeaderBytes, 1 MiB by default) with
// a bare text answer; below that, this limit answers in the envelope.
const MaxHeaderBytes = 32 << 10

var errHeadersTooLarge = errs.New(errs.KindHeadersTooLarge, "headers_too_large",
	"request headers exceed %d bytes", MaxHeaderBytes)

// headerBytes is the size of h as sent: "Name: value\r\n" per value.
func headerBytes(h map[string][]string) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// cleanInput refuses, before any handler or authentication runs, input
// that no route can store: path parameters and query values that are not
// UTF-8 or hold control characters (Postgres refuses NUL in text, and
// invalid UTF-8 anywhere), and repeated single-valued headers. Path
// parameters are percent-decoded here (echo routes on the escaped path
// when the client escaped more than needed), so handlers see
// "alice@a.example" whether the client wrote "@" or "%40".
func cleanInput(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if headerBytes(c.Request().Header) > MaxHeaderBytes {
			return errHeadersTooLarge
		}
		for _, h := range singleHeaders {
			if len(c.Request().Header.Values(h)) > 1 {
				return errs.Invalid("duplicate_header", "the %s header must appear at most once", h)
			}
		}
		if err := decodePathParams(c); err != nil {
			return err
		}
		for name, values := range c.QueryParams() {
			for _, v := range values {
				if !cleanText(name) || !cleanText(v) {
					e := errs.Invalid("invalid_characters", "query parameters must be UTF-8 text without control characters")
					e.Details = map[string]string{"parameter": clip(strings.ToValidUTF8(name, "?"), 40)}
					return e
				}
			}
		}
		return next(c)
	}
}

// decodePathParams percent-decodes every path parameter in place, refusing
// values that do not decode to clean text.
func decodePathParams(c echo.Context) error {
	names := c.ParamNames()
	if len(names) == 0 {
		return nil
	}
	values := c.ParamValues()                // as long as names
	escaped := c.Request().URL.RawPath != "" // echo routed on the escaped path
	decoded := make([]string, len(names))
	for i, name := range names {
		d, err := values[i], error(nil)
		if escaped {
			d, err = url.PathUnescape(d)
		}
		if err != nil || !cleanText(d) {
			return errs.Invalid("invalid_characters", "path parameter %s must be UTF-8 text without control characters", name)
		}
		decoded[i] = d
	}
	c.SetParamValues(decoded...)
	return nil
}

// cleanText reports whether s is valid UTF-8 free of control characters.
func cleanText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// checkJSONValues walks every value of a JSON document and refuses strings
// with NUL characters (Postgres text and jsonb cannot hold them) and
// numbers beyond what a float64 holds (jsonb refuses some, and few
// upstream clients parse them). The field named is the top-level member
// the value sits in.
func checkJSONValues(raw []byte) error {
	var members map[string]json.RawMessage
	if json.Unmarshal(raw, &members) != nil {
		return checkJSONTokens(raw, "(body)")
	}
	for name, v := range members {
		if strings.ContainsRune(name, 0) {
			return fieldOrBody("(body)", "member names must not contain NUL characters (\\u0000)")
		}
		if err := checkJSONTokens(v, name); err != nil {
			return err
		}
	}
	return nil
}

func checkJSONTokens(raw []byte, field string) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // io.EOF, or a syntax error Decode reports with more care
		}
		switch v := tok.(type) {
		case string:
			if strings.ContainsRune(v, 0) {
				return fieldOrBody(field, "must not contain NUL characters (\\u0000)")
			}
		case json.Number:
			if _, err := strconv.ParseFloat(string(v), 64); err != nil {
				return fieldOrBody(field, "holds a number beyond the float64 range ("+clip(string(v), 20)+")")
			}
		}
	}
}

func fieldOrBody(field, msg string) error {
	if field == "" {
		field = "(body)"
	}
	return errs.Fields(errs.FieldError{Field: field, Message: msg})
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
