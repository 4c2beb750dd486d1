package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
)

// Report is everything a bench run measured; its JSON form is the bench's
// last output line.
type Report struct {
	Bench     string         `json:"bench"`
	Machine   Machine        `json:"machine"`
	Config    map[string]any `json:"config"`
	Scenarios []Scenario     `json:"scenarios"`
	Compare   *Comparison    `json:"compare,omitempty"`
	OK        bool           `json:"ok"`
}

// Machine describes where the figures were taken.
type Machine struct {
	CPUs     int    `json:"cpus"`
	CPU      string `json:"cpu"`
	Go       string `json:"go"`
	OS       string `json:"os"`
	Postgres string `json:"postgres"`
	// Fsync and SynchronousCommit change commit costs by an order of
	// magnitude, so they belong with every figure.
	Fsync             string `json:"fsync"`
	SynchronousCommit string `json:"synchronous_commit"`
}

// Scenario is one scenario's figures over its runs.
type Scenario struct {
	Name       string            `json:"name"`
	Runs       int               `json:"runs"`
	Metrics    map[string]Metric `json:"metrics"`
	Invariants Invariants        `json:"invariants"`
	// Diagnostics are Postgres's access counters per job in the first
	// run's measured phase (see pgCounters).
	Diagnostics map[string]float64 `json:"pg_per_job,omitempty"`
	Broken      []string           `json:"broken,omitempty"`
	Errors      []string           `json:"errors,omitempty"`
	OK          bool               `json:"ok"`
	order       []string
	// Sources says where figures that depend on the server came from
	// (pg_stat_statements or only pg_stat_database, say), by metric.
	Sources map[string]string `json:"sources,omitempty"`
}

// Metric is one figure: the median of its runs, and each run's value.
type Metric struct {
	Median float64   `json:"median"`
	Unit   string    `json:"unit"`
	Values []float64 `json:"runs"`
}

func (sc *Scenario) add(s *sample) {
	if sc.Metrics == nil {
		sc.Metrics = map[string]Metric{}
	}
	if sc.Diagnostics == nil {
		sc.Diagnostics = s.diag
	}
	if sc.Sources == nil {
		sc.Sources = s.sources
	}
	for _, name := range s.names {
		m, ok := sc.Metrics[name]
		if !ok {
			sc.order = append(sc.order, name)
		}
		m.Unit = s.units[name]
		m.Values = append(m.Values, round(s.vals[name]))
		m.Median = round(median(m.Values))
		sc.Metrics[name] = m
	}
}

// round keeps four significant digits: enough for any figure here, and
// it keeps the JSON line readable.
func round(v float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 4, 64), 64)
	return r
}

// Comparison is poolgate's scenario-1 throughput against River's.
type Comparison struct {
	Against         string  `json:"against"`
	Metric          string  `json:"metric"`
	Poolgate        float64 `json:"poolgate"`
	Other           float64 `json:"other"`
	Ratio           float64 `json:"ratio"`
	InsertPoolgate  float64 `json:"insert_poolgate,omitempty"`
	InsertOther     float64 `json:"insert_other,omitempty"`
	InsertRatio     float64 `json:"insert_ratio,omitempty"`
	OtherConfigNote string  `json:"other_config,omitempty"`
}

// CompareWith reads another bench's report (River's, from bench/river) and
// sets r.Compare to the ratio of the throughput scenarios' jobs_per_sec.
func (r *Report) CompareWith(other io.Reader) error {
	var o Report
	if err := json.NewDecoder(lastLine(other)).Decode(&o); err != nil {
		return fmt.Errorf("read the other bench's JSON line: %w", err)
	}
	mine, ok1 := r.metric("throughput", "jobs_per_sec")
	theirs, ok2 := o.metric("throughput", "jobs_per_sec")
	if !ok1 || !ok2 || theirs == 0 {
		return fmt.Errorf("both reports need a throughput scenario with jobs_per_sec")
	}
	c := &Comparison{Against: o.Bench, Metric: "throughput.jobs_per_sec", Poolgate: mine, Other: theirs,
		Ratio: round(mine / theirs)}
	if a, ok := r.metric("throughput", "insert_jobs_per_sec"); ok {
		if b, ok := o.metric("throughput", "insert_jobs_per_sec"); ok && b > 0 {
			c.InsertPoolgate, c.InsertOther, c.InsertRatio = a, b, round(a/b)
		}
	}
	if b, err := json.Marshal(o.Config); err == nil {
		c.OtherConfigNote = string(b)
	}
	r.Compare = c
	return nil
}

func (r *Report) metric(scenario, name string) (float64, bool) {
	for _, s := range r.Scenarios {
		if s.Name == scenario {
			m, ok := s.Metrics[name]
			return m.Median, ok
		}
	}
	return 0, false
}

// lastLine returns a reader over the last non-empty line of rd.
func lastLine(rd io.Reader) io.Reader {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	last := ""
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			last = t
		}
	}
	return strings.NewReader(last)
}

// WriteTable writes the human-readable table.
func (r *Report) WriteTable(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "machine: %d CPUs (%s), %s %s, PostgreSQL %s (fsync=%s, synchronous_commit=%s)\n",
		m.CPUs, m.CPU, m.Go, m.OS, m.Postgres, m.Fsync, m.SynchronousCommit)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tmetric\tmedian\tunit\truns\t")
	for _, s := range r.Scenarios {
		for _, name := range s.order {
			mt := s.Metrics[name]
			vals := make([]string, len(mt.Values))
			for i, v := range mt.Values {
				vals[i] = fmtNum(v)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", s.Name, name, fmtNum(mt.Median), mt.Unit, strings.Join(vals, " "))
		}
		v := s.Invariants
		status := "ok"
		if !s.OK {
			status = "BROKEN"
		}
		fmt.Fprintf(tw, "%s\tinvariants (%d runs)\t%s\t\tpeak %d, peak>max %d, lost %d, not succeeded %d, leaked slots %d, slots/in-flight %d/%d, double submits %d\t\n",
			s.Name, s.Runs, status, v.MaxPeak, v.PeakOver, v.Lost, v.NotSucceeded, v.LeakedSlots, v.SlotsHeld, v.InFlight, v.DoubleSubmits)
	}
	tw.Flush()
	for _, s := range r.Scenarios {
		if len(s.Diagnostics) > 0 {
			fmt.Fprintf(w, "%s: Postgres work per job (first run):", s.Name)
			for _, k := range sortedKeys(s.Diagnostics) {
				fmt.Fprintf(w, " %s=%s", k, fmtNum(s.Diagnostics[k]))
			}
			fmt.Fprintln(w)
		}
	}
	for _, s := range r.Scenarios {
		bySource := map[string][]string{}
		for _, k := range slices.Sorted(maps.Keys(s.Sources)) {
			bySource[s.Sources[k]] = append(bySource[s.Sources[k]], k)
		}
		for _, src := range slices.Sorted(maps.Keys(bySource)) {
			fmt.Fprintf(w, "%s: %s from %s\n", s.Name, strings.Join(bySource[src], ", "), src)
		}
	}
	for _, s := range r.Scenarios {
		for _, b := range s.Broken {
			fmt.Fprintf(w, "INVARIANT BROKEN in %s: %s\n", s.Name, b)
		}
		for _, e := range s.Errors {
			fmt.Fprintf(w, "ERROR in %s: %s\n", s.Name, e)
		}
	}
	if c := r.Compare; c != nil {
		fmt.Fprintf(w, "compare: poolgate %s jobs/s vs %s %s jobs/s: ratio %s", fmtNum(c.Poolgate), c.Against, fmtNum(c.Other), fmtNum(c.Ratio))
		if c.InsertRatio > 0 {
			fmt.Fprintf(w, " (inserts: %s vs %s jobs/s, ratio %s)", fmtNum(c.InsertPoolgate), fmtNum(c.InsertOther), fmtNum(c.InsertRatio))
		}
		fmt.Fprintln(w)
	}
}

// WriteJSON writes the report as one JSON line.
func (r *Report) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func fmtNum(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

// machine describes this host and the Postgres server.
func machine(ctx context.Context, serverURL string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), CPU: cpuModel(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return m
	}
	defer conn.Close(ctx)
	conn.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('fsync'),
		current_setting('synchronous_commit')`).Scan(&m.Postgres, &m.Fsync, &m.SynchronousCommit)
	return m
}

// cpuModel is the "model name" of /proc/cpuinfo, or "" elsewhere.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
