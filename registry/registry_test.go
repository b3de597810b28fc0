package registry

import (
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
	r.Range(func(uint64, *Entry) bool { n++; return true })
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
