// Package lfmap is a bounded uint64→uint64 hash map with ONE writer and
// any number of lock-free readers. It backs the datapath tables (the
// classifier's MAC table, the fib's per-VRF tables): the control plane writes,
// the per-queue workers read without locks, without allocation and without
// ever blocking the writer or each other.
//
// # Layout
//
// The map is an open-addressing table with linear probing over an array of
// slots; a slot is two adjacent words {key, val} (16 bytes, so a probe touches
// one cache line and the table costs 16 B per slot). A key hashes to its home
// line with a keyed multiply-fold hash of its 8 bytes (two 64×64→128-bit
// multiplies, the Go runtime's 8-byte hash without AES; its two keys derive
// from New's seed), reduced to [0, lines) by "fastrange" (the high word of
// hash × lines, see [math/bits.Mul64]), so the line count need not be a power
// of two. The home slot is the first of that 64-byte-aligned line of 4
// slots, so the common lookup reads exactly one cache line. New(capacity)
// makes a map of up to capacity live entries at a load factor of at most
// 0.8: grown to its capacity, it has capacity×5/4 slots (rounded up to a
// whole line; about 20 B per entry). [NewLoad] takes another maximum load: a
// lower one costs memory (16 B ÷ the load per entry) and buys lookups, since
// fewer keys lie past their home line (see [Load]).
//
// The slot array is sized for the live entries, not for the capacity: a
// map starts with an array sized for min(capacity, 4096) entries at its
// load, and when a Store would put more live entries in the array than it
// is sized for, the writer rebuilds it (below) into one sized for twice as
// many, or for the capacity if that is less. A map that reaches its
// capacity has the array of a map made full-sized, slot for slot; one far
// below it keeps its entries on few cache lines and pages. That matters
// where the capacity is what the box may ever hold and the live entries
// are today's: 256 subscribers in a MAC table made for a million are 256
// lines spread over 32 MiB, each a cache and TLB miss after whatever ran
// between two batches evicted them (the kernel's work between the wake-ups
// of a copy-mode AF_XDP worker), where the same 256 in a 128 KiB array
// share its pages and its neighbouring lines: with 8 MiB written between
// batches of 32 frames, the worker with the engine took 129–136 ns per
// packet over the small array against 148–159 over the full-sized one,
// 61–64 and 80–87 above the bare worker's (BenchmarkPipelineColdAB,
// package engine, 3 runs), and the same either way with nothing between
// batches. The array never shrinks.
//
// Growing one entry at a time to N entries copies fewer than N entries in
// all (each growth copies the live entries, half the new size) but makes
// arrays of twice the final one's memory in all, each faulted in when
// made: filling a 1M-entry map in a fresh process took 0.1–0.2 s more
// grown than made full-sized (BenchmarkFill). [Map.Reserve] grows at once
// to a known count, as a start's restore does.
//
// Two key values are reserved and rejected by Store with ErrBadKey:
//
//	0           empty slot: ends every probe sequence
//	^uint64(0)  never stored (the batched lookup's test for a reserved key
//	            is one compare)
//
// and one value, rejected by Store with ErrBadValue:
//
//	^uint64(0)  deleted: the slot's key is absent
//
// # Publication rules (why readers need no lock)
//
// Every slot word is read and written with sync/atomic, and the writer follows
// three rules:
//
//  1. Insert writes val, then key. A reader that sees the key therefore sees
//     that key's value (or a later one).
//  2. Update of a present key is one atomic store of val. A reader gets the old
//     or the new value, both of which were stored for that key.
//  3. Delete is one atomic store of the deleted value into val; the key
//     stays. The slot belongs to its key until the next rebuild: no other
//     key ever moves into it, and storing the key again revives it in
//     place (one atomic store of val, as rule 2). A reader that loaded the
//     key and then loads val reads the old value, the deleted mark (absent)
//     or a later value of that key: each was stored for that key.
//
// Rule 3 is what keeps churn cheap. Before it, a delete turned the key
// into a tombstone that was never reused, and the key's next insert took
// the first empty slot past it: a subscriber bound, unbound and bound again
// lengthened its own probe sequence (and its neighbours') by a slot each
// time, until a rebuild. 4000 keys deleted and stored again 64 times made
// a lookup 16× slower (6 → 96 ns, in cache); a MAC table sized for 1M
// subscribers serving a few thousand rebuilt only after ~375 such rounds.
// Now a key that comes back costs nothing; keys that leave for good still
// hold their slots (deleted) until a rebuild.
//
// When keys in the array (live or deleted) would exceed its slot budget
// (halfway from the entries it is sized for to its slot count: 0.9 × slots
// at New's 0.8 load, 0.75 × slots at 0.5), or live entries the entries it
// is sized for, the writer builds a fresh slot array holding only the live
// entries (of the same size, or of the next size up when it grows) and
// publishes it with one atomic pointer swap (read-copy-update). Readers
// that still hold the old array keep reading a consistent, frozen
// snapshot; the garbage collector frees it once the last such reader drops
// its reference, and the deleted entries are gone. The writer never waits
// for readers. A rebuild costs O(slots) on the writer and, while it lasts,
// the memory of both arrays.
//
// # Using it
//
// A reader loads the current [View] once per batch (one atomic pointer load)
// and calls [View.Lookup] for each packet; it must not keep a View across
// batches, or it will keep reading an out-of-date array (and keep it alive).
// [View.Lookup] never locks, never allocates and never fails spuriously: a key
// present for the whole lifetime of the View is always found. [View.LookupBatch]
// does the same for a batch of keys, overlapping their cache misses; it is
// what the datapath calls, once per batch of frames.
//
// Store, Delete and Reserve are writer operations: the caller serialises them
// (typically one control-plane goroutine, or a mutex held by all writers).
// Lookup, View, Len, Cap, Bytes, MaxBytes and Range may be called from any
// goroutine (a Range callback that stores or deletes is, of course, the
// writer).
package lfmap

import (
	"errors"
	"math/bits"
	"sync/atomic"
	"unsafe"

	"github.com/ispmux/ispmux/internal/hugemem"
)

// Reserved keys and value.
const (
	keyEmpty    = 0
	keyReserved = ^uint64(0)
	valDeleted  = ^uint64(0)
)

var (
	// ErrFull is returned by Store when a new key would exceed the capacity
	// given to New.
	ErrFull = errors.New("lfmap: map full")
	// ErrBadKey is returned by Store for the reserved keys 0 and ^uint64(0).
	ErrBadKey = errors.New("lfmap: reserved key (0 and 2^64-1 cannot be stored)")
	// ErrBadValue is returned by Store for the reserved value ^uint64(0)
	// (deleted).
	ErrBadValue = errors.New("lfmap: reserved value (2^64-1 cannot be stored)")
)

// slot is one entry. key and val are only accessed with sync/atomic once the
// slot array has been published.
type slot struct {
	key uint64
	val uint64
}

const (
	slotBytes  = 16
	lineSlots  = 4 // slots per 64-byte cache line
	lineBytes  = lineSlots * slotBytes
	lineOffset = lineSlots - 1
)

// View is a snapshot of the slot array. Its layout never changes after
// publication; its contents change only by the three atomic rules in the
// package documentation, until the writer publishes a replacement (after which
// this View is frozen).
type View struct {
	slots  []slot // len is a multiple of lineSlots; &slots[0] is 64-byte aligned
	lines  []line // the same array as lines of slots
	nlines uint64 // len(slots) / lineSlots
	k0, k1 uint64 // hash keys, derived from the seed
}

func newView(nslots int, seed uint64) *View {
	nslots = (nslots + lineOffset) &^ lineOffset
	// Over-allocate by one line minus a slot and start at a cache-line
	// boundary, so that every line of 4 slots is one hardware cache line.
	buf := make([]slot, nslots+lineOffset)
	hugemem.Prepare(unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), uintptr(len(buf))*unsafe.Sizeof(buf[0])))
	skip := 0
	if off := int(uintptr(unsafe.Pointer(&buf[0])) % lineBytes); off != 0 {
		skip = (lineBytes - off) / slotBytes
	}
	slots := buf[skip : skip+nslots : skip+nslots]
	return &View{
		slots:  slots,
		lines:  unsafe.Slice((*line)(unsafe.Pointer(&slots[0])), nslots/lineSlots),
		nlines: uint64(nslots / lineSlots),
		k0:     splitmix64(seed),
		k1:     splitmix64(seed ^ 0x6a09e667f3bcc908),
	}
}

// Map is the map. The zero value is not usable; call New.
type Map struct {
	view atomic.Pointer[View] // the published slot array
	live atomic.Int64         // live entries; written by the writer only

	// Writer-owned; the caller serialises writers.
	capacity int    // max live entries
	load     Load   // maximum load: of the current array, and of the full one
	entries  int    // live entries the current array is sized for (<= capacity)
	maxUsed  int    // max keys (live or deleted) in the current array before a rebuild
	used     int    // keys (live or deleted) in the current array
	seed     uint64 // hash seed
	rebuilds int    // number of rebuilds, growths included (tests, diagnostics)
	grows    int    // number of rebuilds into a larger array (tests, diagnostics)
}

// New returns an empty map that holds up to capacity live entries (at least
// 1), in capacity×5/4 slots once it has grown to its capacity (rounded up to
// a whole cache line of 4 slots, and at least capacity+2, so that a probe
// always meets an empty slot); it starts with room for min(capacity, 4096)
// entries and grows as entries are stored (see the package documentation).
// seed is mixed into the hash; use a random one to make the probe sequences
// unpredictable to whoever chooses the keys. It is NewLoad(capacity,
// defaultLoad, seed).
func New(capacity int, seed uint64) *Map {
	return NewLoad(capacity, defaultLoad, seed)
}

// Load is a map's maximum load factor, live entries per slot, as the
// fraction Num/Den (0 < Num < Den): a map of capacity entries has
// capacity×Den/Num slots, 16×Den/Num bytes per entry.
//
// The load sets what a lookup reads past the key's home line, lines its
// memory floor does not read. In a map of 1M random keys filled to
// capacity, at a maximum load of 0.8 / 0.67 / 0.6 / 0.5: present keys not
// in their home line 15.7 / 9.5 / 7.0 / 4.1%, not in the next one either
// 7.4 / 3.1 / 1.8 / 0.7% (linear probing's clusters); lines read past the
// home line per present key 0.39 / 0.15 / 0.10 / 0.05, per absent key (its
// probe ends at an empty slot) 2.86 / 0.82 / 0.49 / 0.23. A lower load is
// worth its memory for a table read on every packet (classifier's MAC
// table, fib's table; figures at classifier's macLoad), not for one read
// rarely.
type Load struct{ Num, Den int }

// defaultLoad is New's maximum load, 0.8: 1.25 slots, 20 B, per entry.
var defaultLoad = Load{Num: 4, Den: 5}

// startEntries is the most entries a new map's first slot array is sized
// for: a map starts small (128 KiB of slots at a load of 0.5) and grows
// with its live entries, so that the entries of a table far below its
// capacity sit on few cache lines and pages.
const startEntries = 4096

// NewLoad is New with a maximum load of load.Num/load.Den instead of 0.8:
// capacity×Den/Num slots once grown to its capacity (rounded up to a whole
// line, and at least capacity+2). It panics unless 0 < Num < Den.
func NewLoad(capacity int, load Load, seed uint64) *Map {
	return newMap(capacity, load, seed, startEntries)
}

// newMap is NewLoad with a first slot array sized for min(start, capacity)
// entries (tests start small maps smaller, to make them grow).
func newMap(capacity int, load Load, seed uint64, start int) *Map {
	if load.Num <= 0 || load.Den <= load.Num {
		panic("lfmap: load must be Num/Den with 0 < Num < Den")
	}
	m := &Map{capacity: max(capacity, 1), load: load, seed: seed}
	n := min(m.capacity, max(start, 1))
	m.publish(newView(m.slotsFor(n), seed), n)
	return m
}

// slotsFor is the slot count of an array sized for n live entries at the
// map's load: n×Den/Num rounded up to a slot, at least n+2, rounded up to
// a whole line. For the capacity, it is the array of a full map.
func (m *Map) slotsFor(n int) int {
	nslots := (n*m.load.Den + m.load.Num - 1) / m.load.Num
	return (max(nslots, n+2) + lineOffset) &^ lineOffset
}

// publish makes v, an array sized for entries live entries, the current
// one.
func (m *Map) publish(v *View, entries int) {
	m.entries = entries
	// Halfway from entries to the slot count: above entries, so that a
	// rebuild frees a slot, below the slot count, so that a probe meets
	// an empty slot.
	m.maxUsed = entries + (len(v.slots)-entries)/2
	m.view.Store(v)
}

// hashM5 is the Go runtime's constant for the outer multiply of its
// fallback hash (runtime/hash64.go).
const hashM5 = 0x1d8e4e27c47d124f

// mix is the 64×64→128-bit product of a and b folded to 64 bits (high word
// XOR low word), the wyhash "mum" step.
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// splitmix64 is the SplitMix64 finaliser; newView derives the two hash keys
// from the seed with it, so that nearby seeds give unrelated keys.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// hash is the key's hash under the secret hash keys k0 and k1. It is the
// construction of the Go runtime's hash for 8-byte map keys on CPUs without
// AES (memhash64Fallback, wyhash-derived): mix(m5^8, mix(key^k1, key^k0)).
// The inner multiply is of two key-dependent words, each XORed with a random
// secret, so it is not linear in the key, and every output bit depends on
// every key bit; the outer multiply by a fixed constant spreads the
// result again before fastrange takes its high bits. Some key bits are
// chosen by subscribers (their MACs), so the keys must stay secret and
// random (New's seed): the hash keeps the bucket of a chosen MAC
// unpredictable, it does not make the table a cryptographic object.
//
// It replaced a seeded XXH64 (four dependent 64-bit multiplies plus the
// fastrange one). The batched lookup is bound by instructions more than by
// memory once its misses overlap, and measured in one process at 1K
// entries, hashing 64 keys and reading their home lines cost 3.3 ns per key
// with XXH64 against 2.0 ns with this hash; the whole batched lookup was
// 1.2–1.5 ns per key faster at 1K, 100K and 1M entries.
//
// lookup_amd64.s computes it too (TestLookupChunkImpls checks that they
// agree): a change here must be made there.
func hash(key, k0, k1 uint64) uint64 {
	return mix(hashM5^8, mix(key^k1, key^k0))
}

// home returns the first slot of key's probe sequence: the first slot of a
// cache line chosen by fastrange over the lines.
func (v *View) home(key uint64) uint64 {
	hi, _ := bits.Mul64(hash(key, v.k0, v.k1), v.nlines)
	return hi * lineSlots
}

// View returns the current snapshot: one atomic pointer load. Load it once per
// batch and use it for every lookup of the batch.
func (m *Map) View() *View { return m.view.Load() }

// Lookup returns the value stored for key and whether it is present. It never
// locks and never allocates.
//
// The probe starts at the first slot of the key's home cache line; at the
// 0.8 maximum load about 85% of keys sit in their home line, so a lookup
// usually costs one cache miss. (A branch-free variant that compares the 4 keys
// of a line with masks measured slower at 1M entries, 72 ns against 56 ns of
// CPU time per lookup, and faster only at 128K, 24 ns against 28 ns.)
func (v *View) Lookup(key uint64) (uint64, bool) {
	if key == keyEmpty || key == keyReserved {
		return 0, false
	}
	s := v.slots
	n := uint64(len(s))
	for i := v.home(key); ; {
		sl := &s[i]
		k := atomic.LoadUint64(&sl.key)
		if k == key {
			val := atomic.LoadUint64(&sl.val) // rule 1: val after key
			if val == valDeleted {
				return 0, false
			}
			return val, true
		}
		if k == keyEmpty {
			return 0, false
		}
		if i++; i == n {
			i = 0
		}
	}
}

// Lookup is m.View().Lookup(key). Hot loops should load the View once per
// batch instead.
func (m *Map) Lookup(key uint64) (uint64, bool) { return m.View().Lookup(key) }

// find returns key's slot index and true, or the index of the empty slot that
// ends key's probe sequence and false. The writer calls it on its own array.
func (v *View) find(key uint64) (uint64, bool) {
	s := v.slots
	n := uint64(len(s))
	for i := v.home(key); ; {
		k := atomic.LoadUint64(&s[i].key)
		if k == key {
			return i, true
		}
		if k == keyEmpty {
			return i, false
		}
		if i++; i == n {
			i = 0
		}
	}
}

// Store inserts key or updates its value. It returns ErrBadKey for the
// reserved keys, ErrBadValue for the reserved value, and ErrFull when key is
// absent and the map already holds Cap() entries. It may rebuild the slot
// array, into a larger one when the current one holds all the live entries
// it is sized for (see the package documentation). Writer only.
func (m *Map) Store(key, val uint64) error {
	if key == keyEmpty || key == keyReserved {
		return ErrBadKey
	}
	if val == valDeleted {
		return ErrBadValue
	}
	v := m.view.Load()
	i, found := v.find(key)
	if found && atomic.LoadUint64(&v.slots[i].val) != valDeleted {
		atomic.StoreUint64(&v.slots[i].val, val) // rule 2
		return nil
	}
	live := int(m.live.Load())
	switch {
	case live >= m.capacity:
		return ErrFull
	case live >= m.entries:
		// The array holds the live entries it is sized for, fewer than
		// the capacity: grow. The rebuild drops key if it was deleted,
		// so key is absent from the new array.
		v = m.rebuild(v, m.grownTo(live+1))
		i, _ = v.find(key)
	case found:
		atomic.StoreUint64(&v.slots[i].val, val) // rule 3: revived in place
		m.live.Add(1)
		return nil
	case m.used >= m.maxUsed:
		// live < entries < maxUsed, so the rebuild frees at least one slot.
		v = m.rebuild(v, m.entries)
		i, _ = v.find(key)
	}
	sl := &v.slots[i]
	atomic.StoreUint64(&sl.val, val) // rule 1: val first,
	atomic.StoreUint64(&sl.key, key) // then key.
	m.used++
	m.live.Add(1)
	return nil
}

// grownTo returns the entries of the array to grow into for n live entries
// (n > m.entries): the current array's doubled until they reach n, at most
// the capacity. Every array of a map is thus sized for min(start×2^k,
// capacity) entries, and one grown to its capacity is the array of a map
// made full-sized.
func (m *Map) grownTo(n int) int {
	e := m.entries
	for e < n && e < m.capacity {
		e *= 2
	}
	return min(e, m.capacity)
}

// Reserve grows the slot array at once to hold n live entries (at most
// Cap()), if it is sized for fewer: for a bulk load whose size is known,
// one rebuild where Stores one by one would grow the array in steps (each
// copying the live entries into a new array). It never shrinks the array.
// Writer only.
//
// n is clamped to the capacity before it is compared with the entries the
// array is sized for: grownTo clamps too, but without the first clamp a
// Reserve past the capacity of a map sized for it (engine.Control.Reserve
// of a table near its capacity) would rebuild the full-sized array into
// another one, copying every entry for nothing.
func (m *Map) Reserve(n int) {
	if n = min(n, m.capacity); n > m.entries {
		m.rebuild(m.view.Load(), m.grownTo(n))
	}
}

// Grows returns how many times the slot array has grown (rebuilt into a
// larger one, by Store or Reserve) since New: a diagnostic, for the tests
// of a bulk load that should grow once (Reserve) rather than in steps.
// Writer only, as it counts the writer's work.
func (m *Map) Grows() int { return m.grows }

// rebuild copies the live entries of old (not the deleted ones) into a fresh
// array sized for entries live entries (the current array's or more),
// publishes it and returns it. The new array is private until the pointer
// swap, so it is filled with plain stores; the atomic swap orders them
// before any reader's loads.
func (m *Map) rebuild(old *View, entries int) *View {
	nv := newView(m.slotsFor(entries), m.seed)
	n := uint64(len(nv.slots))
	for j := range old.slots {
		k := atomic.LoadUint64(&old.slots[j].key)
		val := atomic.LoadUint64(&old.slots[j].val)
		if k == keyEmpty || val == valDeleted {
			continue
		}
		i := nv.home(k)
		for nv.slots[i].key != keyEmpty {
			if i++; i == n {
				i = 0
			}
		}
		nv.slots[i] = slot{key: k, val: val}
	}
	if entries > m.entries {
		m.grows++
	}
	m.publish(nv, entries)
	m.used = int(m.live.Load())
	m.rebuilds++
	return nv
}

// Delete removes key and reports whether it was present. The slot keeps the
// key with the deleted value (rule 3). Writer only.
func (m *Map) Delete(key uint64) bool {
	if key == keyEmpty || key == keyReserved {
		return false
	}
	v := m.view.Load()
	i, found := v.find(key)
	if !found || atomic.LoadUint64(&v.slots[i].val) == valDeleted {
		return false
	}
	atomic.StoreUint64(&v.slots[i].val, valDeleted)
	m.live.Add(-1)
	return true
}

// Len returns the number of live entries. Any goroutine.
func (m *Map) Len() int { return int(m.live.Load()) }

// Cap returns the maximum number of live entries. Any goroutine.
func (m *Map) Cap() int { return m.capacity }

// Bytes returns the memory of the current slot array, which grows with the
// live entries up to MaxBytes. During a rebuild a second array (of the same
// size, or the larger one it grows into) exists until readers drop the old
// one. Any goroutine.
func (m *Map) Bytes() int { return len(m.view.Load().slots) * slotBytes }

// MaxBytes returns the memory of the slot array of a map grown to its
// capacity: what Bytes reaches when the map holds Cap() entries. Any
// goroutine.
func (m *Map) MaxBytes() int { return m.slotsFor(m.capacity) * slotBytes }

// Range calls fn for each live entry of the current View until fn returns
// false. Without a concurrent writer it visits every entry exactly once. With
// one (or if fn itself stores or deletes) it walks the array that was current
// when Range started: entries changed meanwhile may be missed, and a rebuild
// is not followed.
func (m *Map) Range(fn func(key, val uint64) bool) {
	v := m.view.Load()
	for j := range v.slots {
		sl := &v.slots[j]
		k := atomic.LoadUint64(&sl.key)
		if k == keyEmpty {
			continue
		}
		val := atomic.LoadUint64(&sl.val)
		if val == valDeleted {
			continue
		}
		if !fn(k, val) {
			return
		}
	}
}
