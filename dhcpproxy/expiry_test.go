package dhcpproxy

import (
	"testing"
	"time"
)

// TestExpiryHeap: expired returns exactly the leases whose end has come
// (a renewed lease by its new end, a removed one never), keeps returning
// a lease until it is removed (the store may refuse its end), at most
// limit of them, the oldest first (the rest at the next scans), and the
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
	const all = 1 << 30
	a := put(1, t0.Add(10*time.Second))
	put(2, t0.Add(20*time.Second))
	c := put(3, t0.Add(5*time.Second))
	put(1, t0.Add(30*time.Second)) // renewed: its 10 s entry is stale
	lt.remove(c)                   // ended: never expires
	if got := lt.expired(t0.Add(15*time.Second), all); len(got) != 0 {
		t.Errorf("at 15 s: %v, want none", got)
	}
	got := lt.expired(t0.Add(20*time.Second), all)
	if len(got) != 1 || got[0].k.mac != 2 {
		t.Fatalf("at 20 s: %v, want MAC 2", got)
	}
	// Not ended (the store refused): it comes up again.
	if got := lt.expired(t0.Add(21*time.Second), all); len(got) != 1 || got[0].k.mac != 2 {
		t.Errorf("at 21 s: %v, want MAC 2 again", got)
	}
	lt.remove(got[0].k)
	if got := lt.expired(t0.Add(29*time.Second), all); len(got) != 0 {
		t.Errorf("at 29 s: %v, want none", got)
	}
	if got := lt.expired(t0.Add(31*time.Second), all); len(got) != 1 || got[0].k != a {
		t.Errorf("at 31 s: %v, want MAC 1", got)
	}
	// A limit: the oldest first, the rest left for the next scan.
	put(4, t0.Add(40*time.Second))
	put(5, t0.Add(35*time.Second))
	put(6, t0.Add(45*time.Second))
	if got := lt.expired(t0.Add(50*time.Second), 2); len(got) != 2 || got[0].k != a || got[1].k.mac != 5 {
		t.Errorf("at 50 s, 2 at most: %v, want MACs 1 and 5", got)
	}
	lt.remove(a)
	if got := lt.expired(t0.Add(50*time.Second), 2); len(got) != 2 || got[0].k.mac != 5 || got[1].k.mac != 4 {
		t.Errorf("at 50 s, 2 at most, MAC 1 ended: %v, want MACs 5 and 4", got)
	}
	if got := lt.expired(t0.Add(50*time.Second), all); len(got) != 3 {
		t.Errorf("at 50 s: %v, want MACs 5, 4 and 6", got)
	}
	// Put again with the same end (two entries): returned once.
	put(7, t0.Add(55*time.Second))
	put(7, t0.Add(55*time.Second))
	if got := lt.expired(t0.Add(56*time.Second), all); len(got) != 4 || got[3].k.mac != 7 {
		t.Errorf("at 56 s: %v, want MACs 5, 4, 6 and 7 once", got)
	}
	// Many renewals of few leases: the heap is rebuilt, not grown.
	for i := range 100000 {
		put(uint64(10+i%10), t0.Add(time.Hour+time.Duration(i)*time.Millisecond))
	}
	if n := len(lt.exp); n > 3*lt.len()+1025 {
		t.Errorf("heap of %d entries for %d leases", n, lt.len())
	}
}
