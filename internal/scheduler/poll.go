package scheduler

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Polling a running job's status is most of what poolgate asks of the
// upstream, and a steady beat of status calls from every slot of an
// account is what gets web accounts flagged. So a job's first status read
// waits until shortly before the job is expected to end (firstPollShare of
// the expected duration), and the reads after it back off from
// PollInterval, doubling up to PollMaxInterval, with jitter. The
// expectation comes from what this replica saw jobs of the same kind take
// (learned), or else from the configured table (PollExpect), or else there
// is none and the backoff starts at once.

// firstPollShare is the share of the expected duration the first status
// read waits: early enough that a job a little faster than usual is not
// noticed late.
const firstPollShare = 0.8

// learnWeight is the weight of the newest observation in the learned
// expectation (an exponentially weighted moving average).
const learnWeight = 0.3

// defaultClipSeconds is the video length a job asks for when its params
// do not say: the API's catalog default.
const defaultClipSeconds = 6

// Expectation is how long one type of job usually takes upstream: Base,
// plus PerSecond for every second of video the job asks for.
type Expectation struct {
	Base, PerSecond time.Duration
}

// Expectations is the table of expected upstream durations, by job type
// ("video", "image"). A type it does not list has no expectation.
type Expectations map[string]Expectation

// DefaultExpectations is POOLGATE_POLL_EXPECTED's default,
// "image=10s,video=20s+5s/s": images take about ten seconds, a video about
// twenty plus five for every second of clip (50 s for the default 6 s).
func DefaultExpectations() Expectations {
	return Expectations{
		"image": {Base: 10 * time.Second},
		"video": {Base: 20 * time.Second, PerSecond: 5 * time.Second},
	}
}

// ParseExpectations reads a table like "image=10s,video=20s+5s/s": per
// type a base duration, optionally plus a duration per second of video.
// "none" (or "") is the empty table: nothing is expected until this
// replica has seen jobs end.
func ParseExpectations(s string) (Expectations, error) {
	t := Expectations{}
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return t, nil
	}
	for item := range strings.SplitSeq(s, ",") {
		typ, spec, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || typ == "" {
			return nil, fmt.Errorf("%q is not type=duration, like video=20s+5s/s", item)
		}
		base, per, hasPer := strings.Cut(spec, "+")
		var x Expectation
		var err error
		if x.Base, err = time.ParseDuration(base); err != nil || x.Base < 0 {
			return nil, fmt.Errorf("%s: %q is not a duration like 20s", typ, base)
		}
		if hasPer {
			d, unit := strings.CutSuffix(per, "/s")
			if x.PerSecond, err = time.ParseDuration(d); !unit || err != nil || x.PerSecond < 0 {
				return nil, fmt.Errorf("%s: %q is not a duration per second of video, like 5s/s", typ, per)
			}
		}
		t[typ] = x
	}
	return t, nil
}

// String renders t as ParseExpectations reads it.
func (t Expectations) String() string {
	if len(t) == 0 {
		return "none"
	}
	var parts []string
	for _, typ := range []string{"image", "video"} {
		if x, ok := t[typ]; ok {
			parts = append(parts, x.format(typ))
		}
	}
	for typ, x := range t {
		if typ != "image" && typ != "video" {
			parts = append(parts, x.format(typ))
		}
	}
	return strings.Join(parts, ",")
}

func (x Expectation) format(typ string) string {
	s := typ + "=" + x.Base.String()
	if x.PerSecond > 0 {
		s += "+" + x.PerSecond.String() + "/s"
	}
	return s
}

// jobKind is what jobs are grouped by for expectations: the type, and for
// videos the clip length.
type jobKind struct {
	typ     string
	seconds int
}

func kindOf(typ string, params json.RawMessage) jobKind {
	k := jobKind{typ: typ}
	if typ != "video" {
		return k
	}
	var p struct {
		Duration json.Number `json:"duration"`
	}
	k.seconds = defaultClipSeconds
	if json.Unmarshal(params, &p) == nil && p.Duration != "" {
		if f, err := p.Duration.Float64(); err == nil && f > 0 && f < 3600 {
			k.seconds = int(f + 0.5)
		}
	}
	return k
}

func (k jobKind) String() string {
	if k.seconds == 0 {
		return k.typ
	}
	return k.typ + "/" + strconv.Itoa(k.seconds) + "s"
}

// expectations is this replica's knowledge of how long jobs take: the
// configured table, refined by what it saw.
type expectations struct {
	table Expectations
	mu    sync.Mutex
	seen  map[jobKind]time.Duration // learned averages
}

func newExpectations(t Expectations) *expectations {
	return &expectations{table: t, seen: make(map[jobKind]time.Duration)}
}

// of returns how long a job of kind k is expected to take; 0 means there
// is no expectation.
func (x *expectations) of(k jobKind) time.Duration {
	x.mu.Lock()
	d, ok := x.seen[k]
	x.mu.Unlock()
	if ok {
		return d
	}
	if e, ok := x.table[k.typ]; ok {
		return e.Base + time.Duration(k.seconds)*e.PerSecond
	}
	return 0
}

// learn folds one observed duration of a job of kind k into the average.
func (x *expectations) learn(k jobKind, d time.Duration) {
	if d <= 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if old, ok := x.seen[k]; ok {
		d = time.Duration(learnWeight*float64(d) + (1-learnWeight)*float64(old))
	}
	x.seen[k] = d
}

// pollPlan says how long a job waits before each status read.
type pollPlan struct {
	min, max time.Duration
	first    time.Duration // the wait before the first read; 0: none beyond min
	reads    int
}

// newPollPlan plans the reads of a job that started at started, is
// expected to take expected (0: unknown), as of now.
func newPollPlan(min, max, expected time.Duration, started, now time.Time) *pollPlan {
	p := &pollPlan{min: min, max: max}
	if expected > 0 {
		p.first = started.Add(time.Duration(firstPollShare * float64(expected))).Sub(now)
	}
	return p
}

// next returns the wait before the next read: until shortly before the
// expected end (less up to a tenth), then min doubling up to max (less up
// to a half), never below min, so that jobs placed together do not read
// together. The second spread is wide on purpose: with a quarter, 2,000
// slots filled at once kept ending in waves a few hundred jobs strong,
// each wave read at the same moment, and the freed slots of a wave waited
// in line for placement (bench saturation: refill p99 ~200 ms against
// ~90 ms), for 4% fewer status reads. A 60 s job still costs at most 10
// requests with the default table (TestPoliteToTheUpstream).
func (p *pollPlan) next() time.Duration {
	defer func() { p.reads++ }()
	if p.reads == 0 && p.first > p.min {
		return jitter(p.first, p.min, 0.1)
	}
	k := p.reads
	if p.first > p.min {
		k-- // the backoff starts after the first read
	}
	d := p.max
	if k < 30 && p.min<<k < p.max && p.min<<k > 0 {
		d = p.min << k
	}
	return jitter(d, p.min, 0.5)
}

// jitter shortens d by up to spread (a share of d) at random, never below
// floor.
func jitter(d, floor time.Duration, spread float64) time.Duration {
	return max(floor, time.Duration(float64(d)*(1-spread*rand.Float64())))
}
