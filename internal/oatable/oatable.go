// Package oatable is a flat open-addressed hash table for the control
// plane's sets of up to millions of entries (the registry, the DHCP lease
// table): the entries live by value in one slice (no allocation per entry;
// the GC does not scan the slice unless the key or value holds pointers),
// with linear probing and backward-shift deletion (no tombstones), and a
// capacity that is not rounded to a power of two (a slot's home is the
// hash scaled to the length, "fastrange"), so a table reserved for n
// entries holds them at its planned load instead of half empty.
//
// A Table is not safe for concurrent use: its owner locks around it.
// Lookups cost a few probes at the load kept (≤ 80 %); the tables are for
// the control plane, not the per-packet path (internal/lfmap is that).
package oatable

import (
	"math/bits"
	"unsafe"

	"github.com/ispmux/ispmux/internal/hugemem"
)

// maxLoad is the fill (in 1/1000) above which a table grows; reserve
// plans for 70 % so that a reserved table does not grow soon after.
const (
	maxLoad     = 800
	plannedLoad = 700
	minSlots    = 8
)

// Table maps K to V. The zero key is allowed (held apart from the slots,
// which use it to mark an empty slot).
type Table[K comparable, V any] struct {
	slots []slot[K, V]
	hash  func(K) uint64
	n     int // keys in slots (not counting the zero key)
	zero  bool
	zv    V
}

type slot[K comparable, V any] struct {
	k K
	v V
}

// New returns an empty table hashing keys with hash, whose every bit
// should depend on the whole key (the high bits choose the home slot).
func New[K comparable, V any](hash func(K) uint64) *Table[K, V] {
	return &Table[K, V]{hash: hash}
}

// Len returns the number of keys held.
func (t *Table[K, V]) Len() int {
	if t.zero {
		return t.n + 1
	}
	return t.n
}

// Slots returns the number of slots allocated (for memory accounting).
func (t *Table[K, V]) Slots() int { return len(t.slots) }

// Reserve makes room for n keys in all without growing (it never shrinks).
func (t *Table[K, V]) Reserve(n int) {
	want := n*1000/plannedLoad + 1
	if want > len(t.slots) {
		t.resize(want)
	}
}

// home is h's first slot.
func (t *Table[K, V]) home(h uint64) int {
	hi, _ := bits.Mul64(h, uint64(len(t.slots)))
	return int(hi)
}

// find returns k's slot and true, or the empty slot ending its probe and
// false (len(slots) > 0, k not zero).
func (t *Table[K, V]) find(k K) (int, bool) {
	var zero K
	i := t.home(t.hash(k))
	for {
		switch t.slots[i].k {
		case k:
			return i, true
		case zero:
			return i, false
		}
		if i++; i == len(t.slots) {
			i = 0
		}
	}
}

// Get returns k's value.
func (t *Table[K, V]) Get(k K) (V, bool) {
	var zk K
	if k == zk {
		return t.zv, t.zero
	}
	if t.n == 0 {
		var v V
		return v, false
	}
	i, ok := t.find(k)
	return t.slots[i].v, ok
}

// Ptr returns a pointer to k's value, valid until the next Put or Delete
// (nil if k is absent).
func (t *Table[K, V]) Ptr(k K) *V {
	var zk K
	if k == zk {
		if t.zero {
			return &t.zv
		}
		return nil
	}
	if t.n == 0 {
		return nil
	}
	if i, ok := t.find(k); ok {
		return &t.slots[i].v
	}
	return nil
}

// Put sets k's value; it returns the value it replaced, if any.
func (t *Table[K, V]) Put(k K, v V) (old V, had bool) {
	var zk K
	if k == zk {
		old, had = t.zv, t.zero
		t.zv, t.zero = v, true
		return old, had
	}
	if (t.n+1)*1000 > len(t.slots)*maxLoad {
		t.resize(max(minSlots, len(t.slots)*2))
	}
	i, ok := t.find(k)
	if ok {
		old, had = t.slots[i].v, true
	} else {
		t.n++
	}
	t.slots[i] = slot[K, V]{k, v}
	return old, had
}

// Delete removes k; it returns its value, if it had one.
func (t *Table[K, V]) Delete(k K) (old V, had bool) {
	var zk K
	var zv V
	if k == zk {
		old, had = t.zv, t.zero
		t.zv, t.zero = zv, false
		return old, had
	}
	if t.n == 0 {
		return old, false
	}
	i, ok := t.find(k)
	if !ok {
		return old, false
	}
	old = t.slots[i].v
	t.n--
	// Backward shift: every later key of the cluster whose home is not in
	// (i, j] moves into the hole, which moves on to j.
	n := len(t.slots)
	for j := i; ; {
		if j++; j == n {
			j = 0
		}
		if t.slots[j].k == zk {
			break
		}
		h := t.home(t.hash(t.slots[j].k))
		if (i <= j && (h <= i || h > j)) || (i > j && h <= i && h > j) {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = slot[K, V]{}
	return old, true
}

// Range calls fn for every key and value until fn returns false. fn must
// not change the table.
func (t *Table[K, V]) Range(fn func(k K, v V) bool) {
	var zk K
	if t.zero && !fn(zk, t.zv) {
		return
	}
	for i := range t.slots {
		if s := &t.slots[i]; s.k != zk && !fn(s.k, s.v) {
			return
		}
	}
}

// Probe calls fn for every key of the cluster where keys hashing to h
// live (from h's home to the next empty slot), until fn returns false:
// with a hash of part of the key (a MAC), every key sharing that part is
// among them. The zero key (held apart from the slots) comes first if it
// hashes to h. fn must not change the table.
func (t *Table[K, V]) Probe(h uint64, fn func(k K, v V) bool) {
	var zk K
	if t.zero && t.hash(zk) == h && !fn(zk, t.zv) {
		return
	}
	if t.n == 0 {
		return
	}
	for i := t.home(h); t.slots[i].k != zk; {
		if !fn(t.slots[i].k, t.slots[i].v) {
			return
		}
		if i++; i == len(t.slots) {
			i = 0
		}
	}
}

func (t *Table[K, V]) resize(n int) {
	old := t.slots
	t.slots = make([]slot[K, V], n)
	hugemem.Prepare(unsafe.Slice((*byte)(unsafe.Pointer(&t.slots[0])), uintptr(n)*unsafe.Sizeof(t.slots[0])))
	var zk K
	for i := range old {
		if s := &old[i]; s.k != zk {
			j, _ := t.find(s.k)
			t.slots[j] = *s
		}
	}
}

// Mix64 is a 64-bit finaliser (MurmurHash3's): every output bit depends on
// every input bit, for integer keys such as MACs.
func Mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}
