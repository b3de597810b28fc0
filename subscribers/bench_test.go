package subscribers

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
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

// syncRegs returns n config registrations with MACs in a random order
// (as a config file lists them), customer IDs spread over n/4 customers of
// two ISPs.
func syncRegs(n int, seed uint64) []Registration {
	rs := make([]Registration, n)
	for i := range rs {
		// A multiplicative permutation of 0..2^32: random-looking order.
		k := uint32(uint64(i)*2654435761 + seed)
		rs[i] = Registration{MAC: mac(int(k)), CustomerID: fmt.Sprintf("c-%d", k%uint32(max(n/4, 1))),
			ISP: []string{"alpha", "beta"}[k%2]}
	}
	return rs
}

// BenchmarkSyncRegistrations measures a config reload of 100k subscribers
// (fsync on, one durable transaction): into an empty store (all added),
// and over the same 100k with a tenth of them changed and a tenth
// replaced (the rest unchanged). It reports seconds per sync.
func BenchmarkSyncRegistrations(b *testing.B) {
	const n = 100000
	b.Run("add-100k", func(b *testing.B) {
		rs := syncRegs(n, 0)
		for b.Loop() {
			b.StopTimer()
			s, _ := openTest(b, Options{})
			b.StartTimer()
			added, _, _, err := s.SyncRegistrations(SourceConfig, rs)
			if err != nil || added != n {
				b.Fatal(added, err)
			}
			b.StopTimer()
			s.Close()
			b.StartTimer()
		}
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/sync")
	})
	b.Run("resync-100k", func(b *testing.B) {
		s, _ := openTest(b, Options{})
		base := syncRegs(n, 0)
		if _, _, _, err := s.SyncRegistrations(SourceConfig, base); err != nil {
			b.Fatal(err)
		}
		i := 0
		for b.Loop() {
			rs := slices.Clone(base)
			for j := range n / 10 {
				rs[(j*10+i)%n].ISP = fmt.Sprintf("isp-%d", i) // changed
				m := mac(i*n + j)
				m[1] = 1                 // not one of base's
				rs[(j*10+i+5)%n].MAC = m // replaced
			}
			if _, _, _, err := s.SyncRegistrations(SourceConfig, rs); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/sync")
	})
}

// BenchmarkApplyTenantImport measures a bulk import batch: 1000 new
// customers in one ApplyTenant (one transaction, one fsync).
func BenchmarkApplyTenantImport(b *testing.B) {
	s, _ := openTest(b, Options{})
	next := 0
	for b.Loop() {
		w := TenantWrite{PutCustomers: make([]Customer, 1000)}
		for j := range w.PutCustomers {
			w.PutCustomers[j] = testCustomer("alpha", next)
			next++
		}
		if _, err := s.ApplyTenant(w); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(next)/b.Elapsed().Seconds(), "customers/s")
}

// BenchmarkDORACommit is the store's share of a DORA as ispmux pays it
// under load: CommitBindingEvent (the binding and its "bound" event,
// durable, fsync on), 4 concurrent committers (group commit batches
// them), over 10k bindings and an event log at its retention (so every
// append also trims). It reports the process's CPU time per commit (user
// + system: bbolt, pwrite, fdatasync), which is what bench dhcp charges
// to ispmux, beside the wall time. "journal" is the store as ispmux runs
// it (the binding journal, checkpoints included); "bbolt" writes every
// commit through a bbolt transaction, as before the journal.
func BenchmarkDORACommit(b *testing.B) {
	b.Run("journal", func(b *testing.B) { benchDORACommit(b, false) })
	b.Run("bbolt", func(b *testing.B) { benchDORACommit(b, true) })
}

func benchDORACommit(b *testing.B, noJournal bool) {
	const existing, retention = 10_000, 5_000
	s, _ := openTest(b, Options{EventRetention: retention, CommitWindow: time.Millisecond})
	s.db.NoSync, s.jr.noSync = true, true // seeding only
	for i := range existing {
		if _, err := s.CommitBindingEvent(testBinding(i), Event{Kind: "bound", ISP: fmt.Sprintf("isp-%d", i%2), MAC: mac(i)}); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.checkpoint(); err != nil {
		b.Fatal(err)
	}
	s.db.NoSync, s.jr.noSync = false, false
	s.noJournal = noJournal
	txs := s.CommitStats().Transactions
	st0 := s.db.Stats().TxStats
	var next atomic.Int64
	var wg sync.WaitGroup
	before := cpuTime()
	b.ResetTimer()
	for range 4 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				if _, err := s.CommitBindingEvent(testBinding(i%existing), Event{Kind: "bound", ISP: fmt.Sprintf("isp-%d", i%2), MAC: mac(i % existing)}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-before).Microseconds())/float64(b.N), "cpu-µs/op")
	ntx := float64(s.CommitStats().Transactions - txs)
	b.ReportMetric(float64(b.N)/ntx, "commits/tx")
	st1 := s.db.Stats().TxStats
	b.ReportMetric(float64(st1.GetWrite()-st0.GetWrite())/float64(b.N), "pages/op")
}

// BenchmarkCommitTail measures what a DHCP ACK waits for in the store at
// 2000 commits a second: 8 committers, each CommitBindingEvent at its
// own steady 250/s (fsync on, the 1 ms commit window, over 50k bindings),
// for b.N commits (-benchtime 24000x: 12 s), and reports the commits'
// latency p50/p99/p99.9/max. "background" is the store as it runs (a
// background checkpoint every journalMaxPending records, beside the
// appends); "in-leader-1024" is stop 20's store: a checkpoint every 1024
// records through the group commit, so the appends queued behind it
// wait. Run each alternately in its own process (-count 1, several
// times): the machine's noise then falls on both.
func BenchmarkCommitTail(b *testing.B) {
	b.Run("background", func(b *testing.B) { benchCommitTail(b, false) })
	b.Run("in-leader-1024", func(b *testing.B) {
		old := journalMaxPending
		journalMaxPending = 1024
		defer func() { journalMaxPending = old }()
		benchCommitTail(b, true)
	})
}

func benchCommitTail(b *testing.B, inLeader bool) {
	const existing, committers, perSecond = 50_000, 8, 250
	s, _ := openTest(b, Options{CommitWindow: time.Millisecond})
	s.db.NoSync, s.jr.noSync = true, true // seeding only
	for i := range existing {
		if err := s.CommitBinding(testBinding(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.checkpoint(); err != nil {
		b.Fatal(err)
	}
	s.db.NoSync, s.jr.noSync = false, false
	s.ckptInLeader = inLeader
	bg0 := s.bgCheckpoints.Load()
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	b.ResetTimer()
	for w := range committers {
		wg.Go(func() {
			tick := time.NewTicker(time.Second / perSecond)
			defer tick.Stop()
			time.Sleep(time.Duration(w) * time.Second / perSecond / committers) // spread the ticks
			for range tick.C {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				k := (i * 7919) % existing
				start := time.Now()
				if _, err := s.CommitBindingEvent(testBinding(k), Event{Kind: "bound", ISP: "isp-1", MAC: mac(k)}); err != nil {
					b.Error(err)
					return
				}
				lat[i] = time.Since(start)
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(0.999), "p99.9-ms")
	b.ReportMetric(q(1), "max-ms")
	b.ReportMetric(float64(s.bgCheckpoints.Load()-bg0), "bg-ckpts")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// cpuTime is the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBgCheckpoint measures one background checkpoint's transaction
// (checkpointRecords: journalMaxPending binding records, each with its
// event, applied into bbolt, then bbolt's commit, fsync off) per op: the
// CPU a background checkpoint takes from the DHCP path every
// journalMaxPending bindings. "renewals": records of bindings the store
// holds (50k); "new": bindings the store has never seen, into a store that
// starts empty (a fresh appliance's first outage).
func BenchmarkBgCheckpoint(b *testing.B) {
	b.Run("renewals", func(b *testing.B) { benchBgCheckpoint(b, 50_000, false) })
	b.Run("new", func(b *testing.B) { benchBgCheckpoint(b, 0, true) })
}

func benchBgCheckpoint(b *testing.B, existing int, fresh bool) {
	old := journalMaxPending
	journalMaxPending = 1 << 30 // no checkpoint but the benchmark's
	defer func() { journalMaxPending = old }()
	s, _ := openTest(b, Options{NoSync: true})
	for i := range existing {
		if err := s.CommitBinding(testBinding(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.checkpoint(); err != nil {
		b.Fatal(err)
	}
	n := 0
	for b.Loop() {
		b.StopTimer()
		for range old {
			k := existing + n
			if !fresh {
				k = (n * 7919) % existing
			}
			n++
			if _, err := s.CommitBindingEvent(testBinding(k), Event{Kind: "bound", ISP: "isp-1", MAC: mac(k)}); err != nil {
				b.Fatal(err)
			}
		}
		done := make(chan []*jrec, 1)
		s.submit(&call{lead: func() { done <- slices.Clone(s.pending) }})
		recs := <-done
		b.StartTimer()
		if err := s.checkpointRecords(recs); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		upTo := recs[len(recs)-1].lsn
		s.submit(&call{lead: func() { s.checkpointedUpTo(upTo, true) }})
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(old), "µs/record")
}
