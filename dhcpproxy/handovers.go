package dhcpproxy

import (
	"cmp"
	"slices"
	"time"
)

// Handover is a device on its way from the walled garden, or from its old
// ISP (a switch it made itself), to the ISP it chose, with no onboarding
// lease and no binding there now: its DORA with the ISP under way, or
// just refused (Handovers).
type Handover struct {
	MAC    uint64
	Access string
	// ISP and CustomerID are its registration's: where it is going.
	ISP, CustomerID string
	// HeldUntil is when its hold on Access lapses unless it asks again
	// there (zero: no hold left, its failure's record alone).
	HeldUntil time.Time
	// SilentSince is when its ISP first left its DORA unanswered (zero:
	// not so far).
	SilentSince time.Time
	// Failed is why it goes back to the garden at its next DISCOVER
	// (HandoverRefused, HandoverUnanswered); "" while its handover goes
	// on.
	Failed string
}

// Handovers returns the devices handed over (a hold, or a failure's
// record, see above) that hold neither an onboarding lease (those are
// OnboardingLeases, with their failure) nor a binding on that access, by
// MAC: between the end of their garden lease, or of their old ISP's
// binding, and their new ISP's ACK or their return to the garden. At most
// limit. ctl status lists them, so that a device in that gap (up to a lease
// time and its DISCOVER backoff) is not missing from every list.
func (p *Proxy) Handovers(limit int) []Handover {
	now := p.now()
	byMAC := map[uint64]Handover{}
	pools := map[uint64]*obPool{}
	for mac, h := range p.ob.liveHolds(now, limit) {
		byMAC[mac] = Handover{MAC: mac, Access: h.pool.c.Name, HeldUntil: h.until}
		pools[mac] = h.pool
	}
	for mac, f := range p.fb.live(now) {
		h, ok := byMAC[mac]
		if !ok {
			if len(byMAC) >= limit {
				continue
			}
			h = Handover{MAC: mac, Access: f.pool.c.Name}
			pools[mac] = f.pool
		} else if pools[mac] != f.pool {
			continue // a record of another circuit's handover
		}
		h.SilentSince, h.Failed = f.silentSince, f.reason
		byMAC[mac] = h
	}
	out := make([]Handover, 0, len(byMAC))
	for mac, h := range byMAC {
		pl := pools[mac]
		if l, ok := p.ob.leaseOf(mac); ok && l.expires.After(now) {
			continue // in the garden: an onboarding lease
		}
		if p.hasLease(subKey{circuitKey{pl.c.Port, pl.c.VLAN}, mac}) {
			continue // bound: done
		}
		reg, ok := p.reg.Lookup(mac)
		if !ok {
			continue // no device record any more: a stranger to the garden
		}
		h.ISP, h.CustomerID = reg.ISP, reg.CustomerID
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b Handover) int { return cmp.Compare(a.MAC, b.MAC) })
	return out
}
