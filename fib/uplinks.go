package fib

import (
	"sync"
	"sync/atomic"
)

// Uplink is one ISP's side of ispmux: where its traffic leaves, with which
// source MAC and address, and the next hop it goes to.
type Uplink struct {
	Configured bool
	Port       uint8  // uplink port
	VLAN       uint16 // 0 means untagged
	MAC        uint64 // our MAC on this uplink (48-bit)
	Addr       uint32 // our IPv4 address on this uplink
	PrefixLen  int
	Gateway    uint32 // next hop: the ISP's router
	GatewayMAC uint64 // valid only when Resolved
	Resolved   bool

	// L2 is the Ethernet header of a frame to the gateway (GatewayMAC,
	// MAC, the VLAN tag when VLAN != 0) and L2Len its length, 14 or 18:
	// set by Uplinks whenever it publishes the uplink, so that the
	// datapath copies one array per packet instead of writing the header
	// field by field. L2Len is not 0 exactly when the uplink is
	// Configured and Resolved (and L2 all zeros otherwise): the engine's
	// lane takes L2Len != 0 for both. Callers' values are ignored.
	L2    [18]byte
	L2Len uint8
}

// setL2 computes L2 and L2Len from the other fields.
func (up *Uplink) setL2() {
	up.L2, up.L2Len = [18]byte{}, 0
	if up.Configured && up.Resolved {
		up.L2Len = uint8(WriteL2(up.L2[:], up.GatewayMAC, up.MAC, up.VLAN, up.VLAN != 0, EtherTypeIPv4))
	}
}

// UplinkSet is one published, immutable view of every ISP's uplink.
// Readers index ISP (or call Get) and must never write to it.
type UplinkSet struct {
	ISP [MaxISPs]Uplink
}

// Get returns ISP isp's uplink, or nil when isp >= MaxISPs. The pointer
// aliases the shared snapshot: read it, never write through it.
func (s *UplinkSet) Get(isp uint8) *Uplink {
	if int(isp) >= len(s.ISP) {
		return nil
	}
	return &s.ISP[isp]
}

// Uplinks publishes UplinkSet snapshots. The zero value is ready to use and
// holds no configured ISP.
type Uplinks struct {
	cur atomic.Pointer[UplinkSet]

	// mu serialises writers (copy, modify, swap); readers never take it.
	mu sync.Mutex
	// observe, when set, is called with mu held after every publication.
	observe func(prev, next *UplinkSet)
}

// Observe calls fn with the previous and the new snapshot after every
// publication from now on (a kernel fast path's copy follows them), with
// the writers' lock held: fn must not call back into u.
func (u *Uplinks) Observe(fn func(prev, next *UplinkSet)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.observe = fn
}

var emptyUplinks UplinkSet

// Load returns the current snapshot: one atomic load, no allocation. Call
// it once per batch. Safe from any goroutine.
func (u *Uplinks) Load() *UplinkSet {
	if s := u.cur.Load(); s != nil {
		return s
	}
	return &emptyUplinks
}

// update publishes a modified copy of the current set.
func (u *Uplinks) update(fn func(s *UplinkSet)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	prev := u.Load()
	next := new(UplinkSet)
	*next = *prev
	fn(next)
	u.cur.Store(next)
	if u.observe != nil {
		u.observe(prev, next)
	}
}

// Configure sets ISP isp's uplink from up. Pass Uplink{} to remove it.
//
// Resolution belongs to SetGatewayMAC (driven by a Resolver), so
// up.GatewayMAC and up.Resolved are ignored: they are carried over when the
// uplink was already configured with the same Port, VLAN and Gateway, and
// cleared otherwise. Configure panics if isp >= MaxISPs.
func (u *Uplinks) Configure(isp uint8, up Uplink) {
	u.update(func(s *UplinkSet) {
		old := &s.ISP[isp]
		up.GatewayMAC, up.Resolved = 0, false
		if up.Configured && old.Configured && old.Resolved &&
			old.Port == up.Port && old.VLAN == up.VLAN && old.Gateway == up.Gateway {
			up.GatewayMAC, up.Resolved = old.GatewayMAC, true
		}
		if !up.Configured {
			up = Uplink{}
		}
		up.setL2()
		*old = up
	})
}

// SetGatewayMAC publishes the MAC of ISP isp's gateway; mac 0 withdraws it
// (Resolved becomes false). It does nothing for an unconfigured ISP or when
// nothing would change, and panics if isp >= MaxISPs.
func (u *Uplinks) SetGatewayMAC(isp uint8, mac uint64) {
	mac &= macMask
	cur := &u.Load().ISP[isp]
	if !cur.Configured || (cur.GatewayMAC == mac && cur.Resolved == (mac != 0)) {
		return // unlocked fast path; re-checked below under mu
	}
	u.update(func(s *UplinkSet) {
		up := &s.ISP[isp]
		if up.Configured {
			up.GatewayMAC, up.Resolved = mac, mac != 0
			up.setL2()
		}
	})
}
