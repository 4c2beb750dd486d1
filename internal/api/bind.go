package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"

	"github.com/go-playground/validator/v10"
	"github.com/labstack/echo/v4"

	"github.com/poolgate/poolgate/internal/errs"
)

// newValidator builds the one validator instance: field errors name fields
// as clients spell them (their json tag).
func newValidator() *validator.Validate {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			return ""
		}
		return name
	})
	return v
}

// check validates dst and turns every failed rule into one FieldError.
func (s *Server) check(dst any) error {
	err := s.validate.Struct(dst)
	var ve validator.ValidationErrors
	if !errors.As(err, &ve) {
		return err
	}
	fields := make([]errs.FieldError, 0, len(ve))
	for _, fe := range ve {
		fields = append(fields, errs.FieldError{Field: fe.Field(), Message: ruleMessage(fe)})
	}
	return errs.Fields(fields...)
}

func ruleMessage(fe validator.FieldError) string {
	switch fe.Tag() {
	case "required":
		return "is required"
	case "min":
		if fe.Kind() == reflect.String {
			return "must be at least " + fe.Param() + " characters"
		}
		return "must be at least " + fe.Param()
	case "max":
		if fe.Kind() == reflect.String {
			return "must be at most " + fe.Param() + " characters"
		}
		return "must be at most " + fe.Param()
	case "email":
		return "must be an email address"
	case "oneof":
		return "must be one of: " + strings.ReplaceAll(fe.Param(), " ", ", ")
	case "url", "http_url":
		return "must be an http(s) URL"
	default:
		return "fails rule " + fe.Tag()
	}
}

// decodeJSON reads the body into dst strictly (unknown fields are an error,
// so a typo never silently drops a setting) and validates it.
func (s *Server) decodeJSON(c echo.Context, dst any) error {
	if err := requireMediaType(c, echo.MIMEApplicationJSON); err != nil {
		return err
	}
	if err := decodeStrict(c.Request().Body, dst); err != nil {
		return err
	}
	return s.check(dst)
}

func decodeStrict(body io.Reader, dst any) error {
	raw, err := io.ReadAll(body)
	if err != nil {
		return jsonError(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errs.Invalid("malformed_json", "request body must hold exactly one JSON object")
	}
	if err := checkJSONValues(raw); err != nil {
		return err
	}
	return exactFieldNames(raw, dst)
}

// exactFieldNames refuses top-level keys that match a field only
// case-insensitively: encoding/json accepts "maxjobs" for maxJobs, and a
// client relying on that would break on any stricter implementation.
func exactFieldNames(raw []byte, dst any) error {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return nil // not an object; Decode has already judged it
	}
	t := reflect.TypeOf(dst)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	known := make(map[string]bool)
	jsonNames(t, known)
	for k := range keys {
		if !known[k] {
			return errs.Fields(errs.FieldError{Field: k, Message: "is not a known field (names are case-sensitive)"})
		}
	}
	return nil
}

// jsonError explains a decoding failure without echoing the body.
func jsonError(err error) error {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
		mbe    *http.MaxBytesError
	)
	switch {
	case errors.As(err, &mbe):
		return errTooLarge
	case errors.Is(err, io.EOF):
		return errs.Invalid("empty_body", "request body is empty; send a JSON object")
	case errors.As(err, &syntax):
		return errs.Invalid("malformed_json", "request body is not valid JSON (at byte %d)", syntax.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errs.Invalid("malformed_json", "request body is not valid JSON (truncated)")
	case errors.As(err, &typ):
		if typ.Field == "" {
			return errs.Invalid("malformed_json", "request body must be a JSON object")
		}
		return errs.Fields(errs.FieldError{Field: typ.Field, Message: "must be " + jsonTypeName(typ.Type)})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return errs.Fields(errs.FieldError{Field: name, Message: "is not a known field"})
	default:
		return errs.Invalid("malformed_json", "request body is not valid JSON")
	}
}

func jsonTypeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	default:
		return fmt.Sprintf("of type %s", t.Kind())
	}
}

// requireMediaType refuses a body of another media type with 415-style
// advice (as a 400, since clients act on the code).
func requireMediaType(c echo.Context, allowed ...string) error {
	mt := mediaType(c)
	for _, a := range allowed {
		if mt == a {
			return nil
		}
	}
	return errs.Invalid("unsupported_media_type", "Content-Type must be %s", strings.Join(allowed, " or "))
}

func mediaType(c echo.Context) string {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if ct == "" {
		return echo.MIMEApplicationJSON // curl -d without -H is the common case
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ""
	}
	return mt
}

// jsonNames collects the JSON names of t's fields, including those of
// embedded structs, which encoding/json promotes.
func jsonNames(t reflect.Type, into map[string]bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct {
			jsonNames(f.Type, into)
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		into[name] = true
	}
}
