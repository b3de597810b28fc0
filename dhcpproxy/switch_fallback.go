package dhcpproxy

import (
	"time"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

// The switch fallback. A switch the subscriber made itself is a handover
// too (holdSwitched): a device bound at one ISP whose registration moved
// to another by a claim (the portal's: the subscriber's own choice, with
// the new customer's password; no other claim takes a device from another
// ISP's customer), on a circuit with an onboarding pool, is held there
// for its DORA with the new ISP from the moment its old binding ends (its
// next message after the move: the NAK of its renewal, its DISCOVER), as
// a device leaving the garden is. The new ISP refusing it or
// silent, it goes to the garden with the same rules, where the portal says
// why and offers the claim form (its old ISP's customer again, say),
// instead of staying with no address and no portal (the ISP may have
// created the customer in ispmux's API and not in its own DHCP server).
// A move by the operator or an ISP's API is theirs to get right: its
// refusals are the new ISP's nak and timeout events, as before. A restart
// forgets the holds; recentClaim stands in for them after it.

// holdSwitched holds mac on c for its DORA with its new ISP when its
// registration reg moved there by a claim (a switch the subscriber made
// itself) and c has an onboarding pool: its binding at the old ISP just
// ended by the move (serveRequest). Its handover's failure then sends it
// to the garden (onboarding_fallback.go); its messages on c keep the hold
// (keepHold) as a handover's from the garden do.
func (p *Proxy) holdSwitched(c *Circuit, mac uint64, reg *registry.Entry, now time.Time) {
	if reg.Source != registry.SourceClaim {
		return
	}
	pl := p.ob.pools[circuitKey{c.Port, c.VLAN}]
	if pl == nil {
		return
	}
	p.ob.hold(mac, pl, now.Add(pl.leaseTime))
	p.count("switch_held")
}

// recentClaim returns the onboarding pool of s's access if s's MAC, held
// nowhere, is registered by a claim made before this proxy started (so
// the restart forgot the hold it may have had) and so recently that its
// handover may be under way: within the longest a handover takes to
// begin and be held (ClientLeaseMax, a switch's wait for the device's
// renewal; a garden lease time; then the hold's lease time), counted from
// the claim (the registration's Updated, from the store: the registry
// does not keep it). So a restart during a switch, or between the end of
// a garden lease by its handover and the ISP's answer, does not leave a
// device its ISP refuses without an address: its failure sends it to
// the garden as the hold's would have. A claim made since the start had
// its hold, and its lapse is exact. Read only on a refusal or a timeout
// (handoverFailed), and only for a MAC registered by a claim on an access
// with an onboarding pool.
func (p *Proxy) recentClaim(s subject, now time.Time) (*obPool, bool) {
	reg, ok := p.reg.Lookup(s.mac)
	if !ok || reg.Source != registry.SourceClaim || reg.ISP != s.isp || reg.CustomerID != s.customer {
		return nil, false
	}
	var pl *obPool
	for _, x := range p.ob.pools {
		if x.c.Name == s.access {
			pl = x
		}
	}
	if pl == nil {
		return nil, false
	}
	window := max(p.leaseMaxFor(now), pl.leaseTime) + pl.leaseTime
	if now.Sub(p.born) > window {
		// Past the window since the start, every claim of before it is
		// too old: no store read.
		return nil, false
	}
	r, err := p.store.Registration(subscribers.MAC(binding.MACBytes(s.mac)))
	if err != nil || r.Source != registry.SourceClaim || !r.Updated.Before(p.born) || now.Sub(r.Updated) > window {
		return nil, false
	}
	return pl, true
}
