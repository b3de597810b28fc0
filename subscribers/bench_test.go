package subscribers

import (
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkCommitBinding measures durable commits (fsync on, the real cost)
// with 1, 8 and 64 concurrent committers; group commit should turn more
// committers into more commits per second at the same fsync rate. The
// -dbbatch variant uses bbolt's DB.Batch (10ms timer) instead, for
// comparison; -nosync shows the CPU cost without the fsync.
func BenchmarkCommitBinding(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		s, _ := openTest(b, Options{})
		i := 0
		for b.Loop() {
			if err := s.CommitBinding(testBinding(i)); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
	})
	b.Run("parallel8", func(b *testing.B) { benchParallel(b, Options{}, 8, false) })
	b.Run("parallel64", func(b *testing.B) { benchParallel(b, Options{}, 64, false) })
	b.Run("parallel64-dbbatch", func(b *testing.B) { benchParallel(b, Options{}, 64, true) })
	b.Run("parallel64-nosync", func(b *testing.B) { benchParallel(b, Options{NoSync: true}, 64, false) })
}

func benchParallel(b *testing.B, opts Options, workers int, dbBatch bool) {
	s, _ := openTest(b, opts)
	s.viaDBBatch = dbBatch
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				if err := s.CommitBinding(testBinding(i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}
