package dhcpproxy

import (
	"runtime"
	"testing"
	"time"
	"unsafe"
)

// TestLeaseTableByMAC: a MAC holding leases on several circuits is found
// on each (ofMAC) whatever order they are removed in, and the counts per
// circuit and per ISP follow.
func TestLeaseTableByMAC(t *testing.T) {
	var lt leaseTable
	lt.init()
	c1, c2, c3 := circuitKey{1, 0}, circuitKey{2, 0}, circuitKey{1, 7}
	const mac = 0x020000000001
	for i, c := range []circuitKey{c1, c2, c3} {
		lt.put(subKey{c, mac}, lease{isp: uint8(i % 2), ip: [4]byte{100, 64, 0, byte(i)}})
	}
	lt.put(subKey{c1, 0x020000000002}, lease{isp: 1})
	circuits := func() map[circuitKey]bool {
		out := map[circuitKey]bool{}
		for _, h := range lt.ofMAC(mac) {
			if h.k.mac != mac {
				t.Fatalf("ofMAC(%x) returned %v", mac, h.k)
			}
			out[h.k.circuit] = true
		}
		return out
	}
	if got := circuits(); len(got) != 3 {
		t.Fatalf("ofMAC: %v, want 3 circuits", got)
	}
	if lt.perISP[0] != 2 || lt.perISP[1] != 2 || lt.perCircuit[c1] != 2 {
		t.Errorf("counts: per ISP %v, on c1 %d", lt.perISP[:2], lt.perCircuit[c1])
	}
	// Renewed in place: counted once.
	lt.put(subKey{c2, mac}, lease{isp: 0})
	if lt.perISP[0] != 3 || lt.perISP[1] != 1 || lt.perCircuit[c2] != 1 {
		t.Errorf("after a change of ISP: per ISP %v, on c2 %d", lt.perISP[:2], lt.perCircuit[c2])
	}
	if !lt.remove(subKey{c1, mac}) { // the first one: byMAC takes the next
		t.Fatal("remove c1: not held")
	}
	if got := circuits(); len(got) != 2 || !got[c2] || !got[c3] {
		t.Errorf("after removing c1: %v", got)
	}
	if lt.remove(subKey{c1, mac}) {
		t.Error("removed twice")
	}
	lt.remove(subKey{c3, mac})
	lt.remove(subKey{c2, mac})
	if got := circuits(); len(got) != 0 || len(lt.byMAC) != 1 || len(lt.more) != 0 {
		t.Errorf("all removed: ofMAC %v, byMAC %d, more %d", got, len(lt.byMAC), len(lt.more))
	}
	if lt.perISP[0] != 0 || lt.perISP[1] != 1 {
		t.Errorf("per ISP at the end: %v", lt.perISP[:2])
	}
}

// TestLeaseCompact: the table's value holds no pointer (the GC never
// scans a million of them) and stays small.
func TestLeaseCompact(t *testing.T) {
	if n := unsafe.Sizeof(lease{}); n > 48 {
		t.Errorf("lease is %d bytes, want ≤ 48", n)
	}
	var lt leaseTable
	lt.init()
	const n = 200000
	ks, ls := make([]subKey, n), make([]lease, n)
	for i := range n {
		ks[i] = subKey{circuitKey{1, 0}, uint64(0x020000000000 + i)}
		ls[i] = lease{expires: time.Now().Add(time.Hour).UnixNano()}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	lt.reserve(n)
	lt.load(ks, ls)
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("lease table: %.0f B per lease", per)
	if per > 200 {
		t.Errorf("lease table: %.0f B per lease, want ≤ 200", per)
	}
	runtime.KeepAlive(&lt)
}
