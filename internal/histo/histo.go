// Package histo is a latency histogram with fixed buckets and atomic
// counts: Observe is a few comparisons and two atomic adds, no lock and no
// allocation, so control-plane code can record latencies that package
// metrics reads at scrape time.
package histo

import (
	"sync/atomic"
	"time"
)

// Bounds are the upper bounds, in seconds, of every Histogram's buckets
// (a last bucket, +Inf, holds the rest): 0.5 ms to 10 s, covering an fsync
// on one side and an ISP's DHCP timeout on the other.
var Bounds = [...]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// NumBuckets is the number of buckets, +Inf included.
const NumBuckets = len(Bounds) + 1

// boundsNs are Bounds in nanoseconds.
var boundsNs = func() (b [len(Bounds)]int64) {
	for i, s := range Bounds {
		b[i] = int64(s * 1e9)
	}
	return b
}()

// Histogram counts durations by bucket. The zero value is ready; it must
// not be copied after first use.
type Histogram struct {
	counts [NumBuckets]atomic.Uint64
	sumNs  atomic.Int64
}

// Observe records d (a negative d counts as 0).
func (h *Histogram) Observe(d time.Duration) {
	ns := max(int64(d), 0)
	i := 0
	for i < len(boundsNs) && ns > boundsNs[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(ns)
}

// Since records the time since start.
func (h *Histogram) Since(start time.Time) { h.Observe(time.Since(start)) }

// Snapshot is a Histogram read at one time.
type Snapshot struct {
	// Count is the number of observations, Sum their total in seconds.
	Count uint64
	Sum   float64
	// Cumulative[i] counts the observations <= Bounds[i].
	Cumulative [len(Bounds)]uint64
}

// Snapshot reads h. Concurrent observations may land in the sum but not
// yet in a bucket, or the reverse; each bucket and the count agree.
func (h *Histogram) Snapshot() Snapshot {
	var s Snapshot
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
		if i < len(s.Cumulative) {
			s.Cumulative[i] = n
		}
	}
	s.Count = n
	s.Sum = float64(h.sumNs.Load()) / 1e9
	return s
}

// Buckets returns the cumulative counts keyed by upper bound, as
// prometheus.MustNewConstHistogram wants them.
func (s Snapshot) Buckets() map[float64]uint64 {
	m := make(map[float64]uint64, len(Bounds))
	for i, b := range Bounds {
		m[b] = s.Cumulative[i]
	}
	return m
}

// Add adds o's observations to s.
func (s *Snapshot) Add(o Snapshot) {
	s.Count += o.Count
	s.Sum += o.Sum
	for i := range s.Cumulative {
		s.Cumulative[i] += o.Cumulative[i]
	}
}
