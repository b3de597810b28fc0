package engine

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/fib"
)

// recOffload records what the control plane mirrors (a fake of package
// fastpath's maps).
type recOffload struct {
	mu     sync.Mutex
	subs   map[uint64]uint64
	dests  map[uint64]uint64
	portal uint32
}

func newRecOffload() *recOffload {
	return &recOffload{subs: map[uint64]uint64{}, dests: map[uint64]uint64{}}
}

func (o *recOffload) SetSub(k, v uint64)  { o.mu.Lock(); o.subs[k] = v; o.mu.Unlock() }
func (o *recOffload) DelSub(k uint64)     { o.mu.Lock(); delete(o.subs, k); o.mu.Unlock() }
func (o *recOffload) SetDest(k, v uint64) { o.mu.Lock(); o.dests[k] = v; o.mu.Unlock() }
func (o *recOffload) DelDest(k uint64)    { o.mu.Lock(); delete(o.dests, k); o.mu.Unlock() }
func (o *recOffload) SetSubs(ks, vs []uint64) {
	for i := range ks {
		o.SetSub(ks[i], vs[i])
	}
}
func (o *recOffload) SetDests(ks, vs []uint64) {
	for i := range ks {
		o.SetDest(ks[i], vs[i])
	}
}
func (o *recOffload) SetPort(uint8, uint64, int, int)                    {}
func (o *recOffload) SetMTU(uint8, int)                                  {}
func (o *recOffload) SetVLAN(uint8, uint16, bool, uint8, uint32)         {}
func (o *recOffload) SetUplink(uint8, bool, bool, uint8, uint32, []byte) {}
func (o *recOffload) SetPortal(a uint32)                                 { o.mu.Lock(); o.portal = a; o.mu.Unlock() }
func (o *recOffload) Forwarded(uint8) (uint64, uint64)                   { return 0, 0 }

// TestBindMoveFullTable: at a full table, a subscriber's new address takes
// the room of its old one (a move adds no entry), in the engine and in the
// fast path's copy; a new subscriber is refused and changes nothing.
func TestBindMoveFullTable(t *testing.T) {
	const n = 8
	r := newRig(t, n)
	r.resolve()
	o := newRecOffload()
	r.c.SetOffload(o, func(uint8) int { return 1 })
	macs, ips := benchSubs(t, r, n)
	if r.s.FIB.Len() != n {
		t.Fatalf("setup: FIB holds %d, want %d", r.s.FIB.Len(), n)
	}
	moved := 0x64400000 | uint32(1000)
	if err := r.c.Bind(Binding{Port: 0, MAC: macs[0], ISP: 0, IP: netip.AddrFrom4(be4(moved))}); err != nil {
		t.Fatalf("move at a full table: %v", err)
	}
	if _, ok := r.s.FIB.Lookup(0, ips[0]); ok {
		t.Error("the old address still has a FIB entry")
	}
	if d, ok := r.s.FIB.Lookup(0, moved); !ok || d.MAC != macs[0] {
		t.Errorf("the new address's FIB entry: %+v %v", d, ok)
	}
	if s, ok := r.s.MAC.Lookup(0, 0, macs[0]); !ok || s.IP != moved {
		t.Errorf("MAC table: %+v %v", s, ok)
	}
	if _, ok := o.dests[fib.Key(0, ips[0])]; ok {
		t.Error("the fast path still has the old address")
	}
	if _, ok := o.dests[fib.Key(0, moved)]; !ok {
		t.Error("the fast path lacks the new address")
	}
	if v := o.subs[classifier.Key(0, 0, macs[0])]; classifier.UnpackSub(v).IP != moved {
		t.Errorf("the fast path's MAC entry says %+v", classifier.UnpackSub(v))
	}
	// Forwarded both ways at the new address.
	out := r.send(0, udpFrame(t, macs[0], accMAC, 0, netip.AddrFrom4(be4(moved)).String(), "198.18.0.1", 64, 1024, 9))
	if len(out[1]) != 1 {
		t.Errorf("upstream at the new address: %d frames on the uplink", len(out[1]))
	}
	out = r.send(1, udpFrame(t, gwaMAC, upaMAC, 0, "198.18.0.1", netip.AddrFrom4(be4(moved)).String(), 64, 9, 1024))
	if len(out[0]) != 1 {
		t.Errorf("downstream to the new address: %d frames on the access port", len(out[0]))
	}

	// A new subscriber at a full table: refused, nothing changed.
	if err := r.c.Bind(Binding{Port: 0, MAC: 0x02aa00000001, ISP: 0, IP: netip.MustParseAddr("100.65.0.1")}); err == nil {
		t.Fatal("a new subscriber was bound past the capacity")
	}
	if r.s.FIB.Len() != n || r.s.MAC.Len() != n || len(o.dests) != n || len(o.subs) != n {
		t.Errorf("after the refusal: FIB %d, MAC %d, mirror %d/%d; want %d each", r.s.FIB.Len(), r.s.MAC.Len(), len(o.dests), len(o.subs), n)
	}
	for i := 1; i < n; i++ {
		if d, ok := r.s.FIB.Lookup(uint8(i%2), ips[i]); !ok || d.MAC != macs[i] {
			t.Errorf("subscriber %d lost its FIB entry", i)
		}
	}
}

// TestGardenWhileOffload: a garden published while the fast path is
// attached reaches the fast path, whichever goes first.
func TestGardenWhileOffload(t *testing.T) {
	for i := range 200 {
		r := newRig(t, 16)
		o := newRecOffload()
		portal := uint32(0x0a000001 + i)
		var wg sync.WaitGroup
		wg.Go(func() { r.c.SetOffload(o, func(uint8) int { return 1 }) })
		wg.Go(func() {
			if err := r.s.SetGarden(&Garden{PortalAddr: portal}); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
		if o.portal != portal {
			t.Fatalf("try %d: the fast path's portal is %#x, the engine's %#x", i, o.portal, portal)
		}
	}
}
