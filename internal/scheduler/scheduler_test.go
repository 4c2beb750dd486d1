package scheduler_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/scheduler"
)

func fastSim() sim.Config {
	c := sim.DefaultConfig()
	c.JobDuration, c.Jitter = 60*time.Millisecond, 30*time.Millisecond
	return c
}

// TestInvariantsAcrossReplicas: many producers, three replicas, small
// maxJobs. The upstream never sees more than maxJobs per account, every
// job ends, no slot leaks, no attempt is sent twice.
func TestInvariantsAcrossReplicas(t *testing.T) {
	t.Parallel()
	w := newWorld(t, fastSim())
	w.addAccounts(4, 2)
	replicas := []*scheduler.Scheduler{w.replica(nil), w.replica(nil), w.replica(nil)}

	const producers, perProducer = 12, 25
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range perProducer {
				_, _, err := replicas[(p+i)%3].Create(context.Background(), w.scope, scheduler.NewJob{
					Type: "video", Params: json.RawMessage(`{"prompt":"a cat"}`)}, nil)
				if err != nil {
					t.Errorf("create: %v", err)
				}
			}
		})
	}
	wg.Wait()
	w.waitTerminal(60 * time.Second)
	st := w.checkInvariants()

	var succeeded int
	w.pool.QueryRow(context.Background(), `SELECT count(*) FROM jobs WHERE state = 'succeeded'`).Scan(&succeeded)
	if succeeded != producers*perProducer {
		t.Errorf("%d of %d jobs succeeded", succeeded, producers*perProducer)
	}
	busy := 0
	for _, a := range st.Accounts {
		if a.Peak == 2 {
			busy++
		}
	}
	if busy == 0 {
		t.Error("no account ever ran two jobs at once: the test did not stress the limit")
	}
}
