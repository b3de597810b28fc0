package lfmap

import (
	"math/bits"
	"sync/atomic"
	"unsafe"
)

// The batched lookup: LookupBatch and its portable passes; the amd64
// assembly is in lookup_amd64.s.

// MaxBatch is the most keys LookupBatch resolves in one pass; longer
// slices are done in chunks of MaxBatch.
const MaxBatch = 64

// line is one cache line of slots: a key's home and its first probes.
type line [lineSlots]slot

// LookupBatch looks up keys[i] into vals[i] and ok[i] (vals and ok must be
// at least as long as keys). A reserved key (0 or ^0) is absent (ok false).
// It never locks and never allocates.
//
// It works in passes over up to MaxBatch keys. The first hashes every key to
// its home line and asks for that line before it is used, so that the CPU
// overlaps the cache misses of the batch (at a million entries a lookup is
// a DRAM miss, ~100 ns, and a batch pays for a few of them at once instead
// of one per key). The second resolves each key in its home line, now in
// cache, without a branch on the slots' contents (see probeLine): a branch
// per slot mispredicts about once per key (the key's position in its line
// is random), and a mispredicted branch on a load that missed stalls until
// the miss is served, which made the batched lookup at 100K entries, all in
// L3, 10× its memory floor. Keys neither found nor ended by an empty slot in
// their home line (about 16% of present keys at the 0.8 maximum load, 7%
// past their second line) are finished line by line.
//
// On amd64 the passes are assembly (lookup_amd64.s): the first asks for
// each home line with a PREFETCHT0, which retires at once, where a load
// holds back the retirement of everything after it until its miss is
// served; the second prefetches the next two lines of each key it leaves
// over, and those keys are then finished in rounds of one line per key,
// each round prefetching the line after next for the keys it leaves over,
// so that a key needing three lines does not wait for two misses in turn.
// Where the CPU has AVX-512, the second pass resolves eight keys at a time
// (lookupBatchGather: their lines' keys gathered, compared at once).
// Elsewhere, and with the purego build tag, lookupChunkGo does it in Go: it
// touches the home lines with atomic loads (touching in the hashing loop
// itself measured slower at 1M), and finishes the keys left over with
// probeAfter, one miss after the other. (Touching, with a load, the next
// line of those keys in the second pass did not measure faster.)
//
// BenchmarkMACTable (package classifier), median of 3 interleaved runs, ns
// per key at 1K/100K/1M entries: 6.9/9.2/14.7 for lookupChunkGo against
// 8.0/21.7/34.2 for the version before it (XXH64, one probe loop per key
// with a branch per slot); its memory floor in the same runs,
// 1.7–1.9/2.2/3.9–7.2. The amd64 assembly roughly halves the lookup at 1M
// (figures at lookupChunk in lookup_amd64.go).
func (v *View) LookupBatch(keys, vals []uint64, ok []bool) {
	for len(keys) > 0 {
		n := min(len(keys), MaxBatch)
		v.lookupChunk(keys[:n], vals[:n], ok[:n])
		keys, vals, ok = keys[n:], vals[n:], ok[n:]
	}
}

// b2u is 1 for true and 0 for false; the compiler makes it a SETcc, not a
// branch.
func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// lookupChunkGo is lookupChunk in Go: the only one on other architectures
// (and with the purego tag), and the reference the amd64 one is tested
// against.
func (v *View) lookupChunkGo(keys, vals []uint64, ok []bool) {
	var homes [MaxBatch]*line // keys[i]'s home line
	var pend [MaxBatch]uint8  // keys left to the third pass
	base := unsafe.Pointer(unsafe.SliceData(v.lines))
	k0, k1, nl := v.k0, v.k1, v.nlines
	hs := homes[:len(keys)]
	vals, ok = vals[:len(keys)], ok[:len(keys)]
	for i, k := range keys {
		hi, _ := bits.Mul64(hash(k, k0, k1), nl)
		// hi < nl (fastrange), so the line is inside the array.
		hs[i] = (*line)(unsafe.Add(base, uintptr(hi)*lineBytes))
	}
	for _, l := range hs {
		// An atomic load is never eliminated by the compiler, even
		// with its result unused: it is the touch.
		_ = atomic.LoadUint64(&l[0].key)
	}
	np := 0
	for i, k := range keys {
		if k+1 < 2 { // keyEmpty or keyReserved
			vals[i], ok[i] = 0, false
			continue
		}
		// probeLine written out: a call per key costs more than the
		// probe (the compiler does not inline it).
		l := hs[i]
		k0 := atomic.LoadUint64(&l[0].key)
		k1 := atomic.LoadUint64(&l[1].key)
		k2 := atomic.LoadUint64(&l[2].key)
		k3 := atomic.LoadUint64(&l[3].key)
		v0 := atomic.LoadUint64(&l[0].val) // rule 1: vals after keys
		v1 := atomic.LoadUint64(&l[1].val)
		v2 := atomic.LoadUint64(&l[2].val)
		v3 := atomic.LoadUint64(&l[3].val)
		val, f := uint64(0), uint64(0)
		if k3 == k {
			val, f = v3, 1
		}
		if k2 == k {
			val, f = v2, 1
		}
		if k1 == k {
			val, f = v1, 1
		}
		if k0 == k {
			val, f = v0, 1
		}
		del := b2u(val == valDeleted) // rule 3: present but deleted
		vals[i], ok[i] = val&(del-1), f&^del != 0
		pend[np&(MaxBatch-1)] = uint8(i) // np <= i: the mask only drops a bounds check
		np += int(b2u(f == 0) & b2u(min(k0, k1, k2, k3) != keyEmpty))
	}
	for _, i := range pend[:np] {
		vals[i], ok[i] = v.probeAfter(unsafe.Pointer(hs[i]), keys[i])
	}
}

// probeAfter finishes the probe for k (not a reserved key) after the line
// at l, which held neither k nor an empty slot: it goes on line by line
// from the next one, the first after the last.
func (v *View) probeAfter(l unsafe.Pointer, k uint64) (uint64, bool) {
	base := unsafe.Pointer(unsafe.SliceData(v.lines))
	last := unsafe.Add(base, uintptr(len(v.lines)-1)*lineBytes)
	for {
		if l == last {
			l = base
		} else {
			l = unsafe.Add(l, lineBytes)
		}
		val, f, more := probeLine((*line)(l), k)
		if more == 0 {
			if val == valDeleted {
				return 0, false
			}
			return val, f != 0
		}
	}
}

// probeLine looks for k (not a reserved key) in the 4 slots of l without a
// branch: f is 1 if found, with val its value, and more is 1 if the probe
// must go on to the next line (neither k nor an empty slot in l).
//
// All four keys are loaded before the four values (rule 1); a key is in at
// most one slot of a View (rule 3), and val is the deleted value if k was
// deleted. If k was present for the whole lifetime of the View it is found:
// it sits in the first empty slot of its probe sequence at the time it was
// first inserted, slots never become empty again, so every slot before it
// stays occupied and no line before its own ends the probe.
func probeLine(l *line, k uint64) (val, f, more uint64) {
	k0 := atomic.LoadUint64(&l[0].key)
	k1 := atomic.LoadUint64(&l[1].key)
	k2 := atomic.LoadUint64(&l[2].key)
	k3 := atomic.LoadUint64(&l[3].key)
	v0 := atomic.LoadUint64(&l[0].val)
	v1 := atomic.LoadUint64(&l[1].val)
	v2 := atomic.LoadUint64(&l[2].val)
	v3 := atomic.LoadUint64(&l[3].val)
	if k3 == k {
		val, f = v3, 1
	}
	if k2 == k {
		val, f = v2, 1
	}
	if k1 == k {
		val, f = v1, 1
	}
	if k0 == k {
		val, f = v0, 1
	}
	more = b2u(f == 0) & b2u(min(k0, k1, k2, k3) != keyEmpty)
	return val, f, more
}
