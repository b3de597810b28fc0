package dhcpproxy

import (
	"math/rand/v2"
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
	if !lt.remove(subKey{c1, mac}) { // the first one put
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
	if got := lt.ofMAC(mac); got != nil || lt.len() != 1 {
		t.Errorf("all removed: ofMAC %v, len %d (want nil, 1)", got, lt.len())
	}
	if got := lt.ofMAC(0x020000000002); len(got) != 1 || got[0].k != (subKey{c1, 0x020000000002}) {
		t.Errorf("the other MAC: ofMAC %v", got)
	}
	if lt.perISP[0] != 0 || lt.perISP[1] != 1 || lt.perCircuit[c1] != 1 || lt.perCircuit[c2] != 0 || lt.perCircuit[c3] != 0 {
		t.Errorf("counts at the end: per ISP %v, per circuit %v", lt.perISP[:2], lt.perCircuit)
	}
	// MAC 0 on circuit 0/0 is the table's zero key, held apart from its
	// slots: ofMAC(0) finds it with MAC 0's other leases.
	lt.put(subKey{}, lease{isp: 2})
	lt.put(subKey{c1, 0}, lease{isp: 2})
	if got := lt.ofMAC(0); len(got) != 2 || lt.len() != 3 || lt.perCircuit[circuitKey{}] != 1 {
		t.Errorf("MAC 0: ofMAC %v, len %d", got, lt.len())
	}
	if _, ok := lt.get(subKey{}); !ok || !lt.remove(subKey{}) || len(lt.ofMAC(0)) != 1 || lt.perISP[2] != 1 {
		t.Errorf("MAC 0 on circuit 0/0 not held or not removed: ofMAC %v", lt.ofMAC(0))
	}
}

// TestLeaseTableMany: 200k leases, a few MACs on two or three circuits,
// half restored (reserve, load) and half put (the table grows past its
// reservation), some replaced, a third removed in random order and some
// put back: get, ofMAC, len, all and the counts per circuit and per ISP
// agree with a Go map throughout.
func TestLeaseTableMany(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const devices = 190000
	var ks []subKey
	var ls []lease
	macs := map[uint64]bool{}
	for len(macs) < devices {
		mac := rng.Uint64() & (1<<48 - 1)
		if macs[mac] {
			continue
		}
		macs[mac] = true
		n := 1
		if r := rng.IntN(100); r < 3 {
			n = 2
		} else if r < 5 {
			n = 3
		}
		port := uint8(rng.IntN(8))
		vlan := uint16(rng.IntN(200))
		for j := range n {
			ks = append(ks, subKey{circuitKey{port + uint8(j), vlan}, mac})
			ls = append(ls, lease{
				expires: time.Now().Add(time.Hour).UnixNano() + int64(len(ls)),
				updated: int64(len(ls)), isp: uint8(rng.IntN(4)), ip: [4]byte{100, 64, byte(len(ls) >> 8), byte(len(ls))},
			})
		}
	}
	t.Logf("%d leases of %d MACs", len(ks), devices)
	ref := map[subKey]lease{}
	var lt leaseTable
	lt.init()
	half := len(ks) / 2
	lt.reserve(half)
	lt.load([][]subKey{ks[:half]}, [][]lease{ls[:half]})
	for i, k := range ks[:half] {
		ref[k] = ls[i]
	}
	for i, k := range ks[half:] {
		lt.put(k, ls[half+i])
		ref[k] = ls[half+i]
	}
	check := func(stage string) {
		t.Helper()
		if lt.len() != len(ref) {
			t.Fatalf("%s: len %d, want %d", stage, lt.len(), len(ref))
		}
		perCircuit := map[circuitKey]int{}
		var perISP [256]int
		for k, l := range ref {
			perCircuit[k.circuit]++
			perISP[l.isp]++
		}
		for c, n := range lt.perCircuit {
			if n != perCircuit[c] {
				t.Fatalf("%s: %v has %d, want %d", stage, c, n, perCircuit[c])
			}
		}
		for c, n := range perCircuit {
			if lt.perCircuit[c] != n {
				t.Fatalf("%s: %v has %d, want %d", stage, c, lt.perCircuit[c], n)
			}
		}
		if lt.perISP != perISP {
			t.Fatalf("%s: per ISP %v, want %v", stage, lt.perISP[:4], perISP[:4])
		}
		for _, k := range ks { // held and removed
			l, ok := lt.get(k)
			if rl, rok := ref[k]; ok != rok || l != rl {
				t.Fatalf("%s: get %v = %v %v, want %v %v", stage, k, l, ok, rl, rok)
			}
		}
		held := map[uint64]int{}
		for k := range ref {
			held[k.mac]++
		}
		for mac := range macs {
			got := lt.ofMAC(mac)
			if len(got) != held[mac] || (held[mac] == 0 && got != nil) {
				t.Fatalf("%s: ofMAC(%x) has %d leases, want %d", stage, mac, len(got), held[mac])
			}
			for _, h := range got {
				if rl, ok := ref[h.k]; h.k.mac != mac || !ok || rl != h.l {
					t.Fatalf("%s: ofMAC(%x) has %v %v, want %v %v", stage, mac, h.k, h.l, rl, ok)
				}
			}
		}
		all := lt.all()
		seen := make(map[subKey]bool, len(all))
		for _, h := range all {
			if seen[h.k] || ref[h.k] != h.l {
				t.Fatalf("%s: all has %v %v (twice: %v), want %v", stage, h.k, h.l, seen[h.k], ref[h.k])
			}
			seen[h.k] = true
		}
		if len(all) != len(ref) {
			t.Fatalf("%s: all has %d, want %d", stage, len(all), len(ref))
		}
	}
	check("put")
	// Replace every tenth lease with another version at another ISP.
	for i := 0; i < len(ks); i += 10 {
		l := ls[i]
		l.updated, l.isp = -l.updated, l.isp^1
		lt.put(ks[i], l)
		ref[ks[i]] = l
	}
	check("replaced")
	order := rng.Perm(len(ks))
	for _, i := range order[:len(ks)/3] {
		if !lt.remove(ks[i]) {
			t.Fatalf("remove %v: not held", ks[i])
		}
		delete(ref, ks[i])
	}
	for _, i := range order[:100] {
		if lt.remove(ks[i]) {
			t.Fatalf("remove %v: removed twice", ks[i])
		}
	}
	check("a third removed")
	for _, i := range order[:len(ks)/30] {
		lt.put(ks[i], ls[i])
		ref[ks[i]] = ls[i]
	}
	check("some put back")
}

// TestLeaseCompact: the table's value holds no pointer (the GC never
// scans a million of them) and stays small. The figure counts the table's
// slots, the expiry heap (reserved for 1.5 entries a lease) and the
// client identifiers' index (every lease with one).
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
		ls[i] = lease{expires: time.Now().Add(time.Hour).UnixNano(), cid: uint32(i + 1)}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	lt.reserve(n)
	lt.load([][]subKey{ks}, [][]lease{ls})
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("lease table: %.0f B per lease", per)
	if per > 200 {
		t.Errorf("lease table: %.0f B per lease, want ≤ 200", per)
	}
	// ks and ls stay live until after the measure: freed before it, they
	// would be subtracted from the table's bytes.
	runtime.KeepAlive(&lt)
	runtime.KeepAlive(ks)
	runtime.KeepAlive(ls)
}

// A lease's client end is kept in whole seconds after its version
// (updated), rounded up: never before the end ispmux gave, never more
// than a second after it; unknown until set.
func TestLeaseClientEndRoundsUp(t *testing.T) {
	at := time.Unix(1_800_000_000, 123_456_789)
	l := lease{updated: at.UnixNano()}
	if _, ok := l.clientEndAt(); ok {
		t.Fatal("client end known before any was set")
	}
	for _, d := range []time.Duration{0, time.Nanosecond, 10*time.Minute + time.Second, 10*time.Minute + 1500*time.Millisecond, 400 * 24 * time.Hour} {
		end := at.Add(d)
		l.setClientEnd(end)
		got, ok := l.clientEndAt()
		if !ok || got < end.UnixNano() || got > end.Add(time.Second).UnixNano() {
			t.Errorf("client end set to %v after updated: %v after (known %v), want within a second after it", d, time.Duration(got-at.UnixNano()), ok)
		}
	}
}

// TestGenerationsPruned: a subscriber's generation is kept while a
// transaction may still hold it and dropped after genKeep unmoved: kept
// for good, every MAC ever ended stayed in the map (a random-MAC device
// population grew it without bound).
func TestGenerationsPruned(t *testing.T) {
	var lt leaseTable
	lt.init()
	a, b := subKey{circuitKey{1, 0}, 0x020000000001}, subKey{circuitKey{1, 0}, 0x020000000002}
	lt.bumpGen(a)
	lt.bumpGen(a)
	if g := lt.generation(a); g != 2 {
		t.Fatalf("generation %d, want 2", g)
	}
	now := time.Now()
	lt.pruneGens(now.Add(genKeep / 2))
	if g := lt.generation(a); g != 2 {
		t.Fatalf("pruned after %v: generation %d, want 2 kept", genKeep/2, g)
	}
	lt.bumpGen(b)
	lt.pruneGens(now.Add(genKeep / 2).Add(30 * time.Second)) // within a minute of the last: not run
	if len(lt.gen) != 2 {
		t.Fatalf("%d generations, want 2", len(lt.gen))
	}
	lt.pruneGens(now.Add(genKeep + 2*time.Minute))
	if len(lt.gen) != 0 || lt.generation(a) != 0 {
		t.Fatalf("after %v unmoved: %d generations kept", genKeep, len(lt.gen))
	}
}

// TestGenerationPrunedThenEndCommitted: a transaction that read a
// subscriber's generation just before pruneGens dropped it (reading does
// not move it: its entry last moved more than genKeep ago) is not current
// once an end after it is committed. Per-subscriber counters started
// again at 0 after the drop, so the end's generation (1) was below the
// transaction's (2) and its ACK bound after the committed end.
func TestGenerationPrunedThenEndCommitted(t *testing.T) {
	var lt leaseTable
	lt.init()
	a := subKey{circuitKey{1, 0}, 0x020000000001}
	lt.commitGen(a, lt.bumpGen(a))
	lt.commitGen(a, lt.bumpGen(a))
	g := lt.generation(a) // a renewal relayed now, its entry unmoved for long
	if !lt.current(a, g) {
		t.Fatalf("a transaction of generation %d not current before any end", g)
	}
	lt.pruneGens(time.Now().Add(genKeep + 2*time.Minute))
	if !lt.current(a, g) {
		t.Fatalf("a transaction of generation %d not current after the prune, no end since", g)
	}
	lt.commitGen(a, lt.bumpGen(a)) // its binding ends, committed
	if lt.current(a, g) {
		t.Fatalf("a transaction of generation %d, relayed before a committed end, still current after it (generation now %d): its ACK binds after the end", g, lt.generation(a))
	}
	// A refused end after the prune leaves it current.
	b := subKey{circuitKey{1, 0}, 0x020000000002}
	lt.commitGen(b, lt.bumpGen(b))
	gb := lt.generation(b)
	lt.pruneGens(time.Now().Add(2*genKeep + 4*time.Minute))
	lt.bumpGen(b) // refused: no commitGen
	if !lt.current(b, gb) {
		t.Fatalf("a transaction of generation %d not current after a refused end", gb)
	}
}
