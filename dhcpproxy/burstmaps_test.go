package dhcpproxy

import (
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// The per-subscriber maps besides the transactions' table that an
// outage's burst fills and that drain afterwards (mapmem.go): the rate
// limit's buckets and DECLINE counts, the generations, the revoked
// addresses, the parked transactions and the reclaims' identifier waits
// (filled by a start's backlog of intents, not by the burst). Each test
// below fails with the remaking turned off (remade 0 times; the memory
// kept the same).

// burstSub is the i-th subscriber of a burst.
func burstSub(i int) subKey {
	return subKey{circuitKey{1, uint16(i >> 20)}, 0x020000000000 | uint64(i)}
}

// newLimiter is a limiter with a MAC burst of 10 at 4 a second.
func newLimiter() *limiter {
	var lim atomic.Pointer[Limits]
	lim.Store(&Limits{MACRate: 4, MACBurst: 10, CircuitRate: 1 << 30, CircuitBurst: 1 << 30})
	var l limiter
	l.init(&lim)
	return &l
}

// TestRateBucketsShrink: forget drops the per-MAC buckets refilled and
// the DECLINE counts whose window ended, and remakes each map once what is
// left has fallen to a sixteenth of its peak, keeping what is left (the
// same buckets); with nothing dropped, they are not remade again.
func TestRateBucketsShrink(t *testing.T) {
	l := newLimiter()
	t0 := time.Unix(1e9, 0)
	const n = 20_000
	for i := range n {
		sk := burstSub(i)
		l.allow(sk, t0)
		l.allowDecline(sk, t0.Add(-declineWindow))
		if i%16 == 0 {
			// Its budget spent: not refilled a quarter second later.
			for l.allow(sk, t0) == "" {
			}
			l.allowDecline(sk, t0)
		}
	}
	kept := map[subKey]*bucket{}
	for i := 0; i < n; i += 16 {
		kept[burstSub(i)] = l.mac[burstSub(i)]
	}
	oldMAC, oldDeclines := l.mac, l.declines
	l.forget(t0.Add(250 * time.Millisecond))
	if l.macMem.remade != 1 || len(l.mac) != n/16 || l.macMem.peak != n/16 {
		t.Fatalf("buckets, a sixteenth left: remade %d times, %d held, peak %d; want 1, %d, %d", l.macMem.remade, len(l.mac), l.macMem.peak, n/16, n/16)
	}
	if l.declineMem.remade != 1 || len(l.declines) != n/16 || l.declineMem.peak != n/16 {
		t.Fatalf("DECLINE counts, a sixteenth left: remade %d times, %d held, peak %d; want 1, %d, %d", l.declineMem.remade, len(l.declines), l.declineMem.peak, n/16, n/16)
	}
	oldMAC[subKey{}], oldDeclines[subKey{}] = nil, declineCount{}
	if _, ok := l.mac[subKey{}]; ok {
		t.Fatal("mac is the map of the peak")
	}
	if _, ok := l.declines[subKey{}]; ok {
		t.Fatal("declines is the map of the peak")
	}
	for sk, b := range kept {
		if l.mac[sk] != b {
			t.Fatalf("%v: bucket not kept", sk)
		}
		if d := l.declines[sk]; d.n != 1 || !d.since.Equal(t0) {
			t.Fatalf("%v: DECLINE count not kept: %+v", sk, d)
		}
	}
	l.forget(t0.Add(250 * time.Millisecond))
	if l.macMem.remade != 1 || l.declineMem.remade != 1 {
		t.Fatalf("nothing dropped: remade %d and %d times", l.macMem.remade, l.declineMem.remade)
	}
}

// TestForgetBudget: forget looks at forgetBudget buckets, and DECLINE
// counts, a tick at most, and the next ticks reach the rest: a burst of
// three budgets' worth, all refilled and past their window, is forgotten
// in three ticks, a budget at each. Fails without the budget (all at the
// first).
func TestForgetBudget(t *testing.T) {
	l := newLimiter()
	t0 := time.Unix(1e9, 0)
	const n = 3 * forgetBudget
	for i := range n {
		l.allow(burstSub(i), t0)
		l.allowDecline(burstSub(i), t0)
	}
	now := t0.Add(declineWindow)
	for tick := 1; tick <= 3; tick++ {
		l.forget(now)
		if left := n - tick*forgetBudget; len(l.mac) != left || len(l.declines) != left {
			t.Fatalf("tick %d: %d buckets, %d DECLINE counts left; want %d", tick, len(l.mac), len(l.declines), left)
		}
	}
}

// TestGensShrink: pruneGens drops the generations not moved for genKeep
// and remakes the map once what is left has fallen to a sixteenth of its
// peak (not at a quarter: see pruneGens), keeping what is left.
func TestGensShrink(t *testing.T) {
	var lt leaseTable
	lt.init()
	const n = 20_000
	for i := range n {
		lt.bumpGen(burstSub(i))
	}
	now := time.Now().Add(genKeep + time.Minute)
	for i := 0; i < n; i += 4 {
		e := lt.gen[burstSub(i)]
		e.at = now
		if i%16 != 0 {
			e.at = now.Add(-genKeep + 30*time.Second) // dropped a minute later
		}
		lt.gen[burstSub(i)] = e
	}
	lt.pruneGens(now)
	if lt.genMem.remade != 0 || len(lt.gen) != n/4 {
		t.Fatalf("a quarter left: remade %d times, %d held; want 0, %d", lt.genMem.remade, len(lt.gen), n/4)
	}
	old := lt.gen
	lt.pruneGens(now.Add(time.Minute))
	if lt.genMem.remade != 1 || len(lt.gen) != n/16 || lt.genMem.peak != n/16 {
		t.Fatalf("a sixteenth left: remade %d times, %d held, peak %d; want 1, %d, %d", lt.genMem.remade, len(lt.gen), lt.genMem.peak, n/16, n/16)
	}
	old[subKey{}] = genEntry{}
	if _, ok := lt.gen[subKey{}]; ok {
		t.Fatal("gen is the map of the peak")
	}
	for i := 0; i < n; i += 16 {
		if e := lt.gen[burstSub(i)]; e.n != uint64(i+1) {
			t.Fatalf("generation of %d not kept: %+v", i, e)
		}
	}
	lt.pruneGens(now.Add(2 * time.Minute))
	if lt.genMem.remade != 1 {
		t.Fatalf("nothing dropped: remade %d times", lt.genMem.remade)
	}
}

// TestRevokedShrinks: the revoked addresses taken by their clients'
// REQUESTs (NAKed) and those past their time (prune) leave a quarter of
// the peak, and prune remakes the map, keeping what is left.
func TestRevokedShrinks(t *testing.T) {
	var r revokedAddrs
	now := time.Unix(1e9, 0)
	const n = 20_000
	ip := netip.MustParseAddr("100.64.0.1")
	for i := range n {
		until := now.Add(time.Hour)
		if i%4 == 1 {
			until = now // past its time at now
		}
		r.note(burstSub(i), ip, until)
	}
	for i := 2; i < n; i += 4 {
		r.take(burstSub(i), ip, now)
		r.take(burstSub(i+1), ip, now)
	}
	old := r.m
	for r.mem.remade == 0 && r.len() > n/4 {
		r.prune(now) // revokedPruneBudget at a time
	}
	if r.mem.remade != 1 || r.len() != n/4 || r.mem.peak != n/4 {
		t.Fatalf("a quarter left: remade %d times, %d held, peak %d; want 1, %d, %d", r.mem.remade, r.len(), r.mem.peak, n/4, n/4)
	}
	old[subKey{}] = revokedAddr{}
	if _, ok := r.m[subKey{}]; ok {
		t.Fatal("the revoked addresses' map is the map of the peak")
	}
	for i := 0; i < n; i += 4 {
		if !r.take(burstSub(i), ip, now) {
			t.Fatalf("revoked address of %d not kept", i)
		}
	}
}

// TestParkedShrinks: the transactions parked by ends being committed,
// forgotten as the ends are (unpark), leave parked remade at a quarter of
// its peak, with what is left still parked and put back when its end is
// refused.
func TestParkedShrinks(t *testing.T) {
	var x txns
	x.init()
	const n = 20_000
	keys := fillPending(&x, 2*n) // n subscribers, two transactions each
	ds := make([]droppedTxns, n)
	for i := range n {
		ds[i] = x.dropSub(subKey{mac: keys[2*i].mac})
	}
	if len(x.parked) != 2*n || len(x.pending) != 0 {
		t.Fatalf("dropped: %d parked, %d pending; want %d, 0", len(x.parked), len(x.pending), 2*n)
	}
	old := x.parked
	for i := range n - n/4 {
		x.unpark(subKey{mac: keys[2*i].mac}, ds[i], false, 0, 0, time.Time{}, 0)
	}
	if x.parkMem.remade != 1 || len(x.parked) != n/2 || x.parkMem.peak != n/2 {
		t.Fatalf("a quarter left: remade %d times, %d parked, peak %d; want 1, %d, %d", x.parkMem.remade, len(x.parked), x.parkMem.peak, n/2, n/2)
	}
	old[pendKey{}] = nil
	if _, ok := x.parked[pendKey{}]; ok {
		t.Fatal("parked is the map of the peak")
	}
	now := time.Unix(1e9, 0)
	for i := n - n/4; i < n; i++ {
		if full := x.unpark(subKey{mac: keys[2*i].mac}, ds[i], true, 1<<30, 1<<30, now, time.Second); full != 0 {
			t.Fatalf("%d not put back", full)
		}
	}
	if len(x.parked) != 0 || len(x.pending) != n/2 {
		t.Fatalf("refused ends: %d parked, %d pending; want 0, %d", len(x.parked), len(x.pending), n/2)
	}
	checkIndex(t, &x, "put back")
}

// burstCID is the i-th subscriber's client identifier.
func burstCID(i int) []byte {
	return []byte{1, 2, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}
}

// TestReclaimWaitsShrink: prune lets go of the identifier waits whose
// intents are on the wire and remakes the map once what is left has
// fallen to a quarter of its peak, keeping the waits left; waits let go
// by the messages of their identifiers (waiting) leave the map remade at
// the next tick, not a prune's reclaimPruneEvery later.
func TestReclaimWaitsShrink(t *testing.T) {
	var r reclaimWaits
	now := time.Unix(1e9, 0)
	const n = 20_000
	for i := range n {
		r.wait(0, burstCID(i), []uint64{uint64(i)}, 0)
	}
	onWire := func(id uint64) bool { return id%4 != 0 }
	old := r.m
	r.prune(now, onWire)
	if r.mem.remade != 1 || r.len() != n/4 || r.mem.peak != n/4 {
		t.Fatalf("a quarter left: remade %d times, %d waiting, peak %d; want 1, %d, %d", r.mem.remade, r.len(), r.mem.peak, n/4, n/4)
	}
	old["x"] = nil
	if _, ok := r.m["x"]; ok {
		t.Fatal("the waits' map is the map of the peak")
	}
	for i := 0; i < n; i += 4 {
		if !r.waiting(0, burstCID(i), 1, onWire) {
			t.Fatalf("wait %d not kept", i)
		}
	}
	for i := 0; i < n; i += 4 {
		if r.waiting(0, burstCID(i), 1, func(uint64) bool { return true }) {
			t.Fatalf("wait %d: its intent on the wire, still waiting", i)
		}
	}
	r.prune(now.Add(time.Second), onWire)
	if r.mem.remade != 2 || r.len() != 0 {
		t.Fatalf("let go by waiting: remade %d times, %d waiting; want 2, 0", r.mem.remade, r.len())
	}
}

// TestBurstMapsReleaseMemory: each map filled by a burst of 200,000
// subscribers (or a start's 200,000 intents pending, for the reclaim waits) (50,000 with -short; the revoked addresses: maxRevoked at
// most), then drained: the heap after a GC against the one before the
// burst, with the remaking turned off (a floor no peak reaches) and on.
func TestBurstMapsReleaseMemory(t *testing.T) {
	n := 200_000
	if testing.Short() {
		n = 50_000
	}
	t0 := time.Unix(1e9, 0)
	ip := netip.MustParseAddr("100.64.0.1")
	cases := []struct {
		name string
		// burst fills a map of n subscribers and drains it, with
		// the remaking's floor; it returns the map's owner (kept
		// alive) and how many times it was remade.
		burst func(floor int) (any, int)
	}{
		{"rate buckets", func(floor int) (any, int) {
			l := newLimiter()
			l.macMem.floor = floor
			for i := range n {
				l.allow(burstSub(i), t0)
			}
			for len(l.mac) > 0 {
				l.forget(t0.Add(time.Second)) // forgetBudget a tick
			}
			return l, l.macMem.remade
		}},
		{"DECLINE counts", func(floor int) (any, int) {
			l := newLimiter()
			l.declineMem.floor = floor
			for i := range n {
				l.allowDecline(burstSub(i), t0)
			}
			for len(l.declines) > 0 {
				l.forget(t0.Add(declineWindow))
			}
			return l, l.declineMem.remade
		}},
		{"generations", func(floor int) (any, int) {
			var lt leaseTable
			lt.init()
			lt.genMem.floor = floor
			for i := range n {
				lt.bumpGen(burstSub(i))
			}
			now := time.Now().Add(genKeep + time.Second)
			for len(lt.gen) > 0 {
				now = now.Add(time.Minute)
				lt.pruneGens(now) // genPruneBudget a minute
			}
			return &lt, lt.genMem.remade
		}},
		{"revoked addresses", func(floor int) (any, int) {
			var r revokedAddrs
			r.mem.floor = floor
			for i := range min(n, maxRevoked) {
				r.note(burstSub(i), ip, t0)
			}
			for r.len() > 0 {
				r.prune(t0)
			}
			return &r, r.mem.remade
		}},
		{"reclaim waits", func(floor int) (any, int) {
			var r reclaimWaits
			r.mem.floor = floor
			for i := range n {
				r.wait(0, burstCID(i), []uint64{uint64(i)}, 0)
			}
			r.prune(t0, func(uint64) bool { return true })
			return &r, r.mem.remade
		}},
		{"parked", func(floor int) (any, int) {
			var x txns
			x.init()
			x.parkMem.floor = floor
			keys := fillPending(&x, n)
			ds := make([]droppedTxns, 0, n/2)
			for i := 0; i < n; i += 2 {
				ds = append(ds, x.dropSub(subKey{mac: keys[i].mac}))
			}
			for i, d := range ds {
				x.unpark(subKey{mac: keys[2*i].mac}, d, false, 0, 0, time.Time{}, 0)
			}
			return &x, x.parkMem.remade
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			kept := func(floor int) uint64 {
				before := heapAfterGC()
				owner, remade := c.burst(floor)
				after := heapAfterGC()
				runtime.KeepAlive(owner)
				t.Logf("floor %d: heap %.1f MB before, %.1f MB drained (%d remade)", floor, float64(before)/1e6, float64(after)/1e6, remade)
				return after - min(before, after)
			}
			off := kept(1 << 62)
			on := kept(0)
			t.Logf("kept after the burst: %.2f MB without the remaking, %.2f MB with", float64(off)/1e6, float64(on)/1e6)
			if on*4 > off {
				t.Fatalf("drained: %d B kept with the remaking, %d B without: want a quarter at most", on, off)
			}
		})
	}
}
