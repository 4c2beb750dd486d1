package usage

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Generation times are kept per hour as counts over one fixed log scale,
// so that hours (and accounts, and keys) merge by adding counts, and p50
// and p95 over any range come from the merged counts.
//
// Bucket 0 holds times under HistBase; bucket i ≥ 1 holds
// [HistBase·2^((i-1)/4), HistBase·2^(i/4)): four buckets per doubling. The
// last bucket also holds everything longer (about 33 hours and up). A
// percentile is reported as the geometric middle of its bucket, so it is
// within a factor 2^(1/8) (±9%) of the true value.
const (
	HistBase      = 10 * time.Millisecond
	histPerOctave = 4
	HistBuckets   = 96
)

// Histogram counts durations per bucket; trailing empty buckets may be
// left off, so a nil Histogram is empty.
type Histogram []int64

// bucketOf is the bucket d falls in.
func bucketOf(d time.Duration) int {
	if d < HistBase {
		return 0
	}
	i := 1 + int(math.Floor(histPerOctave*math.Log2(float64(d)/float64(HistBase))))
	return min(i, HistBuckets-1)
}

// bucketMiddle is the geometric middle of bucket i (HistBase/2 for bucket 0).
func bucketMiddle(i int) time.Duration {
	if i == 0 {
		return HistBase / 2
	}
	lo := float64(HistBase) * math.Exp2(float64(i-1)/histPerOctave)
	return time.Duration(lo * math.Exp2(0.5/histPerOctave))
}

// Add counts one duration.
func (h *Histogram) Add(d time.Duration) {
	i := bucketOf(d)
	for len(*h) <= i {
		*h = append(*h, 0)
	}
	(*h)[i]++
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o Histogram) {
	for len(*h) < len(o) {
		*h = append(*h, 0)
	}
	for i, n := range o {
		(*h)[i] += n
	}
}

// Count is how many durations h holds.
func (h Histogram) Count() int64 {
	var n int64
	for _, c := range h {
		n += c
	}
	return n
}

// Quantile returns the q-quantile (0 < q ≤ 1) of the durations h holds:
// the middle of the bucket holding the ⌈q·n⌉-th smallest. ok is false
// when h is empty.
func (h Histogram) Quantile(q float64) (d time.Duration, ok bool) {
	n := h.Count()
	if n == 0 {
		return 0, false
	}
	rank := max(int64(math.Ceil(q*float64(n))), 1)
	var seen int64
	for i, c := range h {
		seen += c
		if seen >= rank {
			return bucketMiddle(i), true
		}
	}
	return bucketMiddle(len(h) - 1), true
}

// literal renders h as a Postgres array literal ("{1,0,3}").
func (h Histogram) literal() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, c := range h {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(c, 10))
	}
	b.WriteByte('}')
	return b.String()
}
