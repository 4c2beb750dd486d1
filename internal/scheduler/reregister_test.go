package scheduler_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/scheduler"
)

// TestReregisterAdoptsRunningJobs: deleting an account while its job runs
// and registering the same email again must not give the upstream account
// a second slot: the new row adopts the running job and its slot.
func TestReregisterAdoptsRunningJobs(t *testing.T) {
	t.Parallel()
	cfg := fastSim()
	cfg.JobDuration, cfg.Jitter = 800*time.Millisecond, 0
	w := newWorld(t, cfg)
	w.addAccount(w.scope, "a@x.io", 1)
	s := w.replica(nil)
	create := func() scheduler.Job {
		j, _, err := s.Create(context.Background(), w.scope, scheduler.NewJob{Type: "video", Params: json.RawMessage(`{}`)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	first := create()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, _ := s.Get(context.Background(), w.scope, first.ID)
		if j.State == scheduler.StateRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("first job never ran: %s", j.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := w.accounts.Delete(context.Background(), w.scope, "a@x.io"); err != nil {
		t.Fatal(err)
	}
	w.addAccount(w.scope, "a@x.io", 1)
	var running int
	w.pool.QueryRow(context.Background(), `SELECT held FROM account_slots WHERE email = 'a@x.io'`).Scan(&running)
	if running != 1 {
		t.Errorf("re-registered account shows %d running, want the adopted 1", running)
	}
	create()
	w.waitTerminal(20 * time.Second)
	w.checkInvariants()
	if peak := w.sim.Stats().Accounts["a@x.io"].Peak; peak != 1 {
		t.Errorf("upstream saw %d jobs at once on a maxJobs=1 account", peak)
	}
}
