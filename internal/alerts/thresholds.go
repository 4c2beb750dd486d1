package alerts

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Threshold is how long before a refresh token expires an alert is raised.
type Threshold struct {
	Name   string // as configured, e.g. "7d"; used in alerts and their dedupe keys
	Before time.Duration
}

// ParseThresholds reads a list like "7d,3d,1d" (days, or any Go duration
// like "12h") and returns it sorted from the earliest warning to the last.
func ParseThresholds(s string) ([]Threshold, error) {
	var out []Threshold
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		d, err := parseDays(part)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("threshold %q is not a positive duration like 7d or 12h", part)
		}
		if slices.ContainsFunc(out, func(t Threshold) bool { return t.Before == d }) {
			return nil, fmt.Errorf("threshold %q is listed twice", part)
		}
		out = append(out, Threshold{Name: part, Before: d})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no thresholds in %q", s)
	}
	slices.SortFunc(out, func(a, b Threshold) int { return int((b.Before - a.Before) / time.Second) })
	return out, nil
}

func parseDays(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || n > 3650 {
			return 0, fmt.Errorf("bad days")
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	return time.ParseDuration(s)
}
