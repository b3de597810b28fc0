package dhcpproxy

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/subscribers"
)

// An ISP's next hop (its router's MAC) for the relayed messages: known
// once the control plane resolved it; within the start-up's first
// seconds a message waits for it (relayLater), later one without it is
// refused as unreachable, or, a renewal, answered from the binding.

// startupWait bounds how long a message waits for an ISP's next hop that
// was never resolved since start, within startupGrace of it; maxWaiting
// bounds the messages waiting.
const (
	startupWait  = 2 * time.Second
	startupGrace = 30 * time.Second
	maxWaiting   = 256
)

// nextHop returns the MAC of isp's router, noting that it was resolved.
func (p *Proxy) nextHop(isp *ISP) (uint64, bool) {
	gw, ok := p.tables.NextHopMAC(isp.Index)
	if ok && !p.resolved[isp.Index].Load() {
		p.resolved[isp.Index].Store(true)
	}
	return gw, ok
}

// resolvedOnce reports whether isp's next hop was ever resolved since start.
func (p *Proxy) resolvedOnce(isp *ISP) bool { return p.resolved[isp.Index].Load() }

// noteResolved marks the ISPs whose next hop the control plane has
// resolved (Run's tick): an ISP none of whose subscribers asked since the
// start is then no longer "starting" once its uplink fails later, and its
// subscribers' messages are refused as unreachable at once (no_next_hop),
// not held 2 s and blamed on ispmux's start-up.
//
// An ISP whose next hop is still not resolved startupGrace after the
// start is logged once: its subscribers' DHCP is refused as unreachable.
func (p *Proxy) noteResolved() {
	late := time.Since(p.born) >= startupGrace
	for _, isp := range p.isps {
		if p.resolved[isp.Index].Load() {
			continue
		}
		if _, ok := p.nextHop(isp); !ok && late && !p.unresolvedSaid[isp.Index].Swap(true) {
			p.log.Warn("dhcp: the next hop of ISP "+isp.Name+" is not resolved "+startupGrace.String()+" after the start: its subscribers' DHCP is refused (ISP unreachable); check its uplink (interface, VLAN, gateway) and the ISP's router",
				"isp", isp.Name)
		}
	}
}

// relayLater waits (at most startupWait) for isp's first next-hop
// resolution, then relays payload (sendAfterIntents: not once the
// subscriber's binding ended meanwhile); if it does not come, the refusal
// says it is ispmux's start-up, not the ISP.
//
// A renewal it gives up on (rn set) is answered from the binding instead,
// as one while the router is unresolved past the start (relay): an
// ispmux restarted while an ISP's uplink is down answers its subscribers'
// renewals after 2 s, not never (a review).
func (p *Proxy) relayLater(pk pendKey, t *txn, sk subKey, gen uint64, isp *ISP, subj subject, mt dhcpv4.MessageType, payload []byte, only netip.Addr, renewal bool,
	rn *renewNote, customer string) {
	fromBinding := func() bool {
		if rn != nil && p.answerFromBinding(rn, customer, p.now()) {
			p.count("renewal_local_no_next_hop")
			return true
		}
		return false
	}
	select {
	case p.waiting <- struct{}{}:
	default:
		p.count("no_next_hop_startup")
		p.tx.abandon(pk, t)
		if fromBinding() {
			return
		}
		p.refuse(subscribers.EventRejected, subj, netip.Addr{}, "ispmux is starting: the next hop to ISP "+isp.Name+
			" is not resolved yet (too many messages waiting for it)")
		return
	}
	// The ISP's time starts when the message is sent, not now.
	p.tx.extend(t, time.Now().Add(startupWait+p.lim.Load().Timeout))
	p.committing.Add(1)
	p.count("waited_for_next_hop")
	go func() {
		defer func() { <-p.waiting; p.committing.Done() }()
		deadline := time.Now().Add(startupWait)
		for time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			if gw, ok := p.nextHop(isp); ok {
				if p.sendAfterIntents(pk, t, sk, gen, isp, gw, mt, payload, only, renewal) != relayHeld {
					return
				}
				// A RELEASE of this subscriber to isp is not on its
				// way yet (the tick is sending it, or its frame
				// could not be queued): the message must not
				// overtake it. Wait for it.
				continue
			}
		}
		p.count("no_next_hop_startup")
		p.tx.abandon(pk, t)
		if fromBinding() {
			return
		}
		p.refuse(subscribers.EventRejected, subj, netip.Addr{}, fmt.Sprintf("ispmux is starting: the next hop to ISP %s "+
			"was not resolved within %s of the request (not the ISP's fault)", isp.Name, startupWait))
	}()
}
