package histo

import (
	"sync"
	"testing"
	"time"
)

func TestHistogram(t *testing.T) {
	var h Histogram
	h.Observe(-time.Second)           // 0: first bucket
	h.Observe(500 * time.Microsecond) // on the bound: first bucket
	h.Observe(700 * time.Microsecond) // second
	h.Observe(3 * time.Second)        // 5 s bucket
	h.Observe(time.Minute)            // +Inf
	s := h.Snapshot()
	if s.Count != 5 {
		t.Fatalf("count %d", s.Count)
	}
	if want := 0.0005 + 0.0007 + 3 + 60; s.Sum < want-1e-9 || s.Sum > want+1e-9 {
		t.Fatalf("sum %v, want %v", s.Sum, want)
	}
	want := map[float64]uint64{0.0005: 2, 0.001: 3, 2.5: 3, 5: 4, 10: 4}
	b := s.Buckets()
	for le, n := range want {
		if b[le] != n {
			t.Errorf("le %v: %d, want %d", le, b[le], n)
		}
	}
	var sum Snapshot
	sum.Add(s)
	sum.Add(s)
	if sum.Count != 10 || sum.Cumulative[0] != 4 {
		t.Fatalf("Add: %+v", sum)
	}
}

func TestHistogramConcurrent(t *testing.T) {
	var h Histogram
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 1000 {
				h.Observe(time.Duration(i) * time.Millisecond)
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			s := h.Snapshot()
			for i := 1; i < len(s.Cumulative); i++ {
				if s.Cumulative[i] < s.Cumulative[i-1] || s.Cumulative[i] > s.Count {
					t.Error("not cumulative")
					return
				}
			}
		}
	})
	wg.Wait()
	if n := h.Snapshot().Count; n != 8000 {
		t.Fatalf("count %d", n)
	}
}

func BenchmarkObserve(b *testing.B) {
	var h Histogram
	for i := 0; b.Loop(); i++ {
		h.Observe(time.Duration(i&1023) * time.Millisecond)
	}
}
