package dhcpproxy

import (
	"fmt"
	"testing"
	"time"
)

// cutsTable is a lease table holding n leases (burstSub), each with a
// move's deadline at t0 plus i seconds.
func cutsTable(tb testing.TB, n int, t0 time.Time) *leaseTable {
	tb.Helper()
	t := &leaseTable{}
	t.init()
	for i := range n {
		sk := burstSub(i)
		t.m.Put(sk, lease{expires: t0.Add(time.Hour).UnixNano()})
		if !t.setCut(sk, t0.Add(time.Duration(i)*time.Second)) {
			tb.Fatalf("setCut %d refused", i)
		}
	}
	return t
}

// TestCutsDue: the moves' deadlines come due from their heap in time
// order, only those due; a cleared cut, or one whose binding ended, comes
// up no more; a due cut not cleared (its end refused) comes up again at
// the next tick, as it did when cutsDue walked every pending cut. Once a
// bulk move's cuts have drained, the map is remade and the heap's room
// given back.
func TestCutsDue(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	const n = 20000
	lt := cutsTable(t, n, t0)
	if lt.setCut(burstSub(5), t0.Add(time.Hour)) {
		t.Fatal("a second setCut of one binding accepted (the first deadline holds)")
	}
	keys := func(hs []held) map[subKey]bool {
		m := map[subKey]bool{}
		for _, h := range hs {
			m[h.k] = true
		}
		return m
	}
	due := keys(lt.cutsDue(t0.Add(9 * time.Second)))
	if len(due) != 10 {
		t.Fatalf("due at +9 s: %d, want 10", len(due))
	}
	for i := range 10 {
		if !due[burstSub(i)] {
			t.Fatalf("cut %d (due at +%d s) not due", i, i)
		}
	}
	// 0-4 cleared (moved back), 5 ended with its binding; 6-9 left (their
	// end refused): they come up again.
	for i := range 5 {
		lt.clearCut(burstSub(i))
	}
	lt.mu.Lock()
	lt.m.Delete(burstSub(5))
	delete(lt.cuts, burstSub(5))
	lt.mu.Unlock()
	due = keys(lt.cutsDue(t0.Add(10 * time.Second)))
	if len(due) != 5 || !due[burstSub(6)] || !due[burstSub(10)] || due[burstSub(0)] || due[burstSub(5)] {
		t.Fatalf("due at +10 s: %v, want 6-10", due)
	}
	// A cut cleared and set again has its new deadline only.
	lt.clearCut(burstSub(20))
	if !lt.setCut(burstSub(20), t0.Add(time.Hour)) {
		t.Fatal("setCut after clearCut refused")
	}
	if due := keys(lt.cutsDue(t0.Add(30 * time.Second))); due[burstSub(20)] {
		t.Fatal("a cut set again came due at its old deadline")
	}
	// Drained: every cut cleared as it comes due.
	for i := range n {
		lt.clearCut(burstSub(i))
	}
	lt.cutsDue(t0.Add(time.Duration(n)*time.Second + time.Hour))
	if len(lt.cuts) != 0 || len(lt.cutsAt) != 0 {
		t.Fatalf("drained: %d cuts, %d deadlines left", len(lt.cuts), len(lt.cutsAt))
	}
	if lt.cutsMem.remade == 0 || cap(lt.cutsAt) > shrinkFloor {
		t.Fatalf("drained: map remade %d times, heap room %d, want remade and room given back", lt.cutsMem.remade, cap(lt.cutsAt))
	}
}

// BenchmarkCutsDue is a tick's look for due moves with n pending, none
// due: what the lease table's lock is held for at every tick of a bulk
// move's ClientLeaseMax.
func BenchmarkCutsDue(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			t0 := time.Now()
			lt := cutsTable(b, n, t0.Add(time.Hour))
			b.ResetTimer()
			for b.Loop() {
				if len(lt.cutsDue(t0)) != 0 {
					b.Fatal("due")
				}
			}
		})
	}
}

// TestCutSetAgainSameDeadline: a cut cleared and set again with the same
// deadline (a clock read twice alike: a test's, or a coarse one) comes up
// once a tick, as from the map; its two heap entries both matched it, and
// its binding came up twice (ended twice in one tick's batch).
func TestCutSetAgainSameDeadline(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	lt := cutsTable(t, 1, t0)
	lt.clearCut(burstSub(0))
	if !lt.setCut(burstSub(0), t0) {
		t.Fatal("setCut after clearCut refused")
	}
	for tick := range 2 {
		if due := lt.cutsDue(t0); len(due) != 1 {
			t.Fatalf("tick %d: the cut came up %d times, want once", tick, len(due))
		}
	}
}

// TestCutsStaleBounded: a device moved and moved back again and again
// within ClientLeaseMax leaves the heap no more than twice its cuts (and
// shrinkFloor) of entries, where each cycle left one until its deadline.
func TestCutsStaleBounded(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	lt := cutsTable(t, 2, t0.Add(time.Hour))
	const cycles = 100_000
	for i := range cycles {
		lt.clearCut(burstSub(0))
		if !lt.setCut(burstSub(0), t0.Add(time.Hour+time.Duration(i)*time.Millisecond)) {
			t.Fatalf("setCut %d refused", i)
		}
	}
	if n := len(lt.cutsAt); n > 2*len(lt.cuts)+shrinkFloor {
		t.Fatalf("%d set/clear cycles left %d deadlines for %d cuts, want at most %d", cycles, n, len(lt.cuts), 2*len(lt.cuts)+shrinkFloor)
	}
	// The rebuilt heap still has the live deadlines only, in order.
	due := lt.cutsDue(t0.Add(time.Hour + time.Second))
	if len(due) != 1 || due[0].k != burstSub(1) {
		t.Fatalf("due an hour and a second on: %v, want burstSub(1) only", due)
	}
	due = lt.cutsDue(t0.Add(time.Hour + cycles*time.Millisecond))
	if len(due) != 2 {
		t.Fatalf("due past the last deadline: %d, want 2", len(due))
	}
}
