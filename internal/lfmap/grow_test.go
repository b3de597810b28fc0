package lfmap

import (
	"errors"
	"testing"
)

// TestGrowBoundaries fills a map that starts sized for 4 entries up to its
// capacity of 100, one key at a time: the array grows exactly when a Store
// would put one live entry more than it is sized for (4, 8, 16, 32, 64,
// then the capacity, 100), never otherwise; every View taken before a
// growth keeps answering from its frozen array; the full map's array is the
// one a map made full-sized has, and one key more is ErrFull.
func TestGrowBoundaries(t *testing.T) {
	const capacity = 100
	load := Load{Num: 1, Den: 2}
	m := newMap(capacity, load, 3, 4)
	full := newMap(capacity, load, 3, capacity)
	md := &model{m: map[uint64]uint64{}, cap: capacity}
	want := []int{8, 16, 32, 64, 100} // the grown arrays' entries, in turn
	type frozen struct {
		v    *View
		keys int // keys 1..keys were in it
	}
	var old []frozen
	for k := uint64(1); k <= capacity; k++ {
		before, v := m.entries, m.View()
		if err := m.Store(k, k*10); err != nil {
			t.Fatalf("Store(%d): %v", k, err)
		}
		md.m[k] = k * 10
		if grew := m.View() != v; grew != (k == uint64(before)+1) {
			t.Fatalf("Store(%d) with %d live in an array for %d: grew %v", k, k-1, before, grew)
		}
		if m.entries != before {
			old = append(old, frozen{v, int(k - 1)})
			if m.entries != want[0] {
				t.Fatalf("Store(%d): grew from %d to %d entries, want %d", k, before, m.entries, want[0])
			}
			want = want[1:]
			if m.entries < capacity && m.Bytes() >= m.MaxBytes() {
				t.Fatalf("Store(%d): %d bytes before the capacity, MaxBytes %d", k, m.Bytes(), m.MaxBytes())
			}
		}
		checkSame(t, m, md, []uint64{k + 1})
	}
	if len(want) != 0 || m.entries != capacity {
		t.Fatalf("full at %d entries, %d growths short", m.entries, len(want))
	}
	if len(m.View().slots) != len(full.View().slots) || m.Bytes() != m.MaxBytes() || m.MaxBytes() != full.Bytes() {
		t.Fatalf("grown to full: %d slots, Bytes %d, MaxBytes %d; made full-sized: %d slots, Bytes %d",
			len(m.View().slots), m.Bytes(), m.MaxBytes(), len(full.View().slots), full.Bytes())
	}
	if m.maxUsed != full.maxUsed || m.grows != 5 {
		t.Fatalf("grown to full: maxUsed %d (made full-sized: %d), %d growths (want 5)", m.maxUsed, full.maxUsed, m.grows)
	}
	if err := m.Store(capacity+1, 1); !errors.Is(err, ErrFull) {
		t.Fatalf("Store past the capacity = %v, want ErrFull", err)
	}
	if err := m.Store(7, 77); err != nil {
		t.Fatalf("update at capacity: %v", err)
	}
	for _, f := range old {
		for k := uint64(1); k <= capacity+1; k++ {
			got, ok := f.v.Lookup(k)
			var vals [1]uint64
			var oks [1]bool
			f.v.LookupBatch([]uint64{k}, vals[:], oks[:])
			if in := k <= uint64(f.keys); ok != in || oks[0] != in || (in && (got != k*10 || vals[0] != k*10)) {
				t.Fatalf("View of %d keys: key %d: Lookup (%d, %v), LookupBatch (%d, %v)", f.keys, k, got, ok, vals[0], oks[0])
			}
		}
	}
}

// TestGrowToFull checks that a map filled one key at a time from its
// smallest array ends in the array of a map made full-sized (the same
// slot count and rebuild budget), at the loads the datapath uses and at
// capacities a power of two away from the start and not: so a full table
// costs what it did before maps grew.
func TestGrowToFull(t *testing.T) {
	cases := []struct {
		capacity int
		load     Load
	}{
		{1 << 20, Load{Num: 1, Den: 2}}, // the default MAC table and fib: 4096×2^8
		{1_000_000, Load{Num: 1, Den: 2}},
		{1_000_000, defaultLoad}, // engine's Admitted
		{300_001, Load{Num: 3, Den: 5}},
		{4097, defaultLoad},
		{4096, defaultLoad}, // never grows
		{10, defaultLoad},
	}
	if testing.Short() {
		cases = cases[3:]
	}
	for _, tc := range cases {
		m := NewLoad(tc.capacity, tc.load, 9)
		for k := uint64(1); k <= uint64(tc.capacity); k++ {
			if err := m.Store(k*0x9e3779b97f4a7c15|1, k); err != nil {
				t.Fatalf("capacity %d: Store #%d: %v", tc.capacity, k, err)
			}
		}
		r := NewLoad(tc.capacity, tc.load, 9)
		r.Reserve(tc.capacity)
		n, want := len(m.View().slots), m.slotsFor(tc.capacity)
		if n != want || len(r.View().slots) != want || m.maxUsed != r.maxUsed || m.Bytes() != m.MaxBytes() {
			t.Errorf("capacity %d, load %d/%d: grown to %d slots (maxUsed %d, Bytes %d, MaxBytes %d), reserved %d (maxUsed %d); want %d",
				tc.capacity, tc.load.Num, tc.load.Den, n, m.maxUsed, m.Bytes(), m.MaxBytes(), len(r.View().slots), r.maxUsed, want)
		}
		if err := m.Store(1<<62, 1); !errors.Is(err, ErrFull) {
			t.Errorf("capacity %d: Store past it = %v, want ErrFull", tc.capacity, err)
		}
	}
}

// TestGrowDropsDeleted: a growth copies only the live entries, so a key
// deleted before it is absent from the new array and stored again in a
// fresh slot, while a View from before the growth still has it deleted;
// a key revived (rule 3) in an array at its entries grows the array first.
func TestGrowDropsDeleted(t *testing.T) {
	m := newMap(64, Load{Num: 1, Den: 2}, 5, 4)
	md := &model{m: map[uint64]uint64{}, cap: 64}
	store := func(k, v uint64) {
		t.Helper()
		if err, want := m.Store(k, v), md.store(k, v); err != want {
			t.Fatalf("Store(%d) = %v, model %v", k, err, want)
		}
		checkSame(t, m, md, []uint64{1, 2, 3, 4, 5, 6, 7})
	}
	del := func(k uint64) {
		t.Helper()
		if got, want := m.Delete(k), md.delete(k); got != want {
			t.Fatalf("Delete(%d) = %v, model %v", k, got, want)
		}
		checkSame(t, m, md, []uint64{1, 2, 3, 4, 5, 6, 7})
	}
	for k := uint64(1); k <= 4; k++ {
		store(k, k)
	}
	del(2)
	store(5, 5) // 4 live again, in the array for 4: no growth
	if m.entries != 4 || m.used != 5 {
		t.Fatalf("after 5 keys, one deleted: sized for %d, used %d; want 4, 5", m.entries, m.used)
	}
	old := m.View()
	store(6, 6) // the fifth live entry: grows, dropping 2
	if m.entries != 8 || m.used != 5 || m.grows != 1 {
		t.Fatalf("after growing: sized for %d, used %d, %d growths; want 8, 5, 1", m.entries, m.used, m.grows)
	}
	if _, found := m.View().find(2); found {
		t.Fatal("deleted key 2 copied into the grown array")
	}
	store(2, 22) // a fresh slot in the new array
	if v, ok := old.Lookup(2); ok || v != 0 {
		t.Fatalf("old View: Lookup(2) = %d, %v; want deleted", v, ok)
	}
	if v, ok := old.Lookup(6); ok || v != 0 {
		t.Fatalf("old View: Lookup(6) = %d, %v; stored after the growth", v, ok)
	}
	// Fill the array for 8, delete one, then revive it: live reaches 8
	// without a new key; the next key grows. Then revive a key deleted
	// in a full array: it must grow first, as a new key would.
	for k := uint64(7); k <= 8; k++ {
		store(k, k)
	}
	del(8)
	store(8, 88) // revived in place: 8 live
	if m.entries != 8 || m.grows != 1 {
		t.Fatalf("revive to 8 live: sized for %d, %d growths; want 8, 1", m.entries, m.grows)
	}
	del(3)
	store(10, 10) // a new key: 8 live
	del(10)
	store(3, 33) // 3 is deleted in the array: revived, 8 live
	if m.entries != 8 {
		t.Fatalf("sized for %d; want 8", m.entries)
	}
	del(4)
	store(11, 11) // 8 live
	store(4, 44)  // deleted 4 would be the ninth live entry: grows first
	if m.entries != 16 || m.grows != 2 {
		t.Fatalf("revive past the array's entries: sized for %d, %d growths; want 16, 2", m.entries, m.grows)
	}
}

// TestReserve: Reserve grows to the doubling series' size that holds n (the
// capacity at most) in one rebuild, never shrinks, keeps the entries, and
// the Stores that follow up to n do not grow again; past the capacity of a
// map sized for it, it does nothing.
func TestReserve(t *testing.T) {
	m := newMap(1000, defaultLoad, 2, 8)
	md := &model{m: map[uint64]uint64{}, cap: 1000}
	for k := uint64(1); k <= 5; k++ {
		_ = m.Store(k, k)
		md.m[k] = k
	}
	m.Reserve(100)
	if m.entries != 128 || m.grows != 1 {
		t.Fatalf("Reserve(100) from 8: sized for %d, %d growths; want 128, 1", m.entries, m.grows)
	}
	checkSame(t, m, md, nil)
	m.Reserve(20) // no shrink
	m.Reserve(128)
	if m.entries != 128 || m.rebuilds != 1 {
		t.Fatalf("Reserve of less: sized for %d, %d rebuilds; want 128, 1", m.entries, m.rebuilds)
	}
	for k := uint64(6); k <= 128; k++ {
		_ = m.Store(k, k)
		md.m[k] = k
	}
	if m.rebuilds != 1 {
		t.Fatalf("Stores within the reserve rebuilt %d times", m.rebuilds-1)
	}
	m.Reserve(1 << 30) // the capacity at most
	if m.entries != 1000 || len(m.View().slots) != m.slotsFor(1000) || m.rebuilds != 2 {
		t.Fatalf("Reserve past the capacity: sized for %d, %d rebuilds; want 1000, 2", m.entries, m.rebuilds)
	}
	// Sized for the capacity, a Reserve of more has nothing to do: n is
	// clamped to the capacity before it is compared with the entries the
	// array is sized for. (Unclamped, every such Reserve rebuilt the
	// full-sized array into another, copying every entry: what
	// engine.Control.Reserve asks of a table near its capacity.)
	v := m.View()
	m.Reserve(1001)
	m.Reserve(1 << 30)
	if m.rebuilds != 2 || m.View() != v {
		t.Fatalf("Reserve past the capacity of a map sized for it: %d rebuilds, want 2", m.rebuilds)
	}
	checkSame(t, m, md, []uint64{129})
}
