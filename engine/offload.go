package engine

import (
	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/fib"
)

// Offload is a fast path in the kernel that forwards, for the common case,
// what the workers would (package fastpath: XDP programs before the AF_XDP
// sockets). It holds copies of the MAC table and FIB under their own keys
// and packed values, and of each port's, VLAN's and ISP's configuration.
// The control plane is its single writer: every change to the engine's
// tables is mirrored, under Control's lock, right after it is made.
type Offload interface {
	SetSub(key, val uint64) // classifier.Key → Sub.Pack
	DelSub(key uint64)
	SetDest(key, val uint64) // fib.Key → Dest.Pack
	DelDest(key uint64)
	// SetSubs and SetDests are SetSub and SetDest for many entries
	// (keys[i] → vals[i]): the copy of the whole tables.
	SetSubs(keys, vals []uint64)
	SetDests(keys, vals []uint64)
	SetPort(port uint8, mac uint64, mtu int, ifindex int)
	SetMTU(port uint8, mtu int)
	SetVLAN(port uint8, vlan uint16, access bool, isp uint8, gw uint32)
	SetUplink(isp uint8, configured, resolved bool, port uint8, addr uint32, l2 []byte)
	SetPortal(addr uint32)
	// Forwarded returns the packets the fast path forwarded that were
	// received on port: up (subscriber to ISP) and down.
	Forwarded(port uint8) (up, down uint64)
}

// offloadRef holds the Offload (an interface value in an atomic pointer).
type offloadRef struct{ o Offload }

// SetOffload mirrors the forwarding state into o from now on: ports,
// VLANs, uplinks, the portal and every binding are copied (in batches:
// at a million bindings a second or so, against five one at a time),
// then every change. ifindex gives each port's interface index (its
// redirect target). Call it once, best after the bindings are restored;
// until then o holds nothing and its programs leave every frame to the
// engine.
func (c *Control) SetOffload(o Offload, ifindex func(port uint8) int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.s.ports {
		pt := &c.s.ports[i]
		p := uint8(i)
		o.SetPort(p, pt.mac, int(c.s.mtu[i].Load()), ifindex(p))
		for v := range pt.role {
			switch pt.role[v] {
			case roleAccess:
				o.SetVLAN(p, uint16(v), true, 0, pt.addr[v])
			case roleUplink:
				o.SetVLAN(p, uint16(v), false, pt.isp[v], 0)
			}
		}
	}
	c.s.off.Store(&offloadRef{o})
	// The portal after o is published: a SetGarden from here on mirrors
	// its own change, one before it is read here (gardenMu orders them).
	c.s.gardenMu.Lock()
	if g := c.s.garden.Load(); g != nil {
		o.SetPortal(g.portal)
	}
	c.s.gardenMu.Unlock()
	// From here on every published uplink set is mirrored; the current
	// one is copied once.
	c.s.Up.Observe(func(prev, next *fib.UplinkSet) { mirrorUplinks(o, prev, next) })
	mirrorUplinks(o, nil, c.s.Up.Load())
	keys, vals := make([]uint64, 0, mirrorBatch), make([]uint64, 0, mirrorBatch)
	flush := func(set func(keys, vals []uint64)) {
		set(keys, vals)
		keys, vals = keys[:0], vals[:0]
	}
	c.s.FIB.Range(func(vrf uint8, ip uint32, d fib.Dest) bool {
		keys, vals = append(keys, fib.Key(vrf, ip)), append(vals, d.Pack())
		if len(keys) == mirrorBatch {
			flush(o.SetDests)
		}
		return true
	})
	flush(o.SetDests)
	c.s.MAC.Range(func(port uint8, vlan uint16, mac uint64, s classifier.Sub) bool {
		keys, vals = append(keys, classifier.Key(port, vlan, mac)), append(vals, s.Pack())
		if len(keys) == mirrorBatch {
			flush(o.SetSubs)
		}
		return true
	})
	flush(o.SetSubs)
}

// mirrorBatch is how many entries SetOffload copies per system call.
const mirrorBatch = 8192

// offload returns the Offload, or nil.
func (s *State) offload() Offload {
	if r := s.off.Load(); r != nil {
		return r.o
	}
	return nil
}

// SetPortDevice tells the fast path port's interface index after it
// changed (the interface was re-created); 0: the port is down.
func (c *Control) SetPortDevice(port uint8, ifindex int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if o := c.s.offload(); o != nil && int(port) < len(c.s.ports) {
		o.SetPort(port, c.s.ports[port].mac, int(c.s.mtu[port].Load()), ifindex)
	}
}

// mirrorUplinks copies to o every ISP's uplink that differs between prev
// (nil: all) and next.
func mirrorUplinks(o Offload, prev, next *fib.UplinkSet) {
	for i := range next.ISP {
		u := &next.ISP[i]
		if prev != nil && prev.ISP[i] == *u {
			continue
		}
		o.SetUplink(uint8(i), u.Configured, u.Configured && u.Resolved, u.Port, u.Addr, u.L2[:u.L2Len])
	}
}
