package lfmap

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkFill makes a map for 1M entries at the MAC table's load (0.5)
// and stores 1M random keys into it one at a time, as a restart restores
// its bindings: ns per key stored, the map's making included (its slot
// arrays, made and readied by hugemem.Prepare). "grow": the map grows
// from its first array, 4096 entries' worth, doubling 8 times; "reserve":
// Reserve(1M) first, one full-sized array, as every map had before maps
// grew.
//
// Measured on the 2-CPU lab VM (load average 9–35), one fill per fresh
// process, alternated with the build before maps grew: a fresh process
// pays for faulting in every array it makes, and growing makes twice the
// final array's memory in all (4096×2^k entries' arrays up to 1M) and
// copies 1M entries on the way. Medians of 10 runs: grow ~260 ns per key
// against ~155 before; in 10 more, grow 351, reserve 212, before 209
// (paired: grow +190, reserve +31, spread ±200). So 0.1–0.2 s more for a
// table of a million grown one key at a time, nothing reserved: hence
// Reserve where a start knows the count (engine.Control.Reserve, the
// admitted set's first load).
func BenchmarkFill(b *testing.B) {
	const n = 1 << 20
	r := rand.New(rand.NewPCG(1, 2))
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = r.Uint64()>>1 | 1
	}
	for _, reserve := range []bool{false, true} {
		name := "grow"
		if reserve {
			name = "reserve"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m := NewLoad(n, Load{Num: 1, Den: 2}, 1)
				if reserve {
					m.Reserve(n)
				}
				for _, k := range keys {
					if err := m.Store(k, k); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/key")
		})
	}
}
