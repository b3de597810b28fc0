package dhcpproxy

import (
	"runtime"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// fillPending puts n transactions in x, of n/2 subscribers with two each
// (one in bySub, one in bySubMore), and returns their keys.
func fillPending(x *txns, n int) []pendKey {
	isp := &ISP{Name: "alpha"}
	keys := make([]pendKey, 0, n)
	x.mu.Lock()
	defer x.mu.Unlock()
	for i := range n {
		sk := subKey{mac: 0x020000000000 | uint64(i/2)}
		pk := pendKey{[4]byte{byte(i % 2)}, sk.mac, 0}
		x.put(pk, &txn{sub: sk, isp: isp})
		keys = append(keys, pk)
	}
	return keys
}

// TestPendingShrinks: once the pending transactions fall to a quarter of
// their peak, the table and its index are remade for what is left, with
// every transaction and its index entries kept; the peak is then what was
// left, so that puts and deletes about that size do not remake them again
// (no copy per operation), and a peak below shrinkFloor is never remade.
// Fails without shrink (remade 0 times).
func TestPendingShrinks(t *testing.T) {
	var x txns
	x.init()
	const n = 20_000
	keys := fillPending(&x, n)
	old := x.pending
	x.mu.Lock()
	defer x.mu.Unlock()
	for i, pk := range keys[:n-n/4-1] {
		x.del(pk)
		if x.mem.remade != 0 {
			t.Fatalf("remade after %d of %d deleted", i+1, n)
		}
	}
	x.del(keys[n-n/4-1]) // n/4 left: a quarter of the peak
	if x.mem.remade != 1 || x.mem.peak != n/4 || len(x.pending) != n/4 {
		t.Fatalf("at a quarter of the peak: remade %d times, peak %d, %d pending; want 1, %d, %d", x.mem.remade, x.mem.peak, len(x.pending), n/4, n/4)
	}
	// The remade map is another map (Go's maps keep the room they grew
	// into: only a new one gives it back).
	old[pendKey{}] = nil
	if _, ok := x.pending[pendKey{}]; ok {
		t.Fatal("pending is the map of the peak")
	}
	checkIndex(t, &x, "remade")
	// Churn about the new size: no remaking.
	isp := &ISP{Name: "alpha"}
	for i := range 100_000 {
		sk := subKey{mac: 0x030000000000 | uint64(i%1000)}
		pk := pendKey{[4]byte{9}, sk.mac, 0}
		x.put(pk, &txn{sub: sk, isp: isp})
		x.del(pk)
	}
	if x.mem.remade != 1 {
		t.Fatalf("churn of one transaction remade the maps %d times", x.mem.remade-1)
	}
	// Down to none: remade at a quarter of each peak while that peak is at
	// least shrinkFloor (5000: 1250 left; 1250 < shrinkFloor: no more).
	for _, pk := range keys[n-n/4:] {
		x.del(pk)
	}
	if x.mem.remade != 2 || len(x.pending) != 0 || len(x.bySub) != 0 || len(x.bySubMore) != 0 {
		t.Fatalf("drained: remade %d times, %d pending, %d and %d indexed; want 2, 0, 0, 0", x.mem.remade, len(x.pending), len(x.bySub), len(x.bySubMore))
	}
	checkIndex(t, &x, "drained")
}

// heapAfterGC is the live heap, in bytes, after a collection.
func heapAfterGC() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestPendingReleasesMemory: 200,000 transactions pending (an outage's
// burst; 50,000 with -short), then all answered or timed out: the memory
// the pending table and its index keep, the heap after a GC against the
// one before the burst, with shrink and with it turned off (a floor no
// peak reaches). Fails without shrink (the two keep the same).
func TestPendingReleasesMemory(t *testing.T) {
	n := 200_000
	if testing.Short() {
		n = 50_000
	}
	kept := func(floor int) uint64 {
		var x txns
		x.init()
		x.mem.floor = floor
		before := heapAfterGC()
		keys := fillPending(&x, n)
		peak := heapAfterGC()
		x.mu.Lock()
		for _, pk := range keys {
			x.del(pk)
		}
		x.mu.Unlock()
		after := heapAfterGC()
		runtime.KeepAlive(&x)
		t.Logf("floor %d: heap %.1f MB before, %.1f MB at the peak of %d pending, %.1f MB drained (%d remade)",
			floor, float64(before)/1e6, float64(peak)/1e6, n, float64(after)/1e6, x.mem.remade)
		return after - min(before, after)
	}
	off := kept(1 << 62)
	on := kept(0)
	t.Logf("kept after the burst: %.2f MB without shrink, %.2f MB with", float64(off)/1e6, float64(on)/1e6)
	if on*4 > off {
		t.Fatalf("drained: %d B kept with shrink, %d B without: want a quarter at most", on, off)
	}
}

// TestOffersShrink: expire forgets the OFFERs remembered past
// offerMemory, and remakes the map once what is left has fallen to a
// quarter of its peak, keeping the OFFERs not yet forgotten. Fails without
// the remaking (remade 0 times).
func TestOffersShrink(t *testing.T) {
	var x txns
	x.init()
	now := time.Unix(1e9, 0)
	isp := &ISP{Name: "alpha"}
	const n = 20_000
	// Remembered in time order, as offer remembers them: the quarter
	// kept (i%4 == 0) last.
	for _, kept := range []bool{false, true} {
		for i := range n {
			at := now.Add(-offerMemory) // forgotten at now
			if i%4 == 0 {
				at = now
			}
			if (i%4 == 0) == kept {
				x.remember(subKey{mac: 0x020000000000 | uint64(i)}, offer{isp: isp, at: at})
			}
		}
	}
	old := x.offered
	x.expire(now)
	if x.offerMem.remade != 1 || len(x.offered) != n/4 || x.offerMem.peak != n/4 {
		t.Fatalf("a quarter left: remade %d times, %d remembered, peak %d; want 1, %d, %d", x.offerMem.remade, len(x.offered), x.offerMem.peak, n/4, n/4)
	}
	old[subKey{}] = offer{}
	if _, ok := x.offered[subKey{}]; ok {
		t.Fatal("offered is the map of the peak")
	}
	for i := 0; i < n; i += 4 {
		if o, ok := x.offered[subKey{mac: 0x020000000000 | uint64(i)}]; !ok || o.isp != isp || !o.at.Equal(now) {
			t.Fatalf("OFFER %d not kept: %+v, %v", i, o, ok)
		}
	}
	x.expire(now) // nothing forgotten: not remade again
	if x.offerMem.remade != 1 {
		t.Fatalf("remade %d times", x.offerMem.remade)
	}
}

// TestExpireRemakesMidLoop: expire's loop over pending deletes through
// del, which remakes the maps when a quarter of the peak is left; the loop
// goes on over the map it started with. 20,000 REQUESTs pending, 16,000
// of them past their deadline: the remaking comes at 5,000 left, 1,000 of
// them past their deadline and not yet reached, which the loop must still
// time out from the new map (else they stay pending, reported a tick
// late). Every REQUEST past its deadline is reported once, the others stay
// pending and indexed. FuzzTxnIndex's seeds never remake the maps in the
// middle of expire's loop (its tables are a few transactions).
func TestExpireRemakesMidLoop(t *testing.T) {
	var x txns
	x.init()
	now := time.Unix(1e9, 0)
	isp, c := &ISP{Name: "alpha"}, &Circuit{Name: "acc0"}
	const n = 20_000
	x.mu.Lock()
	for i := range n {
		sk := subKey{mac: 0x020000000000 | uint64(i)}
		deadline := now.Add(-time.Second)
		if i%5 == 0 {
			deadline = now.Add(time.Second)
		}
		x.put(pendKey{[4]byte{1}, sk.mac, 0}, &txn{sub: sk, circuit: c, isp: isp, msgType: dhcpv4.MessageTypeRequest, deadline: deadline})
	}
	x.mu.Unlock()
	tos := x.expire(now)
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.mem.remade != 1 || len(x.pending) != n/5 {
		t.Fatalf("expired: remade %d times, %d pending; want 1, %d", x.mem.remade, len(x.pending), n/5)
	}
	seen := map[uint64]bool{}
	for _, to := range tos {
		i := to.subj.mac &^ 0x020000000000
		if seen[to.subj.mac] || i%5 == 0 {
			t.Fatalf("timed out: %d (again: %v)", i, seen[to.subj.mac])
		}
		seen[to.subj.mac] = true
	}
	if len(seen) != n-n/5 {
		t.Fatalf("%d timed out, want %d", len(seen), n-n/5)
	}
	for i := 0; i < n; i += 5 {
		if x.pending[pendKey{[4]byte{1}, 0x020000000000 | uint64(i), 0}] == nil {
			t.Fatalf("transaction %d, not past its deadline, not pending", i)
		}
	}
	checkIndex(t, &x, "expired")
}

// TestRapidShrink: expire forgets the rapid-commit wins past their time,
// and remakes the map once what is left has fallen to a quarter of its
// peak, keeping the wins not yet forgotten; with nothing forgotten, it is
// not remade again. Fails without the remaking (remade 0 times).
func TestRapidShrink(t *testing.T) {
	var x txns
	x.init()
	now := time.Unix(1e9, 0)
	const n = 20_000
	for i := range n {
		until := now.Add(-time.Second) // forgotten at now
		if i%4 == 0 {
			until = now.Add(time.Second)
		}
		x.winRapid(pendKey{mac: 0x020000000000 | uint64(i)}, &rapidWin{until: until})
	}
	old := x.rapid
	x.expire(now)
	if x.rapidMem.remade != 1 || len(x.rapid) != n/4 || x.rapidMem.peak != n/4 {
		t.Fatalf("a quarter left: remade %d times, %d remembered, peak %d; want 1, %d, %d", x.rapidMem.remade, len(x.rapid), x.rapidMem.peak, n/4, n/4)
	}
	old[pendKey{}] = nil
	if _, ok := x.rapid[pendKey{}]; ok {
		t.Fatal("rapid is the map of the peak")
	}
	for i := 0; i < n; i += 4 {
		if w := x.rapid[pendKey{mac: 0x020000000000 | uint64(i)}]; w == nil || !w.until.Equal(now.Add(time.Second)) {
			t.Fatalf("rapid-commit win %d not kept: %+v", i, w)
		}
	}
	x.expire(now)
	if x.rapidMem.remade != 1 {
		t.Fatalf("remade %d times", x.rapidMem.remade)
	}
}
