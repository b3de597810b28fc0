package dhcpproxy

import (
	"testing"
	"time"
)

// TestExpiryHeap: expired returns exactly the leases whose end has come
// (a renewed lease by its new end, a removed one never), keeps returning
// a lease until it is removed (the store may refuse its end), and the
// heap stays within a small multiple of the leases however often they
// are renewed.
func TestExpiryHeap(t *testing.T) {
	var lt leaseTable
	lt.init()
	t0 := time.Unix(1_000_000, 0)
	put := func(mac uint64, end time.Time) subKey {
		sk := subKey{circuitKey{1, 0}, mac}
		lt.put(sk, lease{expires: end.UnixNano()})
		return sk
	}
	a := put(1, t0.Add(10*time.Second))
	put(2, t0.Add(20*time.Second))
	c := put(3, t0.Add(5*time.Second))
	put(1, t0.Add(30*time.Second)) // renewed: its 10 s entry is stale
	lt.remove(c)                   // ended: never expires
	if got := lt.expired(t0.Add(15 * time.Second)); len(got) != 0 {
		t.Errorf("at 15 s: %v, want none", got)
	}
	got := lt.expired(t0.Add(20 * time.Second))
	if len(got) != 1 || got[0].k.mac != 2 {
		t.Fatalf("at 20 s: %v, want MAC 2", got)
	}
	// Not ended (the store refused): it comes up again.
	if got := lt.expired(t0.Add(21 * time.Second)); len(got) != 1 || got[0].k.mac != 2 {
		t.Errorf("at 21 s: %v, want MAC 2 again", got)
	}
	lt.remove(got[0].k)
	if got := lt.expired(t0.Add(29 * time.Second)); len(got) != 0 {
		t.Errorf("at 29 s: %v, want none", got)
	}
	if got := lt.expired(t0.Add(31 * time.Second)); len(got) != 1 || got[0].k != a {
		t.Errorf("at 31 s: %v, want MAC 1", got)
	}
	// Many renewals of few leases: the heap is rebuilt, not grown.
	for i := range 100000 {
		put(uint64(10+i%10), t0.Add(time.Hour+time.Duration(i)*time.Millisecond))
	}
	if n := len(lt.exp); n > 3*lt.len()+1025 {
		t.Errorf("heap of %d entries for %d leases", n, lt.len())
	}
}
