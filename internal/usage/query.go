package usage

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/poolgate/poolgate/internal/dbx"
	"github.com/poolgate/poolgate/internal/tenant"
)

// Counts is what a group of buckets adds up to. Its JSON form is the one
// of the counts written ahead in usage_pending.rows (the API has its own).
type Counts struct {
	Started   int64 `json:"started,omitempty"`
	Succeeded int64 `json:"succeeded,omitempty"`
	Failed    int64 `json:"failed,omitempty"`
	Canceled  int64 `json:"canceled,omitempty"`
	Retried   int64 `json:"retried,omitempty"`
	// FailedBy is failed jobs by error code.
	FailedBy map[string]int64 `json:"failed_by,omitempty"`
	// Generation is the generation times of succeeded jobs.
	Generation Histogram `json:"gen_hist,omitempty"`
}

// add folds o into c.
func (c *Counts) add(o Counts) {
	c.Started += o.Started
	c.Succeeded += o.Succeeded
	c.Failed += o.Failed
	c.Canceled += o.Canceled
	c.Retried += o.Retried
	for k, n := range o.FailedBy {
		if c.FailedBy == nil {
			c.FailedBy = map[string]int64{}
		}
		c.FailedBy[k] += n
	}
	c.Generation.Merge(o.Generation)
}

// GroupBy says how a range of buckets is grouped.
type GroupBy string

// Groupings.
const (
	ByAccount GroupBy = "account"
	ByKey     GroupBy = "key"
	ByDay     GroupBy = "day"  // UTC days
	ByHour    GroupBy = "hour" // the buckets themselves
)

// groupExpr is the SQL expression each grouping groups by, as text.
var groupExpr = map[GroupBy]string{
	ByAccount: "account_email",
	ByKey:     "key_id",
	ByDay:     "extract(epoch FROM date_trunc('day', hour, 'UTC'))::bigint::text",
	ByHour:    "extract(epoch FROM hour)::bigint::text",
}

// ValidGroupBy reports whether g names a grouping of Usage.
func ValidGroupBy(g string) bool {
	_, ok := groupExpr[GroupBy(g)]
	return ok
}

// Range is a half-open range of hours [From, To). From is rounded down to
// its hour: a bucket counts when its hour starts in the range.
type Range struct{ From, To time.Time }

// Group is one group's counts: Key is the account's email, the key id, or
// (by day and hour) Time.
type Group struct {
	Key  string
	Time time.Time
	Counts
}

// usageRead sums the buckets of a range by group in one pass per part:
// counts ('n'), failures by code ('f'), histogram buckets ('h'). $5 = ”
// reads every account. It reads the rolled-up buckets and the pending ones
// in one statement, so in one snapshot: a roll-up that moves counts
// between the two is seen whole or not at all.
const usageRead = `
WITH b AS (
	SELECT hour, account_email, key_id, started, succeeded, failed, canceled, retried, failed_by, gen_hist
	FROM usage_hourly
	WHERE tenant_id = $1 AND mode = $2 AND hour >= $3 AND hour < $4 AND ($5 = '' OR account_email = $5)
	UNION ALL
	SELECT x.hour, x.account_email, x.key_id, coalesce(x.started, 0), coalesce(x.succeeded, 0),
		coalesce(x.failed, 0), coalesce(x.canceled, 0), coalesce(x.retried, 0),
		coalesce(x.failed_by, '{}'), coalesce(x.gen_hist, '{}')
	FROM usage_pending p, jsonb_to_recordset(p.rows) AS x (hour timestamptz, account_email text, key_id text,
		started bigint, succeeded bigint, failed bigint, canceled bigint, retried bigint, failed_by jsonb, gen_hist integer[])
	WHERE p.tenant_id = $1 AND p.mode = $2 AND x.hour >= $3 AND x.hour < $4 AND ($5 = '' OR x.account_email = $5)
), r AS (
	SELECT %s AS g, started, succeeded, failed, canceled, retried, failed_by, gen_hist FROM b
)
SELECT g, 'n', '', sum(started)::bigint, sum(succeeded)::bigint, sum(failed)::bigint, sum(canceled)::bigint, sum(retried)::bigint
FROM r GROUP BY g
UNION ALL
SELECT g, 'f', f.k, sum(f.v::bigint)::bigint, 0, 0, 0, 0
FROM r, jsonb_each_text(r.failed_by) AS f (k, v) GROUP BY g, f.k
UNION ALL
SELECT g, 'h', h.i::text, sum(h.v)::bigint, 0, 0, 0, 0
FROM r, unnest(r.gen_hist) WITH ORDINALITY AS h (v, i) WHERE h.v > 0 GROUP BY g, h.i`

// Usage sums the scope's buckets in rg by group, in group order (by time
// for ByDay and ByHour, by key otherwise); account, if not "", keeps only
// that account's buckets. Groups with nothing in them are left out.
func Usage(ctx context.Context, db dbx.DBTX, scope tenant.Scope, rg Range, by GroupBy, account string) ([]Group, error) {
	expr, ok := groupExpr[by]
	if !ok {
		return nil, fmt.Errorf("usage: unknown grouping %q", by)
	}
	rows, err := db.Query(ctx, fmt.Sprintf(usageRead, expr), scope.TenantID, scope.Mode,
		rg.From.UTC().Truncate(time.Hour), rg.To, account)
	if err != nil {
		return nil, err
	}
	groups := map[string]*Group{}
	var (
		g, part, sub string
		n            [5]int64
	)
	_, err = pgx.ForEachRow(rows, []any{&g, &part, &sub, &n[0], &n[1], &n[2], &n[3], &n[4]}, func() error {
		gr := groups[g]
		if gr == nil {
			gr = &Group{Key: g}
			groups[g] = gr
		}
		switch part {
		case "n":
			gr.add(Counts{Started: n[0], Succeeded: n[1], Failed: n[2], Canceled: n[3], Retried: n[4]})
		case "f":
			gr.add(Counts{FailedBy: map[string]int64{sub: n[0]}})
		case "h":
			i, err := strconv.Atoi(sub) // 1-based
			if err != nil || i < 1 || i > HistBuckets {
				return fmt.Errorf("usage: histogram bucket %q", sub)
			}
			h := make(Histogram, i)
			h[i-1] = n[0]
			gr.Generation.Merge(h)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return sorted(groups, by)
}

// sorted orders groups, reading time groups' keys as Unix seconds.
func sorted(groups map[string]*Group, by GroupBy) ([]Group, error) {
	out := make([]Group, 0, len(groups))
	for _, g := range groups {
		if by == ByDay || by == ByHour {
			sec, err := strconv.ParseInt(g.Key, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("usage: time group %q", g.Key)
			}
			g.Time, g.Key = time.Unix(sec, 0).UTC(), ""
		}
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b Group) int {
		return cmp.Or(a.Time.Compare(b.Time), strings.Compare(a.Key, b.Key))
	})
	return out, nil
}

// Total adds up groups.
func Total(groups []Group) Counts {
	var c Counts
	for _, g := range groups {
		c.add(g.Counts)
	}
	return c
}

// Store reads usage for the API.
type Store struct{ db dbx.DBTX }

// NewStore returns a Store reading from db (a pool).
func NewStore(db dbx.DBTX) *Store { return &Store{db: db} }

// Usage is the package's Usage on the store's database.
func (s *Store) Usage(ctx context.Context, scope tenant.Scope, rg Range, by GroupBy, account string) ([]Group, error) {
	return Usage(ctx, s.db, scope, rg, by, account)
}
