package api

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/poolgate/poolgate/internal/errs"
	"github.com/poolgate/poolgate/internal/timefmt"
	"github.com/poolgate/poolgate/internal/usage"
)

// Usage ranges: the default span, and the longest a request may ask for
// (buckets are kept 90 days by default; a longer span only reads more).
const (
	defaultUsageSpan = 24 * time.Hour
	maxUsageSpan     = 366 * 24 * time.Hour
)

// usageCountsJSON is what a group of hourly buckets adds up to.
type usageCountsJSON struct {
	Started        int64            `json:"started"`
	Succeeded      int64            `json:"succeeded"`
	Failed         int64            `json:"failed"`
	FailedByReason map[string]int64 `json:"failedByReason"`
	Canceled       int64            `json:"canceled"`
	Retried        int64            `json:"retried"`
	// Generation times of succeeded jobs, within ±9% (see internal/usage).
	GenerationP50Ms *int64 `json:"generationP50Ms"`
	GenerationP95Ms *int64 `json:"generationP95Ms"`
}

func usageCountsOut(c usage.Counts) usageCountsJSON {
	out := usageCountsJSON{Started: c.Started, Succeeded: c.Succeeded, Failed: c.Failed,
		FailedByReason: c.FailedBy, Canceled: c.Canceled, Retried: c.Retried}
	if out.FailedByReason == nil {
		out.FailedByReason = map[string]int64{}
	}
	if d, ok := c.Generation.Quantile(0.50); ok {
		ms := d.Milliseconds()
		out.GenerationP50Ms = &ms
	}
	if d, ok := c.Generation.Quantile(0.95); ok {
		ms := d.Milliseconds()
		out.GenerationP95Ms = &ms
	}
	return out
}

type usageHourJSON struct {
	Hour string `json:"hour"`
	usageCountsJSON
}

type accountStatsJSON struct {
	Email  string          `json:"email"`
	From   string          `json:"from"`
	To     string          `json:"to"`
	Totals usageCountsJSON `json:"totals"`
	Hours  []usageHourJSON `json:"hours"`
}

type usageGroupJSON struct {
	// Group is the account's email, the key id or the UTC day
	// (YYYY-MM-DD); null for jobs that never ran on an account or were
	// created without a key.
	Group *string `json:"group"`
	usageCountsJSON
}

type usageReportJSON struct {
	GroupBy string           `json:"groupBy"`
	From    string           `json:"from"`
	To      string           `json:"to"`
	Totals  usageCountsJSON  `json:"totals"`
	Data    []usageGroupJSON `json:"data"`
}

// usageRange reads ?from=&to= (RFC 3339): by default the last 24 hours,
// from rounded down to its hour.
func (s *Server) usageRange(c echo.Context) (usage.Range, error) {
	var (
		rg     usage.Range
		fields []errs.FieldError
	)
	parse := func(name string) (time.Time, bool) {
		v := c.QueryParam(name)
		if v == "" {
			return time.Time{}, false
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			fields = append(fields, errs.FieldError{Field: name, Message: "must be an RFC 3339 time, e.g. 2026-01-02T15:04:05Z"})
			return time.Time{}, false
		}
		return t.UTC(), true
	}
	from, hasFrom := parse("from")
	to, hasTo := parse("to")
	if len(fields) > 0 {
		return rg, errs.Fields(fields...)
	}
	if !hasTo {
		to = s.Now().UTC()
	}
	if !hasFrom {
		from = to.Add(-defaultUsageSpan)
	}
	rg = usage.Range{From: from.Truncate(time.Hour), To: to}
	switch {
	case !rg.To.After(rg.From):
		return rg, errs.Invalid("invalid_range", "to must be after from")
	case rg.To.Sub(rg.From) > maxUsageSpan:
		return rg, errs.Invalid("invalid_range", "a range spans at most 366 days")
	}
	return rg, nil
}

// accountStats is GET /v1/accounts/{email}/stats: one account's usage by
// hour, and its totals.
func (s *Server) accountStats(c echo.Context) error {
	rg, err := s.usageRange(c)
	if err != nil {
		return err
	}
	ctx, scope := c.Request().Context(), principal(c).Scope
	a, err := s.Accounts.Get(ctx, scope, c.Param("email"))
	if err != nil {
		return err
	}
	hours, err := s.UsageStats.Usage(ctx, scope, rg, usage.ByHour, a.Email)
	if err != nil {
		return err
	}
	out := accountStatsJSON{Email: a.Email, From: timefmt.UTC(rg.From), To: timefmt.UTC(rg.To),
		Totals: usageCountsOut(usage.Total(hours)), Hours: make([]usageHourJSON, len(hours))}
	for i, h := range hours {
		out.Hours[i] = usageHourJSON{Hour: timefmt.UTC(h.Time), usageCountsJSON: usageCountsOut(h.Counts)}
	}
	return c.JSON(http.StatusOK, out)
}

// getUsage is GET /v1/usage?groupBy=account|key|day: the pool's usage
// grouped, and its totals.
func (s *Server) getUsage(c echo.Context) error {
	by := c.QueryParam("groupBy")
	if by == "" {
		by = string(usage.ByAccount)
	}
	if by == string(usage.ByHour) || !usage.ValidGroupBy(by) {
		return errs.Fields(errs.FieldError{Field: "groupBy", Message: "must be account, key or day"})
	}
	rg, err := s.usageRange(c)
	if err != nil {
		return err
	}
	groups, err := s.UsageStats.Usage(c.Request().Context(), principal(c).Scope, rg, usage.GroupBy(by), "")
	if err != nil {
		return err
	}
	out := usageReportJSON{GroupBy: by, From: timefmt.UTC(rg.From), To: timefmt.UTC(rg.To),
		Totals: usageCountsOut(usage.Total(groups)), Data: make([]usageGroupJSON, len(groups))}
	for i, g := range groups {
		var name *string
		switch {
		case usage.GroupBy(by) == usage.ByDay:
			day := g.Time.Format(time.DateOnly)
			name = &day
		case g.Key != "":
			name = &g.Key
		}
		out.Data[i] = usageGroupJSON{Group: name, usageCountsJSON: usageCountsOut(g.Counts)}
	}
	return c.JSON(http.StatusOK, out)
}
