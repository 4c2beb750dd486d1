// Package timefmt writes times the way poolgate's JSON shows them: like
// useapi.net, "2025-06-03T12:13:14.000Z" (UTC, milliseconds).
package timefmt

import "time"

// Layout is the one format of every *UTC field.
const Layout = "2006-01-02T15:04:05.000Z"

// UTC formats t.
func UTC(t time.Time) string { return t.UTC().Format(Layout) }

// UTCPtr formats t, or returns nil for a nil t (JSON null).
func UTCPtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := UTC(*t)
	return &s
}
