package fastpath

import "testing"

// BenchmarkMirror is the cost of mirroring one binding (its MAC table and
// FIB entries, two map updates) into the fast path: what a start-up
// restoring N bindings adds, N times.
func BenchmarkMirror(b *testing.B) {
	m := benchMaps(b)
	for i := range b.N {
		k := uint64(i+1) << 16
		m.SetSub(k, uint64(i)<<32|1)
		m.SetDest(1<<40|uint64(i), k)
	}
	if err := m.Err(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkMirrorBatch is BenchmarkMirror through SetSubs and SetDests in
// batches of 8192, as engine.Control.SetOffload copies the tables.
func BenchmarkMirrorBatch(b *testing.B) {
	m := benchMaps(b)
	const batch = 8192
	keys, vals := make([]uint64, 0, batch), make([]uint64, 0, batch)
	dkeys, dvals := make([]uint64, 0, batch), make([]uint64, 0, batch)
	for i := range b.N {
		k := uint64(i+1) << 16
		keys, vals = append(keys, k), append(vals, uint64(i)<<32|1)
		dkeys, dvals = append(dkeys, 1<<40|uint64(i)), append(dvals, k)
		if len(keys) == batch || i == b.N-1 {
			m.SetSubs(keys, vals)
			m.SetDests(dkeys, dvals)
			keys, vals, dkeys, dvals = keys[:0], vals[:0], dkeys[:0], dvals[:0]
		}
	}
	if err := m.Err(); err != nil {
		b.Fatal(err)
	}
}

// benchMaps is a fresh set of maps sized for b.N bindings, closed when the
// benchmark ends.
func benchMaps(b *testing.B) *Maps {
	needBPF(b)
	m, err := newMaps(max(b.N, 1), false)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	b.ReportAllocs()
	return m
}
