package lfmap

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// model is the naive reference: a Go map plus the capacity rule.
type model struct {
	m   map[uint64]uint64
	cap int
}

func (md *model) store(k, v uint64) error {
	if k == keyEmpty || k == keyReserved {
		return ErrBadKey
	}
	if v == valDeleted {
		return ErrBadValue
	}
	if _, ok := md.m[k]; !ok && len(md.m) >= md.cap {
		return ErrFull
	}
	md.m[k] = v
	return nil
}

func (md *model) delete(k uint64) bool {
	_, ok := md.m[k]
	delete(md.m, k)
	return ok
}

// checkSame compares every observable of m against md.
func checkSame(t testing.TB, m *Map, md *model, probe []uint64) {
	t.Helper()
	if m.Len() != len(md.m) {
		t.Fatalf("Len = %d, model %d", m.Len(), len(md.m))
	}
	for k, want := range md.m {
		if got, ok := m.Lookup(k); !ok || got != want {
			t.Fatalf("Lookup(%#x) = %#x, %v; want %#x, true", k, got, ok, want)
		}
	}
	for _, k := range probe {
		want, wok := md.m[k]
		if got, ok := m.Lookup(k); ok != wok || got != want {
			t.Fatalf("Lookup(%#x) = %#x, %v; want %#x, %v", k, got, ok, want, wok)
		}
	}
	seen := make(map[uint64]bool, len(md.m))
	m.Range(func(k, v uint64) bool {
		if seen[k] {
			t.Fatalf("Range visited %#x twice", k)
		}
		seen[k] = true
		if want, ok := md.m[k]; !ok || want != v {
			t.Fatalf("Range gave %#x=%#x; model %#x, %v", k, v, want, ok)
		}
		return true
	})
	if len(seen) != len(md.m) {
		t.Fatalf("Range visited %d entries, model has %d", len(seen), len(md.m))
	}
	// Invariants: at least one empty slot, used counts live+deleted keys,
	// no key in two slots (rule 3).
	var live, deleted, empty int
	keys := make(map[uint64]bool, m.used)
	for _, s := range m.View().slots {
		switch {
		case s.key == keyEmpty:
			empty++
			continue
		case s.val == valDeleted:
			deleted++
		default:
			live++
		}
		if keys[s.key] {
			t.Fatalf("key %#x in two slots", s.key)
		}
		keys[s.key] = true
	}
	if empty == 0 || live != m.Len() || live+deleted != m.used || m.used > m.maxUsed {
		t.Fatalf("slots: live %d deleted %d empty %d; Len %d used %d maxUsed %d",
			live, deleted, empty, m.Len(), m.used, m.maxUsed)
	}
	// The array is sized for its entries, which hold the live ones and
	// are at most the capacity.
	if n := len(m.View().slots); live > m.entries || m.entries > m.capacity || n != m.slotsFor(m.entries) {
		t.Fatalf("array: %d slots sized for %d entries (%d slots), %d live, capacity %d",
			n, m.entries, m.slotsFor(m.entries), live, m.capacity)
	}
}

func TestBasic(t *testing.T) {
	m := New(4, 1)
	if m.Cap() != 4 || m.Len() != 0 || m.Bytes() != len(m.View().slots)*16 {
		t.Fatalf("Cap %d Len %d Bytes %d", m.Cap(), m.Len(), m.Bytes())
	}
	for _, k := range []uint64{0, ^uint64(0)} {
		if err := m.Store(k, 1); !errors.Is(err, ErrBadKey) {
			t.Fatalf("Store(%#x) = %v, want ErrBadKey", k, err)
		}
		if _, ok := m.Lookup(k); ok {
			t.Fatalf("Lookup(%#x) found a reserved key", k)
		}
		if m.Delete(k) {
			t.Fatalf("Delete(%#x) = true", k)
		}
	}
	for k := uint64(1); k <= 4; k++ {
		if err := m.Store(k, k*10); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Store(5, 50); !errors.Is(err, ErrFull) {
		t.Fatalf("Store past capacity = %v, want ErrFull", err)
	}
	if err := m.Store(4, 44); err != nil { // update at capacity is fine
		t.Fatalf("update at capacity: %v", err)
	}
	if v, ok := m.Lookup(4); !ok || v != 44 {
		t.Fatalf("Lookup(4) = %d, %v", v, ok)
	}
	if !m.Delete(2) || m.Delete(2) {
		t.Fatal("Delete(2) twice: want true then false")
	}
	if err := m.Store(5, 50); err != nil {
		t.Fatalf("Store after Delete: %v", err)
	}
	checkSame(t, m, &model{m: map[uint64]uint64{1: 10, 3: 30, 4: 44, 5: 50}, cap: 4}, []uint64{2, 6})
}

func TestNewSmall(t *testing.T) {
	for _, c := range []int{-1, 0, 1, 2, 3, 7} {
		m := New(c, 0)
		if m.Cap() < 1 || len(m.View().slots) < m.Cap()+2 {
			t.Fatalf("New(%d): Cap %d slots %d", c, m.Cap(), len(m.View().slots))
		}
	}
	if n := len(New(1000, 0).View().slots); n != 1252 {
		t.Fatalf("New(1000) has %d slots, want 1252 (1250 rounded to a line)", n)
	}
}

// TestNewLoad checks NewLoad's slot counts once grown to the capacity
// (capacity×Den/Num rounded up to a line: MaxBytes, and the array
// Reserve(capacity) grows into), that a new map starts sized for at most
// startEntries, the rebuild threshold (strictly between the entries the
// array is sized for and its slot count) and that it rejects loads outside
// (0, 1).
func TestNewLoad(t *testing.T) {
	for _, tc := range []struct {
		capacity int
		load     Load
		slots    int
	}{
		{1000, defaultLoad, 1252}, // as New
		{1000, Load{Num: 1, Den: 2}, 2000},
		{1000, Load{Num: 3, Den: 5}, 1668},           // 1666.7 rounded up to a slot, then a line
		{1000, Load{Num: 2, Den: 3}, 1500},           // 1500: already whole lines
		{1_000_000, Load{Num: 1, Den: 2}, 2_000_000}, // 32 B per entry
		{3, Load{Num: 1, Den: 2}, 8},                 // 6 slots, rounded to two lines
		{1, Load{Num: 99, Den: 100}, 4},              // at least capacity+2
		{1000, Load{Num: 999, Den: 1000}, 1004},      // 1001 rounded to a line
		{1_000_000, Load{Num: 4, Den: 5}, 1_250_000}, // 20 B per entry
	} {
		m := NewLoad(tc.capacity, tc.load, 1)
		if m.MaxBytes() != 16*tc.slots || m.Cap() != tc.capacity {
			t.Errorf("NewLoad(%d, %d/%d): MaxBytes %d, Cap %d; want %d slots",
				tc.capacity, tc.load.Num, tc.load.Den, m.MaxBytes(), m.Cap(), tc.slots)
		}
		if e := min(tc.capacity, startEntries); m.entries != e || len(m.View().slots) != m.slotsFor(e) {
			t.Errorf("NewLoad(%d, %d/%d): starts with %d slots for %d entries, want %d for %d",
				tc.capacity, tc.load.Num, tc.load.Den, len(m.View().slots), m.entries, m.slotsFor(e), e)
		}
		m.Reserve(tc.capacity)
		n := len(m.View().slots)
		if n != tc.slots || m.Bytes() != 16*n || m.entries != tc.capacity {
			t.Errorf("NewLoad(%d, %d/%d) reserved: %d slots, Bytes %d, sized for %d; want %d slots",
				tc.capacity, tc.load.Num, tc.load.Den, n, m.Bytes(), m.entries, tc.slots)
		}
		if m.maxUsed <= m.capacity || m.maxUsed >= n {
			t.Errorf("NewLoad(%d, %d/%d): maxUsed %d not in (%d, %d)",
				tc.capacity, tc.load.Num, tc.load.Den, m.maxUsed, m.capacity, n)
		}
	}
	for _, bad := range []Load{{}, {Num: 0, Den: 5}, {Num: -1, Den: 2}, {Num: 1, Den: 1}, {Num: 5, Den: 4}, {Num: 1, Den: -2}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewLoad(10, %d/%d) did not panic", bad.Num, bad.Den)
				}
			}()
			NewLoad(10, bad, 1)
		}()
	}
}

// diffCase is a TestDifferential case: ops random operations on keys
// distinct keys in a map of capacity at load.
type diffCase struct {
	capacity, keys, ops int
	load                Load
}

// TestDifferential runs random insert/update/delete sequences against a Go
// map, on maps made full-sized and on maps that start sized for 1 or 3
// entries and grow. A key space a few times the slot count, with many
// deletes, forces rebuilds: a key that comes back takes its own slot again
// (rule 3), so only keys new to the array use slots up.
func TestDifferential(t *testing.T) {
	for _, tc := range []diffCase{
		{1, 8, 2000, defaultLoad},
		{8, 48, 20000, defaultLoad},
		{100, 600, 50000, defaultLoad},
		{1000, 6000, 200000, defaultLoad},
		{1000, 100000, 100000, defaultLoad}, // mostly ErrFull and misses
		{1, 8, 2000, Load{Num: 1, Den: 2}},
		{8, 48, 20000, Load{Num: 1, Den: 2}},
		{100, 600, 50000, Load{Num: 1, Den: 2}},
		{1000, 6000, 200000, Load{Num: 1, Den: 2}},
		{1000, 6000, 200000, Load{Num: 3, Den: 5}},
		{100, 150, 50000, defaultLoad}, // a key space just above the slots
	} {
		for _, start := range []int{tc.capacity, 1, 3} {
			testDifferential(t, tc, start)
		}
	}
}

// testDifferential runs tc on a map whose first array is sized for start
// entries.
func testDifferential(t *testing.T, tc diffCase, start int) {
	r := rand.New(rand.NewPCG(uint64(tc.capacity), uint64(tc.keys)))
	m := newMap(tc.capacity, tc.load, r.Uint64(), start)
	md := &model{m: map[uint64]uint64{}, cap: tc.capacity}
	key := func() uint64 {
		switch r.IntN(64) {
		case 0:
			return 0
		case 1:
			return ^uint64(0)
		}
		return uint64(r.IntN(tc.keys))*0x9e3779b97f4a7c15 | 1
	}
	probe := []uint64{key(), key(), key(), key()}
	for op := range tc.ops {
		k := key()
		switch r.IntN(3) {
		case 0, 1:
			v := r.Uint64()
			if err, want := m.Store(k, v), md.store(k, v); err != want {
				t.Fatalf("op %d Store(%#x) = %v, model %v", op, k, err, want)
			}
		case 2:
			if got, want := m.Delete(k), md.delete(k); got != want {
				t.Fatalf("op %d Delete(%#x) = %v, model %v", op, k, got, want)
			}
		}
		if op%97 == 0 {
			checkSame(t, m, md, probe)
		}
	}
	checkSame(t, m, md, probe)
	t.Logf("capacity %d, load %d/%d, start %d: %d rebuilds, %d growths", tc.capacity, tc.load.Num, tc.load.Den, start, m.rebuilds, m.grows)
	if tc.keys >= 6*tc.capacity && tc.keys <= 10*tc.capacity && m.rebuilds == 0 {
		t.Errorf("capacity %d: no rebuild happened", tc.capacity)
	}
}

// TestRebuildKeepsOldView checks the RCU property: a View taken before a
// rebuild still answers from its frozen array.
func TestRebuildKeepsOldView(t *testing.T) {
	m := New(10, 7)
	for k := uint64(1); k <= 10; k++ {
		_ = m.Store(k, k)
	}
	old := m.View()
	for k := uint64(11); m.rebuilds == 0; k++ {
		m.Delete(k - 10)
		if err := m.Store(k, k); err != nil {
			t.Fatal(err)
		}
	}
	if m.View() == old {
		t.Fatal("rebuild did not publish a new View")
	}
	for k := uint64(1); k <= 10; k++ {
		// Deleted keys were marked deleted in old before the swap, so old misses
		// them; keys still live must be found with their value.
		if v, ok := old.Lookup(k); ok && v != k {
			t.Fatalf("old view: Lookup(%d) = %d", k, v)
		}
	}
}

// TestConcurrent churns the map from one writer while readers check that a
// value seen for a key is one that was stored for that key: values encode
// their key in the high 32 bits.
func TestConcurrent(t *testing.T) {
	const (
		capacity = 512
		keys     = 700
	)
	m := New(capacity, 99)
	var stop atomic.Bool
	var lookups, hits atomic.Int64
	var wg sync.WaitGroup
	readers := max(2, runtime.GOMAXPROCS(0))
	for r := range readers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			var n, h int64
			for !stop.Load() {
				v := m.View() // once per "batch"
				for range 64 {
					k := uint64(rng.IntN(keys)) + 1
					if val, ok := v.Lookup(k); ok {
						h++
						if val>>32 != k {
							t.Errorf("Lookup(%d) = %#x: value of key %d", k, val, val>>32)
							stop.Store(true)
						}
					}
					n++
				}
				var bk, bv [64]uint64
				var bok [64]bool
				for i := range bk {
					bk[i] = uint64(rng.IntN(keys)) + 1
				}
				v.LookupBatch(bk[:], bv[:], bok[:])
				for i, k := range bk {
					if bok[i] {
						h++
						if bv[i]>>32 != k {
							t.Errorf("LookupBatch(%d) = %#x: value of key %d", k, bv[i], bv[i]>>32)
							stop.Store(true)
						}
					}
					n++
				}
			}
			lookups.Add(n)
			hits.Add(h)
		})
	}
	rng := rand.New(rand.NewPCG(3, 4))
	deadline := time.Now().Add(time.Second)
	if testing.Short() {
		deadline = time.Now().Add(200 * time.Millisecond)
	}
	var seq uint64
	for time.Now().Before(deadline) && !stop.Load() {
		for range 1000 {
			k := uint64(rng.IntN(keys)) + 1
			if rng.IntN(3) == 0 {
				m.Delete(k)
				continue
			}
			seq++
			if err := m.Store(k, k<<32|seq&0xffffffff); err != nil && !errors.Is(err, ErrFull) {
				t.Fatal(err)
			}
		}
		runtime.Gosched()
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d writes, %d rebuilds, %d lookups, %d hits", seq, m.rebuilds, lookups.Load(), hits.Load())
	if m.rebuilds == 0 {
		t.Error("no rebuild during the concurrent test")
	}
}

func TestLookupAllocs(t *testing.T) {
	m := New(1000, 5)
	for k := uint64(1); k <= 1000; k++ {
		_ = m.Store(k, k)
	}
	v := m.View()
	var sink uint64
	allocs := testing.AllocsPerRun(1000, func() {
		for k := uint64(1); k <= 1010; k++ {
			x, _ := v.Lookup(k)
			y, _ := m.Lookup(k)
			sink += x + y
		}
	})
	if allocs != 0 {
		t.Fatalf("Lookup allocates %.1f times per run", allocs)
	}
	allocs = testing.AllocsPerRun(1000, func() {
		_ = m.Store(7, 8) // update in place
		_ = m.Store(2000, 1)
		m.Delete(2000)
	})
	if allocs > 0.1 { // a rebuild (rare) allocates; updates do not
		t.Fatalf("Store/Delete allocates %.2f times per run", allocs)
	}
	_ = sink
}

// FuzzOps decodes the input as an operation sequence on a small map and checks
// it against the model after every operation.
func FuzzOps(f *testing.F) {
	f.Add(uint8(3), []byte{0, 1, 2, 1, 1, 0, 2, 1, 0, 2, 3, 9})
	f.Add(uint8(0), []byte{0, 0, 0, 0, 255, 0, 1, 0, 0})
	f.Add(uint8(8), []byte("\x00\x01\x01\x00\x02\x02\x01\x01\x00\x00\x01\x05\x01\x02\x00\x00\x03\x03\x01\x03\x00"))
	f.Fuzz(func(t *testing.T, capacity uint8, ops []byte) {
		// Sized for 1..8 entries at first: most maps grow.
		m := newMap(int(capacity%32), defaultLoad, uint64(capacity), 1+int(capacity/32))
		md := &model{m: map[uint64]uint64{}, cap: m.Cap()}
		for i := 0; i+2 < len(ops); i += 3 {
			op, kb, vb := ops[i], ops[i+1], ops[i+2]
			var k uint64
			switch kb {
			case 0:
				k = 0
			case 255:
				k = ^uint64(0)
			default:
				k = uint64(kb%48) << 40 // distinct keys, arbitrary home slots
			}
			v := uint64(vb)
			if op%3 != 2 {
				if err, want := m.Store(k, v), md.store(k, v); err != want {
					t.Fatalf("Store(%#x) = %v, model %v", k, err, want)
				}
			} else if got, want := m.Delete(k), md.delete(k); got != want {
				t.Fatalf("Delete(%#x) = %v, model %v", k, got, want)
			}
			checkSame(t, m, md, []uint64{k})
		}
	})
}

func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{1 << 10, 1 << 20} {
		b.Run(itoa(n), func(b *testing.B) {
			m := New(n, 1)
			keys := make([]uint64, n)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range keys {
				keys[i] = r.Uint64() | 1
				_ = m.Store(keys[i], uint64(i))
			}
			b.ReportAllocs()
			v := m.View()
			var sink uint64
			j := 0
			for b.Loop() {
				x, _ := v.Lookup(keys[j])
				sink += x
				if j++; j == n {
					j = 0
				}
			}
			_ = sink
		})
	}
}

func itoa(n int) string {
	if n >= 1<<20 {
		return "1M"
	}
	return "1K"
}

// TestHash checks the hash's properties: the same seed gives the same hash
// (and the same home lines), other seeds other ones; every key bit flips
// every hash bit about half the time (avalanche); and structured keys —
// MAC-table keys of consecutive MACs, keys that differ only in their high
// or only in their low bits — spread over the lines like random keys.
func TestHash(t *testing.T) {
	a, b, c := newView(1<<12, 42), newView(1<<12, 42), newView(1<<12, 43)
	if a.k0 != b.k0 || a.k1 != b.k1 || a.k0 == a.k1 || a.k0 == c.k0 || a.k1 == c.k1 {
		t.Fatalf("hash keys: seed 42 %#x %#x / %#x %#x, seed 43 %#x %#x", a.k0, a.k1, b.k0, b.k1, c.k0, c.k1)
	}
	same := 0
	for key := uint64(1); key <= 1000; key++ {
		if a.home(key) != b.home(key) {
			t.Fatalf("home(%d) differs between two views of seed 42", key)
		}
		if a.home(key) == c.home(key) {
			same++
		}
	}
	if same > 10 { // 1000 keys over 1024 lines: ~1 by chance
		t.Errorf("%d of 1000 keys have the same home under seeds 42 and 43", same)
	}

	// Avalanche: for each of the 64 key bits, the probability that hash
	// bit j flips, over random keys, within 0.5 ± 0.06 (3000 trials: the
	// standard deviation is 0.009).
	r := rand.New(rand.NewPCG(8, 9))
	const trials = 3000
	for seed := range uint64(3) {
		v := newView(4, seed)
		var flips [64][64]int
		for range trials {
			key := r.Uint64()
			h := hash(key, v.k0, v.k1)
			for i := range 64 {
				d := h ^ hash(key^1<<i, v.k0, v.k1)
				for j := range 64 {
					flips[i][j] += int(d >> j & 1)
				}
			}
		}
		for i := range 64 {
			for j := range 64 {
				if p := float64(flips[i][j]) / trials; p < 0.44 || p > 0.56 {
					t.Fatalf("seed %d: key bit %d flips hash bit %d with p = %.3f", seed, i, j, p)
				}
			}
		}
	}

	// Spread: n keys into n/4 lines (the home lines of a table at load 1,
	// i.e. 4 keys per line on average); the number of keys per line should
	// be Poisson(4): variance ~4, few lines above 12.
	const nlines = 1 << 14
	families := map[string]func(i uint64) uint64{
		"consecutive MACs": func(i uint64) uint64 { return (0x021000000000 | i) << 16 },
		"MACs × VLANs":     func(i uint64) uint64 { return (0x021000000000|i>>8)<<16 | (i&0xff)<<4 | 3 },
		"high bits":        func(i uint64) uint64 { return i<<48 | 1 },
		"low bits":         func(i uint64) uint64 { return i + 1 },
		"strided":          func(i uint64) uint64 { return (i + 1) * 4096 },
	}
	for name, key := range families {
		v := newView(4*nlines, 7)
		var count [nlines]int
		for i := range uint64(4 * nlines) {
			count[v.home(key(i))/lineSlots]++
		}
		var sum2 float64
		over := 0
		for _, c := range count {
			sum2 += float64((c - 4) * (c - 4))
			if c > 12 {
				over++
			}
		}
		if variance := sum2 / nlines; variance < 3 || variance > 5 || over > 10 {
			t.Errorf("%s: keys per line variance %.2f (Poisson: 4), %d lines over 12", name, variance, over)
		}
	}
}

// TestLookupBatch checks the batched lookup against Lookup, across chunk
// boundaries, with absent and zero (skipped) keys mixed in.
func TestLookupBatch(t *testing.T) {
	m := New(5000, 99)
	for k := uint64(1); k <= 4000; k++ {
		if err := m.Store(k*7919, k); err != nil {
			t.Fatal(err)
		}
	}
	for k := uint64(1); k <= 4000; k += 3 {
		m.Delete(k * 7919)
	}
	keys := make([]uint64, 0, 3*MaxBatch+17)
	for i := range cap(keys) {
		switch i % 5 {
		case 0:
			keys = append(keys, 0)
		case 1:
			keys = append(keys, uint64(i)*7919+1) // never stored
		default:
			keys = append(keys, uint64(i%4000+1)*7919)
		}
	}
	vals := make([]uint64, len(keys))
	ok := make([]bool, len(keys))
	v := m.View()
	v.LookupBatch(keys, vals, ok)
	for i, k := range keys {
		want, wok := v.Lookup(k)
		if ok[i] != wok || vals[i] != want {
			t.Errorf("key %d: batch (%d, %v), single (%d, %v)", k, vals[i], ok[i], want, wok)
		}
	}
	if a := testing.AllocsPerRun(10, func() { v.LookupBatch(keys, vals, ok) }); a != 0 {
		t.Errorf("LookupBatch allocates %.0f times", a)
	}
}

// TestLookupBatchSmall checks the batched lookup against Lookup on small,
// full tables with deleted entries, where probe sequences are long and wrap
// around the end of the array.
func TestLookupBatchSmall(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for capacity := 1; capacity <= 64; capacity++ {
		m := New(capacity, r.Uint64())
		var all []uint64
		for range 3 * capacity {
			k := r.Uint64() >> r.IntN(64)
			all = append(all, k)
			if m.Store(k, r.Uint64()) != nil || r.IntN(3) == 0 {
				m.Delete(k)
			}
		}
		all = append(all, 0, ^uint64(0))
		v := m.View()
		vals := make([]uint64, len(all))
		ok := make([]bool, len(all))
		v.LookupBatch(all, vals, ok)
		for i, k := range all {
			want, wok := v.Lookup(k)
			if ok[i] != wok || vals[i] != want {
				t.Fatalf("cap %d key %#x: batch (%#x, %v), single (%#x, %v)", capacity, k, vals[i], ok[i], want, wok)
			}
		}
	}
}

// TestLookupChunkImpls checks lookupChunk (the assembly one on amd64)
// against lookupChunkGo and Lookup on random tables: present, deleted and
// never-stored keys, the reserved keys, chunks of every length, and keys
// whose home is the last line, stored until their probes wrap to the first.
func TestLookupChunkImpls(t *testing.T) {
	forEachChunkImpl(t, testLookupChunkImpls)
}

func testLookupChunkImpls(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, capacity := range []int{1, 3, 7, 40, 100, 1000, 20000} {
		for round := range 6 {
			// Rounds 4 and 5 at the MAC table's load (0.5).
			m := New(capacity, r.Uint64())
			if round >= 4 {
				m = NewLoad(capacity, Load{1, 2}, r.Uint64())
			}
			v := m.View()
			var keys []uint64
			// Keys homed in the last line, enough to spill into the
			// first line (and, on small tables, further).
			last := uint64(len(v.lines) - 1)
			for n := 0; n < 2*lineSlots+2; {
				k := r.Uint64()
				if k+1 < 2 || v.home(k)/lineSlots != last {
					continue
				}
				keys = append(keys, k)
				if n < 2*lineSlots {
					_ = m.Store(k, r.Uint64()) // ErrFull leaves it absent
				} // else absent: its probe must still wrap and end
				n++
			}
			fill := capacity
			if round%2 == 1 {
				fill = capacity * 3 / 4
			}
			for m.Len() < fill {
				k := r.Uint64() >> r.IntN(64)
				if k+1 < 2 {
					continue
				}
				keys = append(keys, k)
				if m.Store(k, r.Uint64()) == nil && r.IntN(4) == 0 {
					m.Delete(k) // present, deleted
				}
			}
			for range len(keys) / 4 {
				keys = append(keys, r.Uint64()) // most likely absent
			}
			keys = append(keys, 0, ^uint64(0), 0, ^uint64(0))
			r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
			v = m.View() // after any rebuild
			vals := make([]uint64, MaxBatch)
			ok := make([]bool, MaxBatch)
			gvals := make([]uint64, MaxBatch)
			gok := make([]bool, MaxBatch)
			for rest := keys; len(rest) > 0; {
				n := min(len(rest), 1+r.IntN(MaxBatch))
				chunk := rest[:n]
				rest = rest[n:]
				for i := range vals {
					vals[i], ok[i], gvals[i], gok[i] = ^uint64(0), true, ^uint64(0), true
				}
				v.lookupChunk(chunk, vals, ok)
				v.lookupChunkGo(chunk, gvals, gok)
				for i, k := range chunk {
					want, wok := v.Lookup(k)
					if ok[i] != wok || vals[i] != want || gok[i] != wok || gvals[i] != want {
						t.Fatalf("cap %d key %#x: lookupChunk (%#x, %v), lookupChunkGo (%#x, %v), Lookup (%#x, %v)",
							capacity, k, vals[i], ok[i], gvals[i], gok[i], want, wok)
					}
				}
				for i := n; i < MaxBatch; i++ {
					if vals[i] != ^uint64(0) || !ok[i] {
						t.Fatalf("cap %d: lookupChunk of %d keys wrote result %d", capacity, n, i)
					}
				}
			}
		}
	}
}

// BenchmarkLookupChunkAB compares, in one process, lookupChunk (the
// assembly one on amd64, the gathering one where the CPU has AVX-512),
// lookupChunk with useGather off (on amd64 the scalar assembly),
// lookupChunkGo and a memory floor (random 16-byte reads of the same slot
// array, 64 per call), on a table filled to capacity with random keys,
// looked up in a random order, at the default load (0.8) and the MAC
// table's (0.5, "/load0.5"). Each iteration times one block of 4096 keys
// of each, in turn on distinct keys (a block leaves its lines in L2), so
// that on a shared, noisy machine they see the same conditions; ns/op is
// meaningless, the metrics are each one's median ns per key over the
// blocks.
func BenchmarkLookupChunkAB(b *testing.B) {
	for _, c := range []struct {
		n    int
		load Load
		name string
	}{
		{1_000, defaultLoad, "1000"}, {100_000, defaultLoad, "100000"}, {1_000_000, defaultLoad, "1000000"},
		{1_000, Load{1, 2}, "1000/load0.5"}, {1_000_000, Load{1, 2}, "1000000/load0.5"},
	} {
		n := c.n
		b.Run(c.name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(uint64(n), 7))
			m := NewLoad(n, c.load, r.Uint64())
			keys := make([]uint64, 0, n)
			for len(keys) < n {
				if k := r.Uint64(); m.Store(k, k^1) == nil {
					keys = append(keys, k)
				}
			}
			r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
			v := m.View()
			idx := make([]uint32, n)
			for i := range idx {
				idx[i] = uint32(r.IntN(len(v.slots)))
			}
			const block = 64 * MaxBatch
			var vals [MaxBatch]uint64
			var ok [MaxBatch]bool
			var times [4][]float64
			defer func(old bool) { useGather = old }(useGather)
			j := 0
			for b.Loop() {
				for impl := range times {
					start := time.Now()
					for i := j + impl*block; i < j+(impl+1)*block; i += MaxBatch {
						i := i % (n - MaxBatch)
						switch impl {
						case 0:
							floorChunk(v.slots, idx[i:i+MaxBatch], vals[:])
						case 1:
							v.lookupChunk(keys[i:i+MaxBatch], vals[:], ok[:])
						case 2:
							v.lookupChunkGo(keys[i:i+MaxBatch], vals[:], ok[:])
						case 3:
							useGather = false
							v.lookupChunk(keys[i:i+MaxBatch], vals[:], ok[:])
							useGather = hasGather
						}
					}
					times[impl] = append(times[impl], float64(time.Since(start).Nanoseconds())/block)
				}
				j = (j + len(times)*block) % n
			}
			for impl, name := range []string{"floor", "chunk", "chunkGo", "chunkScalar"} {
				slices.Sort(times[impl])
				b.ReportMetric(times[impl][len(times[impl])/2], name+"-ns/key")
			}
		})
	}
}

// floorChunk reads the slot at each index of idx: independent loads.
//
//go:noinline
func floorChunk(s []slot, idx []uint32, vals []uint64) {
	for i, k := range idx {
		vals[i] = s[k].key ^ s[k].val
	}
}

// TestChurnKeepsSlots: keys deleted and stored again (a subscriber that
// unbinds and binds again) take their own slots back (rule 3): the
// probe sequences do not grow, nothing is rebuilt, and a deleted key is
// absent to Lookup, LookupBatch and Range while its slot holds it. With
// the tombstones this replaced, used grew by len(keys) a round.
func TestChurnKeepsSlots(t *testing.T) {
	m := NewLoad(1<<16, Load{1, 2}, 7)
	keys := make([]uint64, 4000)
	for i := range keys {
		keys[i] = uint64(i)*0x9e3779b97f4a7c15 | 1
		if err := m.Store(keys[i], uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	slotOf := func(k uint64) uint64 {
		i, found := m.View().find(k)
		if !found {
			t.Fatalf("key %#x has no slot", k)
		}
		return i
	}
	first := make([]uint64, len(keys))
	for i, k := range keys {
		first[i] = slotOf(k)
	}
	vals := make([]uint64, len(keys))
	ok := make([]bool, len(keys))
	for round := range 100 {
		for i, k := range keys {
			if i%2 == round%2 && !m.Delete(k) {
				t.Fatalf("round %d: Delete(%#x) = false", round, k)
			}
		}
		if m.Delete(keys[round%2]) {
			t.Fatalf("round %d: a deleted key deleted again", round)
		}
		m.View().LookupBatch(keys, vals, ok)
		n := 0
		m.Range(func(uint64, uint64) bool { n++; return true })
		for i, k := range keys {
			v, found := m.Lookup(k)
			want := i%2 != round%2
			if found != want || ok[i] != want || (want && (v != uint64(i) || vals[i] != v)) || (!want && (v != 0 || vals[i] != 0)) {
				t.Fatalf("round %d key %d: Lookup (%d, %v), batch (%d, %v), want present %v", round, i, v, found, vals[i], ok[i], want)
			}
		}
		if n != len(keys)/2 || m.Len() != len(keys)/2 {
			t.Fatalf("round %d: Range %d, Len %d, want %d", round, n, m.Len(), len(keys)/2)
		}
		for i, k := range keys {
			if i%2 == round%2 {
				if err := m.Store(k, uint64(i)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if m.used != len(keys) || m.rebuilds != 0 {
		t.Fatalf("used %d rebuilds %d after the churn, want %d, 0", m.used, m.rebuilds, len(keys))
	}
	for i, k := range keys {
		if s := slotOf(k); s != first[i] {
			t.Fatalf("key %d moved from slot %d to %d", i, first[i], s)
		}
	}
	if err := m.Store(5, valDeleted); !errors.Is(err, ErrBadValue) {
		t.Fatalf("Store of the deleted value: %v, want ErrBadValue", err)
	}
}
