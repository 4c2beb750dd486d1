package bench

import (
	"bytes"
	"context"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/poolgate/poolgate/internal/pgtest"
	"github.com/poolgate/poolgate/internal/retention"
	"github.com/poolgate/poolgate/internal/scheduler"
)

func TestMeasureRefills(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// One account with 2 slots: two jobs start at once; each freed slot is
	// taken again 5 ms and 15 ms later; the last job still runs at the end.
	uses := []slotUse{
		{account: 1, start: at(10), finish: at(100)},
		{account: 1, start: at(20), finish: at(150)},
		{account: 1, start: at(105), finish: at(200)},
		{account: 1, start: at(165)},
	}
	r := measureRefills(uses, 2, 2, t0, at(220))
	if r.fill != 20*time.Millisecond {
		t.Errorf("fill = %s, want 20ms (the second slot was first taken at 20ms)", r.fill)
	}
	if len(r.gaps) != 2 || r.gaps[0] != 5 || r.gaps[1] != 15 {
		t.Errorf("gaps = %v, want [5 15]", r.gaps)
	}
	// After the fill (20..220 ms, 2 slots = 400 slot-ms) the slots were
	// idle 100..105, 150..165 and 200..220: 40 ms.
	if want := 360.0 / 400; math.Abs(r.busy-want) > 1e-9 {
		t.Errorf("busy = %v, want %v", r.busy, want)
	}
	if r.done != 3 || r.windowDone != 3 {
		t.Errorf("done = %d and %d in the window, want 3 and 3", r.done, r.windowDone)
	}
}

func TestInvariantsBroken(t *testing.T) {
	t.Parallel()
	if b := (Invariants{MaxPeak: 3}).Broken(); len(b) != 0 {
		t.Errorf("clean run reported broken: %v", b)
	}
	v := Invariants{PeakOver: 1, MaxPeak: 4, Lost: 2, SlotsHeld: 1, DoubleSubmits: 1}
	if b := v.Broken(); len(b) != 4 {
		t.Errorf("want 4 broken invariants (peak, lost, slots, double), got %v", b)
	}
}

// TestRunSmall runs every scenario at a tiny scale against the test
// server: the bench must work, and the scheduler must keep its invariants.
func TestRunSmall(t *testing.T) {
	t.Parallel()
	var progress bytes.Buffer
	rep, err := Run(context.Background(), Config{
		ServerURL: pgtest.ServerURL(), Replicas: 2, Producers: 4,
		Jobs: 150, Accounts: 5, Slots: 3,
		PlacementPools: []int{2, 40}, PlacementJobs: 60,
		HTTPRequests: 60, HTTPConcurrency: 8,
		SatAccounts: 3, SatSlots: 2, SatQueued: 60,
		SatJobDuration: 150 * time.Millisecond, SatWindow: 1500 * time.Millisecond,
		DepthJobs: 40, DepthQueued: 500,
		PollInterval: 30 * time.Millisecond, Timeout: time.Minute,
		Progress: &progress,
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, progress.String())
	}
	var names []string
	for _, s := range rep.Scenarios {
		names = append(names, s.Name)
		if !s.OK {
			t.Errorf("%s: broken %v, errors %v", s.Name, s.Broken, s.Errors)
		}
		if s.Name == "throughput" && s.Metrics["jobs_per_sec"].Median <= 0 {
			t.Errorf("throughput: no jobs/s figure: %+v", s.Metrics)
		}
		checkNewMetrics(t, s)
	}
	if got := strings.Join(names, ","); got != "throughput,placement_2,placement_40,http,saturation,insert_depth" {
		t.Errorf("scenarios = %s", got)
	}
	var out bytes.Buffer
	rep.WriteTable(&out)
	if err := rep.WriteJSON(&out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, `{"bench":"poolgate"`) {
		t.Errorf("last line is not the JSON report: %s", last)
	}
	if t.Failed() {
		t.Logf("progress:\n%s\n%s", progress.String(), out.String())
	}
}

// checkNewMetrics checks the figures issue 10 added beside the old ones:
// Postgres work per job in every scenario (saying where it came from),
// the API's GET rate against a bare handler's, and inserts into an empty
// queue against a deep one.
func checkNewMetrics(t *testing.T, s Scenario) {
	t.Helper()
	want := []string{"wal_fsyncs_per_job", "stmts_per_job", "xacts_per_job"}
	switch s.Name {
	case "throughput":
		want = append(want, "insert_wal_fsyncs_per_job", "insert_stmts_per_job", "upstream_requests_per_job")
	case "saturation":
		want = append(want, "upstream_requests_per_job", "completion_lag_p50_ms", "completion_lag_max_ms", "peak_rss_mb")
	case "http":
		want = append(want, "get_vs_bare", "bare_rps", "bare_p99_ms", "post_queue_only_rps", "batch_jobs_per_sec")
	case "insert_depth":
		want = []string{"empty_jobs_per_sec", "deep_jobs_per_sec", "deep_vs_empty", "deep_queued",
			"empty_wal_fsyncs_per_job", "deep_stmts_per_job"}
	}
	for _, name := range want {
		if _, ok := s.Metrics[name]; !ok {
			t.Errorf("%s: no %s metric (has %v)", s.Name, name, slices.Sorted(maps.Keys(s.Metrics)))
		}
	}
	if src := s.Sources["stmts_per_job"]; s.Name != "insert_depth" && src == "" {
		t.Errorf("%s: stmts_per_job does not say where it came from", s.Name)
	}
	positive := map[string][]string{
		"http":         {"get_vs_bare", "bare_rps", "post_queue_only_rps", "batch_jobs_per_sec"},
		"insert_depth": {"empty_jobs_per_sec", "deep_jobs_per_sec", "deep_vs_empty"},
		"throughput":   {"xacts_per_job"},
		"saturation":   {"peak_rss_mb"},
	}
	for _, name := range positive[s.Name] {
		if s.Metrics[name].Median <= 0 {
			t.Errorf("%s: %s = %v, want a positive figure", s.Name, name, s.Metrics[name].Median)
		}
	}
	// An instant upstream answers the submit with the outcome: one request
	// a job. Jobs that run take a submit and at least one status read.
	if got := s.Metrics["upstream_requests_per_job"].Median; s.Name == "throughput" && got != 1 ||
		s.Name == "saturation" && got < 2 {
		t.Errorf("%s: upstream_requests_per_job = %v", s.Name, got)
	}
	if s.Name == "insert_depth" && s.Metrics["deep_queued"].Median != 540 {
		t.Errorf("insert_depth: deep_queued = %v, want 540 (40 + 500)", s.Metrics["deep_queued"].Median)
	}
}

// TestSoakSmall runs the soak briefly with retention shorter than the run:
// retention must delete finished jobs while they keep coming, so the jobs
// table holds fewer rows than were accepted, and nothing is lost.
func TestSoakSmall(t *testing.T) {
	t.Parallel()
	var progress bytes.Buffer
	rep, err := Run(context.Background(), Config{
		ServerURL: pgtest.ServerURL(), Scenarios: []string{"soak"}, Replicas: 2, Accounts: 3, Slots: 2,
		SoakRate: 100, SoakDuration: 4 * time.Second, SoakRetention: 500 * time.Millisecond,
		SoakJobDuration: 10 * time.Millisecond, PollInterval: 20 * time.Millisecond, Timeout: time.Minute,
		Cleanups: func(keep time.Duration) []retention.Cleanup {
			return []retention.Cleanup{{Name: "jobs", Retention: keep, Delete: scheduler.DeleteFinishedJobs}}
		},
		Progress: &progress,
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, progress.String())
	}
	s := rep.Scenarios[0]
	if !s.OK {
		t.Fatalf("soak: broken %v, errors %v\n%s", s.Broken, s.Errors, progress.String())
	}
	jobs, deleted, left := s.Metrics["jobs"].Median, s.Metrics["deleted_rows"].Median, s.Metrics["jobs_rows_end"].Median
	if jobs < 100 || deleted <= 0 || left >= jobs {
		t.Errorf("soak queued %v jobs, retention deleted %v rows and %v are left; want deletes while jobs keep coming\n%s",
			jobs, deleted, left, progress.String())
	}
}

func TestSoakNeedsCleanups(t *testing.T) {
	t.Parallel()
	rep, err := Run(context.Background(), Config{ServerURL: pgtest.ServerURL(), Scenarios: []string{"soak"},
		SoakDuration: time.Second, Progress: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if s := rep.Scenarios[0]; s.OK || len(s.Errors) == 0 || !strings.Contains(s.Errors[0], "Cleanups") {
		t.Errorf("a soak without cleanups must fail and say why; got %+v", s)
	}
}

// TestResultsSmall runs scenario 7 briefly: LTX-2 API jobs stream their
// videos through the real provider into the store and back out through
// the API, every byte checked, and it reports the RSS figures.
func TestResultsSmall(t *testing.T) {
	t.Parallel()
	var progress bytes.Buffer
	rep, err := Run(context.Background(), Config{
		ServerURL: pgtest.ServerURL(), Scenarios: []string{"results"}, ResultJobs: 4, ResultMB: 1, ResultStore: "dir",
		PollInterval: 20 * time.Millisecond, Timeout: time.Minute, Progress: &progress,
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, progress.String())
	}
	s := rep.Scenarios[0]
	if !s.OK {
		t.Fatalf("results: broken %v, errors %v\n%s", s.Broken, s.Errors, progress.String())
	}
	if got := s.Metrics["streamed_mb"].Median; got != 4 {
		t.Errorf("streamed %v MB, want 4", got)
	}
	if s.Metrics["peak_rss_mb"].Median <= 0 {
		t.Errorf("no RSS figure: %+v", s.Metrics)
	}
}
