package oatable

import (
	"math/rand/v2"
	"testing"
)

// TestAgainstMap: random puts, deletes and gets on small key ranges (dense
// clusters that wrap around the end of the slice) agree with a Go map,
// and so do Len, Range and the load kept.
func TestAgainstMap(t *testing.T) {
	for _, keys := range []uint64{4, 40, 400, 4000} {
		for _, hash := range []func(uint64) uint64{Mix64, func(k uint64) uint64 { return Mix64(k % 7) }} {
			tb := New[uint64, int](hash)
			ref := map[uint64]int{}
			rng := rand.New(rand.NewPCG(keys, 1))
			for op := range 200_000 {
				k := rng.Uint64N(keys)
				switch rng.IntN(3) {
				case 0:
					old, had := tb.Put(k, op)
					rold, rhad := ref[k]
					if had != rhad || old != rold {
						t.Fatalf("put %d: %d %v, want %d %v", k, old, had, rold, rhad)
					}
					ref[k] = op
				case 1:
					old, had := tb.Delete(k)
					rold, rhad := ref[k]
					if had != rhad || old != rold {
						t.Fatalf("delete %d: %d %v, want %d %v", k, old, had, rold, rhad)
					}
					delete(ref, k)
				default:
					v, ok := tb.Get(k)
					rv, rok := ref[k]
					if ok != rok || v != rv {
						t.Fatalf("get %d: %d %v, want %d %v", k, v, ok, rv, rok)
					}
					if p := tb.Ptr(k); (p != nil) != rok || (p != nil && *p != rv) {
						t.Fatalf("ptr %d: %v, want %d %v", k, p, rv, rok)
					}
				}
				if tb.Len() != len(ref) {
					t.Fatalf("len %d, want %d", tb.Len(), len(ref))
				}
				if tb.n*1000 > len(tb.slots)*maxLoad {
					t.Fatalf("load %d/%d above %d‰", tb.n, len(tb.slots), maxLoad)
				}
			}
			seen := 0
			tb.Range(func(k uint64, v int) bool {
				if ref[k] != v {
					t.Fatalf("range %d=%d, want %d", k, v, ref[k])
				}
				seen++
				return true
			})
			if seen != len(ref) {
				t.Fatalf("range saw %d of %d", seen, len(ref))
			}
		}
	}
}

// TestProbe: with a hash of part of the key, Probe meets every key that
// shares that part.
func TestProbe(t *testing.T) {
	type key struct{ circuit, mac uint64 }
	tb := New[key, int](func(k key) uint64 { return Mix64(k.mac) })
	for mac := uint64(1); mac <= 5000; mac++ {
		for c := range mac%3 + 1 {
			tb.Put(key{c, mac}, int(c))
		}
	}
	for mac := uint64(1); mac <= 5000; mac += 3 {
		tb.Delete(key{0, mac})
	}
	// The zero key is held apart from the slots: Probe still meets it
	// with the other keys of its MAC.
	tb.Put(key{}, 0)
	tb.Put(key{1, 0}, 1)
	zeroMet := 0
	tb.Probe(Mix64(0), func(k key, v int) bool {
		if k.mac == 0 {
			zeroMet++
		}
		return true
	})
	if zeroMet != 2 {
		t.Errorf("mac 0: probe met %d keys, want 2 (the zero key and circuit 1's)", zeroMet)
	}
	for mac := uint64(1); mac <= 5000; mac++ {
		want := int(mac%3 + 1)
		if mac%3 == 1 {
			want--
		}
		got := 0
		tb.Probe(Mix64(mac), func(k key, v int) bool {
			if k.mac == mac {
				got++
			}
			return true
		})
		if got != want {
			t.Fatalf("mac %d: probe met %d keys, want %d", mac, got, want)
		}
	}
}

// TestReserve: a table reserved for n holds n without growing, in
// n/0.7 slots (not rounded up to a power of two).
func TestReserve(t *testing.T) {
	tb := New[uint64, uint32](Mix64)
	const n = 1_100_000
	tb.Reserve(n)
	slots := tb.Slots()
	for k := uint64(1); k <= n; k++ {
		tb.Put(k, uint32(k))
	}
	if tb.Slots() != slots || slots > n*1000/plannedLoad+1 {
		t.Errorf("slots %d → %d for %d keys", slots, tb.Slots(), n)
	}
	if v, ok := tb.Get(n / 2); !ok || v != n/2 {
		t.Errorf("get: %d %v", v, ok)
	}
}

func TestGetAllocs(t *testing.T) {
	tb := New[uint64, [3]uint64](Mix64)
	for k := uint64(0); k < 1000; k++ {
		tb.Put(k, [3]uint64{k})
	}
	if a := testing.AllocsPerRun(1000, func() { _, _ = tb.Get(500) }); a != 0 {
		t.Errorf("Get allocates %v", a)
	}
}

func BenchmarkGet1M(b *testing.B) {
	tb := New[uint64, [2]uint64](Mix64)
	tb.Reserve(1 << 20)
	for k := uint64(1); k <= 1<<20; k++ {
		tb.Put(k*0x9e3779b97f4a7c15, [2]uint64{k})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := uint64(i&(1<<20-1)+1) * 0x9e3779b97f4a7c15
		if _, ok := tb.Get(k); !ok {
			b.Fatal("missing")
		}
	}
}
