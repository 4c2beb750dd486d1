package api

import (
	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/timefmt"
)

// accountHealthJSON is the health part of the account view: why and since
// when the account has its status, its quarantine, its probes, and its
// latest health events.
type accountHealthJSON struct {
	StatusReason        *string           `json:"statusReason"` // a short code; null while active
	StatusSinceUTC      *string           `json:"statusSinceUTC"`
	QuarantineReason    *string           `json:"quarantineReason"`
	QuarantinedUntilUTC *string           `json:"quarantinedUntilUTC"`
	Probe               bool              `json:"probe"`
	NextProbeUTC        *string           `json:"nextProbeUTC"`
	Health              []healthEventJSON `json:"health"`
}

// healthEventJSON is one health transition.
type healthEventJSON struct {
	Kind     accounts.EventKind `json:"kind"`
	Reason   string             `json:"reason"`
	Message  string             `json:"message"`
	UntilUTC *string            `json:"untilUTC"`
	AtUTC    string             `json:"atUTC"`
}

func accountHealthOut(a accounts.Account) accountHealthJSON {
	out := accountHealthJSON{
		StatusReason: stringOrNil(a.StatusCode), StatusSinceUTC: timefmt.UTCPtr(a.Since),
		Probe: a.Probe, NextProbeUTC: timefmt.UTCPtr(a.NextProbeAt), Health: []healthEventJSON{},
	}
	if a.QuarantinedUntil != nil {
		out.QuarantineReason, out.QuarantinedUntilUTC = stringOrNil(a.QuarantineReason), timefmt.UTCPtr(a.QuarantinedUntil)
	}
	for _, ev := range a.Health {
		out.Health = append(out.Health, healthEventJSON{Kind: ev.Kind, Reason: ev.Reason, Message: ev.Message,
			UntilUTC: timefmt.UTCPtr(ev.Until), AtUTC: timefmt.UTC(ev.At)})
	}
	return out
}

func stringOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
