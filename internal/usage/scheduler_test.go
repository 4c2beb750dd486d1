package usage_test

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/accounts"
	"github.com/poolgate/poolgate/internal/fakeclock"
	"github.com/poolgate/poolgate/internal/pgtest"
	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
	"github.com/poolgate/poolgate/internal/provider/sim"
	"github.com/poolgate/poolgate/internal/scheduler"
	"github.com/poolgate/poolgate/internal/secret"
	"github.com/poolgate/poolgate/internal/tenant"
	"github.com/poolgate/poolgate/internal/usage"
)

// A job placed in one hour and ending in the next counts as started in
// the first and succeeded in the second, under the key that created it,
// with the time between as its generation time: the scheduler's hooks and
// the simulator read one injected clock.
func TestSchedulerHooksBucketByTheirOwnHour(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	key := make([]byte, secret.KeySize)
	rand.Read(key)
	box, _ := secret.NewBox(key)
	hour := time.Now().UTC().Truncate(time.Hour)
	clock := fakeclock.New(hour.Add(59 * time.Minute))

	cfg := sim.DefaultConfig()
	cfg.JobDuration, cfg.Jitter = 10*time.Minute, 0
	srv := httptest.NewServer(sim.New(cfg, clock.Now))
	t.Cleanup(srv.Close)

	store := accounts.NewStore(pool, box, time.Now)
	acme := tenantScope(t, pool, "acme", tenant.Live)
	maxJobs := 2
	if _, err := store.Register(context.Background(), acme, accounts.Registration{
		Cookie: sim.Cookie("a@x.io", time.Now().Add(24*time.Hour), time.Now().Add(90*24*time.Hour)), MaxJobs: &maxJobs,
	}); err != nil {
		t.Fatal(err)
	}
	var hooks usage.Hooks
	sched := scheduler.New(scheduler.Config{
		Pool: pool, Accounts: store, Provider: ltxstudio.New(srv.URL, nil), Now: clock.Now,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		LeaseTTL: time.Hour, PollInterval: 20 * time.Millisecond, WakeInterval: 50 * time.Millisecond,
		OnFinish: hooks.Finished, OnStarted: hooks.Started, OnRetried: hooks.Retried,
	})
	sched.Start(context.Background())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		sched.Stop(ctx)
	})

	ctx := context.Background()
	job, _, err := sched.Create(ctx, acme, scheduler.NewJob{Type: "video", KeyID: "key_1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, sched, acme, job.ID, scheduler.StateRunning)
	clock.Advance(10 * time.Minute) // the generation ends at hour+1:09
	waitState(t, sched, acme, job.ID, scheduler.StateSucceeded)

	hours := read(t, pool, acme, usage.Range{From: hour, To: hour.Add(2 * time.Hour)}, usage.ByHour, "a@x.io")
	if len(hours) != 2 || !hours[0].Time.Equal(hour) || hours[0].Started != 1 || hours[0].Succeeded != 0 ||
		!hours[1].Time.Equal(hour.Add(time.Hour)) || hours[1].Started != 0 || hours[1].Succeeded != 1 {
		t.Fatalf("hours = %+v; want started at %s and succeeded in the hour after", hours, hour)
	}
	if p50, ok := hours[1].Generation.Quantile(0.5); !ok || !within(p50, 10*time.Minute) {
		t.Errorf("generation p50 = %v, want about 10m", p50)
	}
	keys := read(t, pool, acme, usage.Range{From: hour, To: hour.Add(2 * time.Hour)}, usage.ByKey, "")
	if len(keys) != 1 || keys[0].Key != "key_1" || keys[0].Started != 1 || keys[0].Succeeded != 1 {
		t.Errorf("by key = %+v; want everything under key_1", keys)
	}
}

func waitState(t *testing.T, s *scheduler.Scheduler, scope tenant.Scope, id string, want scheduler.State) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		j, err := s.Get(context.Background(), scope, id)
		if err != nil {
			t.Fatal(err)
		}
		if j.State == want {
			return
		}
		if j.State.Terminal() || time.Now().After(deadline) {
			t.Fatalf("job %s is %s, want %s", id, j.State, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
