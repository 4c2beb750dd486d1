package console

import (
	"encoding/json"
	"net/http"
	"sort"
	"time"
)

// liveAccountsShown bounds the accounts the Live page lists (busiest
// first), so a pool of 10,000 accounts polls as cheaply as a small one.
const liveAccountsShown = 200

// chartMinutes is the span of the Live chart.
const chartMinutes = 60

// livePollEvery is how often the Live page asks for a fresh snapshot.
const livePollEvery = 2 * time.Second

// liveSnapshot is the Live page's state, as live.json sends it.
type liveSnapshot struct {
	At        string        `json:"at"`
	Queued    int           `json:"queued"`
	Executing int           `json:"executing"`
	Free      int           `json:"free"`
	Accounts  []liveAccount `json:"accounts"`
	Hidden    int           `json:"hidden"` // accounts beyond liveAccountsShown
}

type liveAccount struct {
	Email     string `json:"email"`
	MaxJobs   int    `json:"maxJobs"`
	Executing int    `json:"executing"`
}

func (c *Console) snapshot(r *http.Request, rq *request) (liveSnapshot, error) {
	ctx := r.Context()
	avail, err := c.Jobs.Available(ctx, rq.p.Scope)
	if err != nil {
		return liveSnapshot{}, err
	}
	queued, err := c.Stats.QueueDepth(ctx, rq.p.Scope)
	if err != nil {
		return liveSnapshot{}, err
	}
	s := liveSnapshot{At: c.Now().UTC().Format(time.RFC3339), Queued: queued, Executing: avail.Executing,
		Accounts: make([]liveAccount, 0, min(len(avail.Available), liveAccountsShown))}
	caps := avail.Available
	sort.SliceStable(caps, func(i, j int) bool { return caps[i].Executing > caps[j].Executing })
	for i, a := range caps {
		s.Free += a.Available
		if i < liveAccountsShown {
			s.Accounts = append(s.Accounts, liveAccount{Email: a.Email, MaxJobs: a.MaxJobs, Executing: a.Executing})
		}
	}
	s.Hidden = max(len(caps)-liveAccountsShown, 0)
	return s, nil
}

type liveView struct {
	Snapshot liveSnapshot
	Recent   []minuteRow
	PollMS   int64
}

type minuteRow struct {
	Minute                   string
	Started, Finished, Queue int
}

func (c *Console) livePage(w http.ResponseWriter, r *http.Request, rq *request) {
	s, err := c.snapshot(r, rq)
	if err != nil {
		c.internal(w, r, rq, err)
		return
	}
	mins, err := c.activity(r.Context(), rq.p.Scope)
	if err != nil {
		c.internal(w, r, rq, err)
		return
	}
	v := liveView{Snapshot: s, PollMS: livePollEvery.Milliseconds()}
	// The chart's numbers as a table too (the last ten minutes), for screen
	// readers and for copying.
	for i := len(mins) - 1; i >= 0 && i >= len(mins)-10; i-- {
		m := mins[i]
		v.Recent = append(v.Recent, minuteRow{Minute: m.Start.UTC().Format("15:04"), Started: m.Started, Finished: m.Finished, Queue: m.Queued})
	}
	c.render(w, r, rq, http.StatusOK, "live", view{Title: "Live", Data: v})
}

// liveJSON is what the Live page polls.
func (c *Console) liveJSON(w http.ResponseWriter, r *http.Request, rq *request) {
	s, err := c.snapshot(r, rq)
	if err != nil {
		c.Logger.Error("console: live snapshot", "err", err)
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(s)
}

// liveChart is the started/finished per minute and queue depth chart.
func (c *Console) liveChart(w http.ResponseWriter, r *http.Request, rq *request) {
	mins, err := c.activity(r.Context(), rq.p.Scope)
	if err != nil {
		c.Logger.Error("console: live chart", "err", err)
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(chartSVG(mins))
}
