package ltxapi

// This file holds every detail of the LTX-2 API wire contract, as
// Lightricks documents it at docs.ltx.video (quick start and the
// text-to-video / image-to-video references): routes, headers, the JSON
// request body and what it accepts, the error envelope, and the HTTP
// status → provider.Class mapping. The simulator (internal/provider/sim)
// serves these same definitions, so the two cannot drift apart.
//
// The synchronous v1 routes answer with the generated MP4 itself
// (Content-Type video/mp4, an x-request-id header), so a call lasts as
// long as the generation and there is nothing to poll, look up or cancel.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/poolgate/poolgate/internal/provider"
)

// Routes, as "METHOD /path" patterns that http.ServeMux accepts directly.
const (
	RouteTextToVideo  = "POST /v1/text-to-video"
	RouteImageToVideo = "POST /v1/image-to-video"
)

// Headers.
const (
	HeaderAuthorization = "Authorization" // "Bearer <key>"
	HeaderRequestID     = "X-Request-Id"  // the upstream's id of the call
	HeaderRetryAfter    = "Retry-After"   // with 429, in seconds or an HTTP date
	ContentTypeMP4      = "video/mp4"
)

// BearerPrefix starts the Authorization header value.
const BearerPrefix = "Bearer "

// MaxErrorBytes bounds how much of an error answer is read.
const MaxErrorBytes = 64 << 10

// GenerateRequest is the JSON body of both routes. ImageURI is required
// by (and only sent to) RouteImageToVideo.
type GenerateRequest struct {
	Prompt        string `json:"prompt"`
	Model         string `json:"model"`
	Duration      int    `json:"duration"`
	Resolution    string `json:"resolution"`
	FPS           int    `json:"fps,omitempty"`
	GenerateAudio *bool  `json:"generate_audio,omitempty"`
	CameraMotion  string `json:"camera_motion,omitempty"`
	ImageURI      string `json:"image_uri,omitempty"`
	LastFrameURI  string `json:"last_frame_uri,omitempty"`
}

// Route is the route a request goes to: image-to-video when it carries an
// image.
func (r GenerateRequest) Route() string {
	if r.ImageURI != "" {
		return RouteImageToVideo
	}
	return RouteTextToVideo
}

// ErrorBody is the error envelope of every non-2xx answer:
// {"type":"error","error":{"type":"authentication_error","message":"Invalid API key"}}.
type ErrorBody struct {
	Type  string      `json:"type"` // always "error"
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of ErrorBody.
type ErrorDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// Error types the envelope carries.
const (
	ErrAuthentication = "authentication_error"  // 401: missing, malformed, invalid or expired key
	ErrRateLimit      = "rate_limit_error"      // 429: over the plan's rate or concurrency
	ErrInvalidRequest = "invalid_request_error" // 400/422: the request was refused as it is
	ErrAPI            = "api_error"             // 5xx: the service failed
)

// Messages the documentation quotes.
const (
	MessageInvalidKey = "Invalid API key"
	MessageRateLimit  = "Too Many Requests"
)

// What the API accepts. The first value of each list is poolgate's
// default when a job leaves the field out.
var (
	Models        = []string{"ltx-2-fast", "ltx-2-pro", "ltx-2-3-fast", "ltx-2-3-pro"}
	Durations     = []int{6, 8, 10, 12, 14, 16, 18, 20}
	Resolutions   = []string{"1920x1080", "2560x1440", "3840x2160"}
	FPSValues     = []int{24, 25, 48, 50}
	CameraMotions = []string{"dolly_in", "dolly_out", "dolly_left", "dolly_right", "jib_up", "jib_down", "static", "focus_shift"}
	// lastFrameModels are the models that take last_frame_uri.
	lastFrameModels = []string{"ltx-2-3-fast", "ltx-2-3-pro"}
)

// MaxPromptLen is the longest prompt the API takes (characters).
const MaxPromptLen = 5000

// maxURILen bounds image_uri and last_frame_uri; a data: URI of a large
// image is still far below it, and job params are bounded anyway.
const maxURILen = 48 << 10

// Aliases let a job written for poolgate's typed endpoint
// (POST /v1/videos/create) run on either provider: its model and
// resolution names map to the API's.
var (
	modelAliases      = map[string]string{"ltxv-2-fast": "ltx-2-fast", "ltxv-2-pro": "ltx-2-pro"}
	resolutionAliases = map[string]string{"1080p": "1920x1080", "1440p": "2560x1440", "2160p": "3840x2160"}
)

// Problem is one reason job params do not fit the API; Field is the
// params key ("" for the params as a whole).
type Problem struct {
	Field, Message string
}

// jobParams is what a poolgate job's params may hold for this provider:
// the API's own fields, plus the typed endpoint's aspectRatio and imageUrl.
type jobParams struct {
	Prompt        *string `json:"prompt"`
	Model         *string `json:"model"`
	Duration      *int    `json:"duration"`
	Resolution    *string `json:"resolution"`
	FPS           *int    `json:"fps"`
	GenerateAudio *bool   `json:"generate_audio"`
	CameraMotion  *string `json:"camera_motion"`
	ImageURI      *string `json:"image_uri"`
	LastFrameURI  *string `json:"last_frame_uri"`
	AspectRatio   *string `json:"aspectRatio"`
	ImageURL      *string `json:"imageUrl"`
}

// Accepted lists the params keys a job may use on this provider.
const Accepted = "prompt, model, duration, resolution, fps, generate_audio, camera_motion, image_uri, last_frame_uri (and aspectRatio 16:9, imageUrl)"

// ParseParams checks a job's type and params against the API and returns
// the request to send, or every problem found.
func ParseParams(typ string, params json.RawMessage) (GenerateRequest, []Problem) {
	var (
		req GenerateRequest
		bad []Problem
		p   jobParams
	)
	if typ != "video" {
		bad = append(bad, Problem{"", "the LTX-2 API makes videos only (type must be \"video\")"})
	}
	if len(bytes.TrimSpace(params)) == 0 {
		params = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(params))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		msg := "must be an object of: " + Accepted
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			msg = "unknown field " + f + "; the LTX-2 API accepts " + Accepted
		}
		return req, append(bad, Problem{"", msg})
	}
	req.Prompt = deref(p.Prompt)
	if n := len([]rune(req.Prompt)); n == 0 || n > MaxPromptLen {
		bad = append(bad, Problem{"prompt", "is required, at most " + strconv.Itoa(MaxPromptLen) + " characters"})
	}
	req.Model = oneOf("model", alias(p.Model, modelAliases), Models, &bad)
	req.Resolution = oneOf("resolution", alias(p.Resolution, resolutionAliases), Resolutions, &bad)
	req.Duration = oneOf("duration", p.Duration, Durations, &bad)
	if p.FPS != nil {
		req.FPS = oneOf("fps", p.FPS, FPSValues, &bad)
	}
	req.GenerateAudio = p.GenerateAudio
	if p.CameraMotion != nil {
		req.CameraMotion = oneOf("camera_motion", p.CameraMotion, CameraMotions, &bad)
	}
	if p.AspectRatio != nil && *p.AspectRatio != "16:9" {
		bad = append(bad, Problem{"aspectRatio", "the LTX-2 API makes 16:9 videos only"})
	}
	switch {
	case p.ImageURI != nil && p.ImageURL != nil:
		bad = append(bad, Problem{"image_uri", "send image_uri or imageUrl, not both"})
	case p.ImageURI != nil:
		req.ImageURI = *p.ImageURI
	case p.ImageURL != nil:
		req.ImageURI = *p.ImageURL
	}
	if p.ImageURI != nil || p.ImageURL != nil {
		checkURI("image_uri", req.ImageURI, &bad)
	}
	if p.LastFrameURI != nil {
		req.LastFrameURI = *p.LastFrameURI
		checkURI("last_frame_uri", req.LastFrameURI, &bad)
		if req.ImageURI == "" {
			bad = append(bad, Problem{"last_frame_uri", "needs image_uri"})
		}
		if !slices.Contains(lastFrameModels, req.Model) {
			bad = append(bad, Problem{"last_frame_uri", "is only supported by " + strings.Join(lastFrameModels, ", ")})
		}
	}
	return req, bad
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// alias maps a name the typed endpoint uses to the API's.
func alias(v *string, m map[string]string) *string {
	if v == nil {
		return nil
	}
	if a, ok := m[*v]; ok {
		return &a
	}
	return v
}

// oneOf checks an optional field against what the API accepts: absent, it
// is the first value.
func oneOf[T comparable](field string, v *T, allowed []T, bad *[]Problem) T {
	if v == nil {
		return allowed[0]
	}
	if !slices.Contains(allowed, *v) {
		names := make([]string, len(allowed))
		for i, a := range allowed {
			names[i] = fmt.Sprint(a)
		}
		*bad = append(*bad, Problem{field, "must be one of: " + strings.Join(names, ", ")})
	}
	return *v
}

func checkURI(field, v string, bad *[]Problem) {
	ok := len(v) <= maxURILen && (strings.HasPrefix(v, "https://") || strings.HasPrefix(v, "http://") || strings.HasPrefix(v, "data:image/"))
	if !ok {
		*bad = append(*bad, Problem{field, "must be an http(s) URL or a data:image/… URI"})
	}
}

// classify maps a non-2xx answer to a provider error. msg is the
// envelope's message (never the key: the API does not echo it).
func classify(status int, retryAfter time.Duration, body ErrorBody) *provider.Error {
	msg := body.Error.Message
	if msg == "" {
		msg = http.StatusText(status)
	}
	msg = "LTX-2 API: " + msg
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden || body.Error.Type == ErrAuthentication:
		return &provider.Error{Class: provider.ClassAuth, Message: msg}
	case status == http.StatusPaymentRequired:
		// Out of credits: the key is fine but cannot run anything until
		// the operator tops it up.
		return &provider.Error{Class: provider.ClassAuth, Message: msg}
	case status == http.StatusTooManyRequests:
		return &provider.Error{Class: provider.ClassRateLimited, Message: msg, RetryAfter: retryAfter}
	case status == http.StatusBadRequest || status == http.StatusUnprocessableEntity || status == http.StatusRequestEntityTooLarge:
		return &provider.Error{Class: provider.ClassInvalid, Message: msg}
	case status >= 500:
		return &provider.Error{Class: provider.ClassTransient, Message: msg}
	default:
		return &provider.Error{Class: provider.ClassPermanent, Message: msg}
	}
}

// ParseRetryAfter reads a Retry-After value: whole seconds or an HTTP date.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Result is the Result JSON of a succeeded job run on this provider: the
// video lives in poolgate's result store under the job id.
type Result struct {
	URL               string `json:"url"`
	ContentType       string `json:"contentType"`
	Size              int64  `json:"size"`
	UpstreamRequestID string `json:"upstreamRequestId"`
}

// ResultURL is where poolgate serves a job's stored result.
func ResultURL(jobID string) string { return "/v1/jobs/" + jobID + "/result" }
