package console

import (
	"context"
	"sync"
	"time"

	"github.com/poolgate/poolgate/internal/scheduler"
	"github.com/poolgate/poolgate/internal/tenant"
)

// defaultChartTTL is how long a tenant's chart data is reused. The chart
// moves by the minute, and reading the last hour of jobs is a scan that
// every open Live page would otherwise repeat.
const defaultChartTTL = 10 * time.Second

type activityCache struct {
	mu sync.Mutex
	m  map[tenant.Scope]activityEntry
}

type activityEntry struct {
	at   time.Time
	mins []scheduler.Minute
}

// activity returns the last hour's job flow of scope, from the cache when
// it is fresh enough.
func (c *Console) activity(ctx context.Context, scope tenant.Scope) ([]scheduler.Minute, error) {
	now := c.Now()
	c.acts.mu.Lock()
	e, ok := c.acts.m[scope]
	c.acts.mu.Unlock()
	if ok && now.Sub(e.at) < c.ChartTTL {
		return e.mins, nil
	}
	mins, err := c.Stats.Activity(ctx, scope, now, chartMinutes)
	if err != nil {
		return nil, err
	}
	if c.ChartTTL > 0 {
		c.acts.mu.Lock()
		for s, old := range c.acts.m {
			if now.Sub(old.at) >= c.ChartTTL {
				delete(c.acts.m, s)
			}
		}
		c.acts.m[scope] = activityEntry{at: now, mins: mins}
		c.acts.mu.Unlock()
	}
	return mins, nil
}
