//go:build linux

package lfmap

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"unsafe"

	"github.com/ispmux/ispmux/internal/hugemem"
	"github.com/ispmux/ispmux/internal/hugemem/hugememtest"
)

// hugeInterior checks that the 2 MiB-aligned interior of v's slot array
// is all on transparent huge pages (hugemem.Prepare), and that the array
// is at least hugemem.Min bytes, so that Prepare acted on it.
func hugeInterior(t *testing.T, v *View, what string) {
	t.Helper()
	b := unsafe.Slice((*byte)(unsafe.Pointer(&v.slots[0])), len(v.slots)*slotBytes)
	if len(b) < hugemem.Min {
		t.Fatalf("%s: %d bytes, under hugemem.Min", what, len(b))
	}
	const huge = 2 << 20
	start := uintptr(unsafe.Pointer(&b[0]))
	lo := (start + huge - 1) &^ (huge - 1)
	hi := (start + uintptr(len(b))) &^ (huge - 1)
	if pages, res, h := hugememtest.Backing(t, b[lo-start:hi-start]); h != pages || res != pages {
		t.Errorf("%s: %d of the interior's %d pages resident, %d on huge pages; want all", what, res, pages, h)
	}
}

// TestHugePages: a table big enough for hugemem.Prepare is on huge pages
// when grown or reserved to that size and after each rebuild, including a
// slot array made from
// memory the Go heap had already touched (the advice alone left such
// memory on 4 KiB pages), and behaves as a small table does: every
// lookup, single and batched, agrees with a Go map, and neither
// allocates.
func TestHugePages(t *testing.T) {
	hugememtest.RequireCollapse(t)
	// Memory the heap has touched and freed, for the next makes to
	// reuse (likely, not certain: the check holds either way).
	junk := make([]byte, 16<<20)
	for i := range junk {
		junk[i] = 1
	}
	junk = nil
	runtime.GC()

	const capacity = 300_000 // 375,000 slots, 6 MB at the 0.8 load
	func() {
		reserved := New(capacity, 7)
		reserved.Reserve(capacity)
		hugeInterior(t, reserved.View(), "reserved table")
	}()
	m := New(capacity, 7)
	ref := map[uint64]uint64{}
	r := rand.New(rand.NewPCG(1, 2))
	key := func() uint64 { return r.Uint64()>>1 | 1 }
	for len(ref) < capacity {
		k, v := key(), r.Uint64()>>1
		if err := m.Store(k, v); err != nil {
			t.Fatal(err)
		}
		ref[k] = v
	}
	check := func(what string) {
		t.Helper()
		v := m.View()
		keys := make([]uint64, 0, len(ref)+1000)
		for k := range ref {
			keys = append(keys, k)
		}
		for range 1000 {
			keys = append(keys, key()) // (almost certainly) absent
		}
		vals := make([]uint64, len(keys))
		ok := make([]bool, len(keys))
		v.LookupBatch(keys, vals, ok)
		for i, k := range keys {
			want, wok := ref[k]
			got, gok := v.Lookup(k)
			if got != want || gok != wok || vals[i] != want || ok[i] != wok {
				t.Fatalf("%s: key %#x: Lookup (%d, %v), LookupBatch (%d, %v), want (%d, %v)",
					what, k, got, gok, vals[i], ok[i], want, wok)
			}
		}
		if a := testing.AllocsPerRun(10, func() { v.LookupBatch(keys[:MaxBatch], vals, ok) }); a != 0 {
			t.Errorf("%s: LookupBatch allocates %.0f times", what, a)
		}
		if a := testing.AllocsPerRun(10, func() { v.Lookup(keys[0]) }); a != 0 {
			t.Errorf("%s: Lookup allocates %.0f times", what, a)
		}
	}
	hugeInterior(t, m.View(), "grown table")
	check("filled")
	// Churn: delete a tenth of the keys and store as many new ones, until
	// the writer has rebuilt the array twice, each time on memory the
	// old arrays (freed by the GC) may hand back.
	for grown := m.rebuilds; m.rebuilds < grown+2; {
		before := m.rebuilds
		n := 0
		for k := range ref {
			if n++; n > capacity/10 {
				break
			}
			m.Delete(k)
			delete(ref, k)
		}
		for len(ref) < capacity {
			k, v := key(), r.Uint64()>>1
			if err := m.Store(k, v); err != nil {
				t.Fatal(err)
			}
			ref[k] = v
		}
		runtime.GC()
		if m.rebuilds > before {
			hugeInterior(t, m.View(), "rebuilt table")
			check("rebuilt")
		}
	}
}
