package api

import (
	"slices"
	"strconv"
	"strings"

	"github.com/poolgate/poolgate/internal/errs"
)

// catalog is the one table of what the typed LTX endpoints accept. The
// first value of each list is the default. Changing what LTX offers is a
// change here only.
var catalog = struct {
	VideoModels, VideoResolutions, VideoAspectRatios []string
	VideoDurations                                   []int
	ImageModels, ImageAspectRatios                   []string
}{
	VideoModels:       []string{"ltxv-2-fast", "ltxv-2-pro", "ltxv-13b"},
	VideoResolutions:  []string{"1080p", "720p", "1440p", "2160p"},
	VideoAspectRatios: []string{"16:9", "9:16", "1:1"},
	VideoDurations:    []int{6, 8, 10},
	ImageModels:       []string{"flux-1-kontext", "flux-1-dev", "nano-banana"},
	ImageAspectRatios: []string{"16:9", "9:16", "1:1", "4:3", "3:4"},
}

// MaxPromptLen bounds prompts of the typed endpoints.
const MaxPromptLen = 2000

// oneOf checks an optional string field against its closed set, filling in
// the default when it is empty.
func oneOf(field string, v *string, allowed []string, bad *[]errs.FieldError) {
	if *v == "" {
		*v = allowed[0]
		return
	}
	if !slices.Contains(allowed, *v) {
		*bad = append(*bad, errs.FieldError{Field: field, Message: "must be one of: " + strings.Join(allowed, ", ")})
	}
}

func oneOfInt(field string, v *int, allowed []int, bad *[]errs.FieldError) int {
	if v == nil {
		return allowed[0]
	}
	if !slices.Contains(allowed, *v) {
		names := make([]string, len(allowed))
		for i, a := range allowed {
			names[i] = strconv.Itoa(a)
		}
		*bad = append(*bad, errs.FieldError{Field: field, Message: "must be one of: " + strings.Join(names, ", ")})
	}
	return *v
}
