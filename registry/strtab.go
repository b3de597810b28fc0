package registry

import (
	"fmt"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/ispmux/ispmux/internal/oatable"
)

// strtab holds strings many MACs share, each once, with a count of the
// MACs holding it: the customers (ISP index + customer ID, with the
// customer's suspension flag) and the access names. A record is freed
// when no MAC holds it (a customer also stays while suspended, so that a
// device attached later inherits the suspension) and its index reused.
//
// Records live in chunks that never move: a reader indexes them without
// the writer's lock while it holds the read lock of a shard where a MAC
// refers to the record — the record cannot be freed then, since a MAC
// leaves its shard under the shard's write lock before its hold is
// released. Only the writer (Registry.wmu held) calls the other methods.
type strtab struct {
	dir   atomic.Pointer[[]*chunk]
	index *oatable.Table[uint64, uint32] // hash(scope, s) → first record + 1 of its chain
	free  []uint32
	n     uint32 // records ever allocated
	what  string // for the overflow panic
	hash  func(scope uint32, s string) uint64
}

type record struct {
	s     string
	scope uint32 // a customer's ISP (names index); 0 for access names
	refs  int32  // MACs holding it
	next  uint32 // next record + 1 with the same hash (0: none)
	flag  atomic.Bool
}

const chunkBits = 10

type chunk [1 << chunkBits]record

func (t *strtab) init(what string) {
	t.index = oatable.New[uint64, uint32](func(h uint64) uint64 { return h })
	t.what = what
	t.hash = hashOf
	d := []*chunk{}
	t.dir.Store(&d)
}

func hashOf(scope uint32, s string) uint64 {
	return xxhash.Sum64String(s) ^ oatable.Mix64(uint64(scope)+1)
}

// at returns record i (any goroutine, see the type's comment).
func (t *strtab) at(i uint32) *record {
	d := *t.dir.Load()
	return &d[i>>chunkBits][i&(1<<chunkBits-1)]
}

// reserve makes room for n records in the index.
func (t *strtab) reserve(n int) { t.index.Reserve(n) }

// find returns the index of (scope, s).
func (t *strtab) find(scope uint32, s string) (uint32, bool) {
	head, _ := t.index.Get(t.hash(scope, s))
	for i := head; i != 0; {
		r := t.at(i - 1)
		if r.scope == scope && r.s == s {
			return i - 1, true
		}
		i = r.next
	}
	return 0, false
}

// hold returns the index of (scope, s) with one more holder; a record
// made here starts with flag.
func (t *strtab) hold(scope uint32, s string, flag bool) uint32 {
	if i, ok := t.find(scope, s); ok {
		t.at(i).refs++
		return i
	}
	i := t.alloc(scope, s, flag)
	t.at(i).refs = 1
	return i
}

// release drops one holder of record i, freeing it if it was the last
// and its flag is clear.
func (t *strtab) release(i uint32) {
	r := t.at(i)
	if r.refs--; r.refs <= 0 && !r.flag.Load() {
		t.unlink(i)
	}
}

// setFlag sets the flag of (scope, s), keeping a record for it while the
// flag is set even if nothing holds it.
func (t *strtab) setFlag(scope uint32, s string, flag bool) {
	i, ok := t.find(scope, s)
	if !ok {
		if flag {
			t.alloc(scope, s, true)
		}
		return
	}
	r := t.at(i)
	r.flag.Store(flag)
	if !flag && r.refs <= 0 {
		t.unlink(i)
	}
}

func (t *strtab) alloc(scope uint32, s string, flag bool) uint32 {
	var i uint32
	if k := len(t.free); k > 0 {
		i, t.free = t.free[k-1], t.free[:k-1]
	} else {
		if t.n == ^uint32(0) {
			panic(fmt.Sprintf("registry: more than %d %s", t.n, t.what))
		}
		i = t.n
		t.n++
		if d := *t.dir.Load(); int(i>>chunkBits) == len(d) {
			nd := make([]*chunk, len(d)+1)
			copy(nd, d)
			nd[len(d)] = new(chunk)
			t.dir.Store(&nd)
		}
	}
	h := t.hash(scope, s)
	head, _ := t.index.Get(h)
	r := t.at(i)
	r.s, r.scope, r.refs, r.next = s, scope, 0, head
	r.flag.Store(flag)
	t.index.Put(h, i+1)
	return i
}

// unlink frees record i.
func (t *strtab) unlink(i uint32) {
	r := t.at(i)
	h := t.hash(r.scope, r.s)
	head, _ := t.index.Get(h)
	if head == i+1 {
		if r.next == 0 {
			t.index.Delete(h)
		} else {
			t.index.Put(h, r.next)
		}
	} else {
		for p := t.at(head - 1); ; p = t.at(p.next - 1) {
			if p.next == i+1 {
				p.next = r.next
				break
			}
		}
	}
	r.s, r.next, r.refs = "", 0, 0
	r.flag.Store(false)
	t.free = append(t.free, i)
}

// list is a grow-only list of names few and bounded by the configuration
// (ISP names, registration sources), indexed by uint16. Readers index it
// without a lock (the slice is copied on each new name: few ever come).
type list struct {
	names atomic.Pointer[[]string]
	index map[string]uint16 // writer only
	what  string
}

func (l *list) init(what string) {
	l.index = map[string]uint16{"": 0}
	l.names.Store(&[]string{""})
	l.what = what
}

func (l *list) get(i uint16) string { return (*l.names.Load())[i] }

// intern returns v's index, adding it (writer only).
func (l *list) intern(v string) uint16 {
	if i, ok := l.index[v]; ok {
		return i
	}
	old := *l.names.Load()
	if len(old) > 1<<16-1 {
		// ISP names and sources are checked against the configuration
		// and the code before they reach the registry.
		panic(fmt.Sprintf("registry: more than %d %s", len(old), l.what))
	}
	nl := append(old[:len(old):len(old)], v)
	i := uint16(len(old))
	l.index[v] = i
	l.names.Store(&nl)
	return i
}
