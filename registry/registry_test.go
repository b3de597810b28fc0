package registry

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"unsafe"
)

func TestRegistry(t *testing.T) {
	r := New()
	r.Put(1, Entry{ISP: "a", CustomerID: "c1", Source: "api"}, false)
	r.Put(2, Entry{ISP: "a", CustomerID: "c1", Source: "api"}, false)
	r.Put(3, Entry{ISP: "b", CustomerID: "c1", Source: "api"}, false)
	if r.Len() != 3 {
		t.Fatalf("len %d", r.Len())
	}
	r.SetSuspended("a", "c1", true)
	for mac, want := range map[uint64]bool{1: true, 2: true, 3: false} {
		e, ok := r.Lookup(mac)
		if !ok || e.Suspended() != want {
			t.Errorf("mac %d: suspended %v, want %v", mac, e.Suspended(), want)
		}
	}
	// A device attached later to a suspended customer is suspended.
	r.Put(4, Entry{ISP: "a", CustomerID: "c1"}, false)
	if e, _ := r.Lookup(4); !e.Suspended() {
		t.Error("new device of a suspended customer not suspended")
	}
	// Moving a device to another customer leaves the old one's status.
	r.Put(2, Entry{ISP: "b", CustomerID: "c1"}, false)
	if e, _ := r.Lookup(2); e.Suspended() || e.ISP != "b" {
		t.Errorf("moved device: %+v suspended %v", e, e.Suspended())
	}
	r.SetSuspended("a", "c1", false)
	if e, _ := r.Lookup(1); e.Suspended() {
		t.Error("still suspended")
	}
	if !r.Delete(1) || r.Delete(1) || r.Len() != 3 {
		t.Errorf("delete: len %d", r.Len())
	}
	n := 0
	r.RangeMACs(func(uint64) bool { n++; return true })
	if n != 3 {
		t.Errorf("range saw %d", n)
	}
}

// Readers run while one writer changes entries (go test -race).
func TestConcurrentReaders(t *testing.T) {
	r := New()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for mac := uint64(1); mac < 200; mac++ {
					if e, ok := r.Lookup(mac); ok && e.ISP == "" {
						t.Error("entry without ISP")
						return
					}
				}
			}
		}()
	}
	for i := range 20000 {
		mac := uint64(i%199 + 1)
		if i%3 == 0 {
			r.Delete(mac)
		} else {
			r.Put(mac, Entry{ISP: "a", CustomerID: "c"}, i%7 == 0)
		}
		if i%100 == 0 {
			r.SetSuspended("a", "c", i%200 == 0)
		}
	}
	close(stop)
	wg.Wait()
}

func BenchmarkLookup(b *testing.B) {
	r := New()
	for i := range 100000 {
		r.Put(uint64(i+1)*2654435761, Entry{ISP: "a", CustomerID: "c"}, false)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r.Lookup(uint64(i%100000+1) * 2654435761)
	}
}

// TestInterned: entries share one copy of their ISP, access and source
// names (a million MACs, a handful of names).
func TestInterned(t *testing.T) {
	r := New()
	mk := func(s string) string { return string([]byte(s)) } // a fresh copy, as a decoder makes
	r.Put(1, Entry{ISP: mk("alpha"), CustomerID: "c1", Access: mk("acc0"), Source: mk("api")}, false)
	r.Put(2, Entry{ISP: mk("alpha"), CustomerID: "c2", Access: mk("acc0"), Source: mk("api")}, false)
	a, _ := r.Lookup(1)
	b, _ := r.Lookup(2)
	if unsafe.StringData(a.ISP) != unsafe.StringData(b.ISP) || unsafe.StringData(a.Access) != unsafe.StringData(b.Access) ||
		unsafe.StringData(a.Source) != unsafe.StringData(b.Source) {
		t.Error("two entries hold their own copies of the same names")
	}
	if b.ISP != "alpha" || b.Access != "acc0" || b.Source != "api" || b.CustomerID != "c2" {
		t.Errorf("entry %+v", b)
	}
}

// TestStrtabChains: records whose hashes collide share a chain; holding,
// releasing, flagging and freeing any of them (head, middle, tail) keeps
// the others found, and freed indices are reused.
func TestStrtabChains(t *testing.T) {
	var st strtab
	st.init("test")
	st.hash = func(scope uint32, s string) uint64 { return uint64(len(s)) } // "a".."e" collide
	names := []string{"a", "b", "c", "d", "e"}
	idx := map[string]uint32{}
	for _, s := range names {
		idx[s] = st.hold(1, s, false)
	}
	if i := st.hold(1, "c", false); i != idx["c"] || st.at(i).refs != 2 {
		t.Fatalf("second hold of c: %d refs %d", i, st.at(i).refs)
	}
	if _, ok := st.find(2, "c"); ok {
		t.Error("c found in another scope")
	}
	for _, s := range []string{"e", "a", "c"} { // head (last made), tail, middle
		st.release(idx[s])
	}
	if _, ok := st.find(1, "c"); !ok {
		t.Error("c freed while held")
	}
	st.release(idx["c"])
	for _, s := range names {
		_, ok := st.find(1, s)
		if want := s == "b" || s == "d"; ok != want {
			t.Errorf("%s found %v, want %v", s, ok, want)
		}
	}
	if len(st.free) != 3 {
		t.Errorf("free %v", st.free)
	}
	// A flag keeps a record nothing holds; clearing it frees it.
	st.setFlag(1, "x", true)
	i, ok := st.find(1, "x")
	if !ok || !st.at(i).flag.Load() || len(st.free) != 2 {
		t.Fatalf("flagged x: %d %v free %v", i, ok, st.free)
	}
	st.setFlag(1, "x", false)
	if _, ok := st.find(1, "x"); ok {
		t.Error("x kept after its flag cleared")
	}
	if st.n != 5 {
		t.Errorf("%d records allocated, want 5 (indices reused)", st.n)
	}
}

// TestCustomersFreed: a customer's record lives while a device or its
// suspension holds it, the same ID at two ISPs is two customers, and a
// registry emptied of its devices holds no customer.
func TestCustomersFreed(t *testing.T) {
	r := New()
	r.Put(1, Entry{ISP: "a", CustomerID: "c1", Access: "acc0"}, false)
	r.Put(2, Entry{ISP: "b", CustomerID: "c1", Access: "acc1"}, true)
	if e, _ := r.Lookup(1); e.Suspended() {
		t.Error("a's c1 suspended with b's")
	}
	if e, _ := r.Lookup(2); !e.Suspended() || e.Access != "acc1" {
		t.Errorf("b's c1: %+v", e)
	}
	r.Delete(2)
	r.Put(3, Entry{ISP: "b", CustomerID: "c1"}, false)
	if e, _ := r.Lookup(3); !e.Suspended() {
		t.Error("b's c1 lost its suspension with its last device")
	}
	r.SetSuspended("b", "c1", false)
	r.Delete(1)
	r.Delete(3)
	if r.custs.index.Len() != 0 || r.access.index.Len() != 0 {
		t.Errorf("empty registry holds %d customers, %d access names", r.custs.index.Len(), r.access.index.Len())
	}
}

// TestBytesPerRegistration: a million MACs, each of its own customer (the
// worst case), cost ≤ 120 bytes of heap each with the tables reserved as
// a start-up load does (was ~235 with Go maps and an Entry per MAC).
func TestBytesPerRegistration(t *testing.T) {
	if testing.Short() {
		t.Skip("a million registrations")
	}
	const n = 1_000_000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("cust-%07d", i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := New()
	r.Reserve(n, n)
	for i := range n {
		r.Put(0x02_00_00_00_00_00+uint64(i)*7919, Entry{ISP: "alpha", CustomerID: ids[i], Source: "api"}, false)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	// The IDs' bytes were allocated before: the registry holds them.
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.0f bytes of heap per registration (IDs' bytes excluded)", per)
	if per > 120 {
		t.Errorf("%.0f bytes per registration, want ≤ 120", per)
	}
	if e, ok := r.Lookup(0x02_00_00_00_00_00 + 5*7919); !ok || e.CustomerID != ids[5] || e.ISP != "alpha" {
		t.Errorf("lookup: %+v %v", e, ok)
	}
	runtime.KeepAlive(r)
}
