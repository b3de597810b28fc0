package engine

import (
	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/internal/binding"
)

// The general way for frames from subscribers (access VLANs): DHCP to the
// proxy within its budgets (budgets.go), ARP answered or punted, and IPv4
// routed to the subscriber's ISP after the anti-spoofing checks, or handed
// to the walled garden; the lane (lane.go) decides the common frames
// before this.

// ipOptions says why the IPv4 datagram pkt (frame f) is not routed for
// its header options (ReasonNone: it is): a loose or strict source route
// (LSRR 131, SSRR 137), which RFC 7126 §4.3 and §4.4 have routers drop by
// default (a sender choosing the path through an ISP's network), or
// options that do not parse (ReasonIPOptions too: a router parsing them
// would refuse the datagram). Only a header longer than 20 bytes has any;
// the lane and the XDP fast path take 20-byte headers only.
func ipOptions(pkt *classifier.Packet, f []byte) classifier.Reason {
	if pkt.IHL <= 20 {
		return classifier.ReasonNone
	}
	o := f[pkt.L3+20 : pkt.L3+pkt.IHL]
	for i := 0; i < len(o); {
		switch o[i] {
		case 0: // end of the option list
			return classifier.ReasonNone
		case 1: // no operation
			i++
			continue
		case 131, 137:
			return classifier.ReasonIPOptions
		}
		if i+1 >= len(o) || o[i+1] < 2 || i+int(o[i+1]) > len(o) {
			return classifier.ReasonIPOptions
		}
		i += int(o[i+1])
	}
	return classifier.ReasonNone
}

// fromSubscriber handles a decoded frame received on an access VLAN. It
// reports whether it routed the frame to an uplink (Process counts those).
func (p *Processor) fromSubscriber(in uint8, pt *port, i int, f []byte, out *datapath.Verdict) (routed bool) {
	pkt := &p.pkts[i]
	if pkt.Src == pt.mac {
		// Our own MAC as a subscriber's source: forged (it was counted
		// unknown_mac: a security trial).
		p.drop(in, out, classifier.ReasonBadSourceMAC)
		return
	}
	sub := classifier.UnpackSub(p.vals[i])
	bound := p.macKeys[i] != 0 && p.found[i] && sub.Flags&classifier.FlagBound != 0
	switch pkt.Kind {
	case classifier.KindIPv4:
		if classifier.IsDHCP(pkt) && pkt.DstPort == 67 {
			// A MAC's own budget first (an unregistered one's messages
			// cost unregCost: one device cannot spend the port's sample
			// of unregistered MACs, which new devices onboard through),
			// then its circuit's share of the port's sample (made-up
			// MACs on one circuit cannot spend the other circuits'),
			// then the port's sample; the MAC's budget is spent only
			// for a message punted (a flood of made-up MACs the sample
			// drops spends nobody's buckets).
			registered := bound || !p.s.admitOn.Load() || p.isAdmitted(pkt.Src)
			b, cost, ok := p.dhcpBudget(classifier.Key(in, pkt.VLAN&0xfff, pkt.Src), !registered)
			if !ok {
				p.dropFrom(in, out, classifier.ReasonDHCPFlood, pkt.Src)
				return
			}
			if !registered {
				// A port of one circuit: no other circuit to keep
				// the sample for (an N:1 access onboards all its new
				// devices through it).
				if pt.shared {
					c, ok := p.unregCircuit(in, pkt.VLAN)
					if !ok {
						p.dropFrom(in, out, classifier.ReasonUnregisteredDHCPCircuit, pkt.Src)
						return
					}
					p.unregCTokens[c]--
				}
				if !takeToken(&p.unregTokens[in], &p.unregLast[in], unregRate, unregBurst) {
					p.drop(in, out, classifier.ReasonUnregisteredDHCP)
					return
				}
			}
			p.dhcpTokens[b] -= cost
			p.punt(in, out, pkt, f)
			return
		}
		if pkt.Dst != pt.mac {
			if pkt.Dst&(1<<40) != 0 { // group bit: broadcast or multicast
				p.dropFrom(in, out, classifier.ReasonL2Broadcast, pkt.Src)
			} else {
				p.dropFrom(in, out, classifier.ReasonSubscriberToSubscriber, pkt.Src)
			}
			return
		}
		if !bound {
			p.dropFrom(in, out, classifier.ReasonUnknownMAC, pkt.Src)
			return
		}
		if pkt.SrcIP != sub.IP {
			p.dropFrom(in, out, classifier.ReasonSpoofedSource, pkt.Src)
			return
		}
		if sub.ISP == binding.GardenVRF && !p.gardenPass(in, pt, out, pkt, f) {
			return // walled garden: answered in place or dropped (garden.go)
		}
		if classifier.TouchesDHCPPort(pkt) {
			// DHCP the proxy does not take (above: a client's to port
			// 67): a subscriber talking to its ISP's DHCP server
			// directly, with a giaddr and Option 82 of its own
			// making, or acting as a server or relay. The ISP trusts
			// Option 82 as ispmux's word (docs/ISP-SERVERS.md).
			p.dropFrom(in, out, classifier.ReasonDHCPBypass, pkt.Src)
			return
		}
		if r := ipOptions(pkt, f); r != classifier.ReasonNone {
			p.dropFrom(in, out, r, pkt.Src)
			return
		}
		if !unicastAddr(pkt.DstIP) {
			// The limited broadcast, multicast (link-local 224.0.0/24
			// included) and the like: a router does not forward them
			// (RFC 1812 §5.3.5.1, RFC 5771 §4), and ispmux routes
			// no multicast.
			p.dropFrom(in, out, classifier.ReasonNotUnicast, pkt.Src)
			return
		}
		if a := pt.addr[pkt.VLAN&0xfff]; a != 0 && pkt.DstIP == a {
			// To the gateway itself: answer a ping, nothing else.
			if !p.answerEcho(in, out, pkt, f, pt.mac) {
				p.drop(in, out, classifier.ReasonNotForUs)
			}
			return
		}
		vrf := sub.ISP
		portal := p.toPortal(vrf, pkt)
		if portal {
			vrf = binding.GardenVRF // the portal, not the ISP (portalpath.go)
		}
		up := p.up.Get(vrf)
		if up == nil || !up.Configured || !up.Resolved {
			p.drop(in, out, classifier.ReasonNoNextHop)
			return
		}
		if mtu := int(p.s.mtu[up.Port%datapath.MaxPorts].Load()); mtu != 0 && pkt.TotalLen > mtu {
			p.tooBig(in, out, pkt, f, pt.mac, pt.addr[pkt.VLAN&0xfff], mtu, p.macKeys[i])
			return
		}
		if pkt.TTL <= 1 { // the worker decrements it (route)
			p.drop(in, out, classifier.ReasonTTLExpired)
			p.timeExceeded(in, out, pkt, f, pt.mac, pt.addr[pkt.VLAN&0xfff], p.macKeys[i])
			return
		}
		if portal {
			portalRewrite(sub.ISP, pkt, f)
		}
		p.routeL2(out, up.Port, &up.L2, up.L2Len, pkt.L3, pkt.L3+pkt.TotalLen)
		return true

	case classifier.KindARP:
		if !bound {
			// A registered subscriber without a binding (ispmux lost
			// its state, or a lease is being renewed after a reload)
			// must reach its gateway to unicast its RENEW: its
			// request for the gateway's address is answered. So is
			// an unregistered MAC's, within a sample per port
			// (unknownARPRate): a device its ISP deleted still holds
			// the address of the binding ispmux revoked, and its
			// unicast RENEW, which the proxy NAKs (dhcpproxy
			// revoked.go), needs our MAC; unanswered, the client
			// kept the address until its REBIND at 7/8 of its
			// lease (an e2e test).
			gw := pt.addr[pkt.VLAN&0xfff]
			if pkt.ARPOp == arpRequest && gw != 0 && pkt.TPA == gw && pkt.SHA == pkt.Src &&
				(p.s.admitOn.Load() && p.isAdmitted(pkt.Src) ||
					takeToken(&p.unknownARPTokens[in], &p.unknownARPLast[in], unknownARPRate, unknownARPBurst)) {
				p.answerARP(in, out, pkt, f, pt.mac)
				return
			}
			p.dropFrom(in, out, classifier.ReasonUnknownMAC, pkt.Src)
			return
		}
		if pkt.SHA != pkt.Src {
			p.dropFrom(in, out, classifier.ReasonSpoofedSource, pkt.Src)
			return
		}
		switch {
		case pkt.ARPOp == arpReply && pkt.Dst == pt.mac:
			p.probeReply(in, pt, out, pkt, f, sub.IP, p.macKeys[i])
		case pkt.ARPOp != arpRequest:
			p.drop(in, out, classifier.ReasonARPIgnored)
		case pkt.SPA == 0 || pkt.SPA == pkt.TPA || pkt.TPA == sub.IP:
			// Address probes and announcements (RFC 5227) and requests
			// for the subscriber's own address get no answer.
			p.drop(in, out, classifier.ReasonARPIgnored)
		case pkt.SPA != sub.IP:
			// From another address than its binding's: its request for
			// the gateway (the DHCP server) is answered all the same,
			// so that it can unicast the RENEW that puts it right (a
			// NAK, then a DORA): a client whose address changed while
			// ispmux's binding did not (a store restored from an older
			// backup) was otherwise cut off until that binding expired
			// (a new-user trial). Its IP traffic from that address is
			// still spoofed_source; only our MAC is told.
			if gw := pt.addr[pkt.VLAN&0xfff]; gw != 0 && pkt.TPA == gw {
				p.answerARP(in, out, pkt, f, pt.mac)
				return
			}
			p.dropFrom(in, out, classifier.ReasonSpoofedSource, pkt.Src)
		default:
			p.answerARP(in, out, pkt, f, pt.mac)
		}

	default:
		p.drop(in, out, classifier.ReasonUnsupportedEtherType)
	}
	return false
}

// probeReply punts a bound subscriber's ARP reply to our MAC (in the
// ARP header too) for its bound address ip, to its circuit's gateway
// address: the answer to the DHCP proxy's probe of a binding another
// circuit claims (dhcpproxy/probes.go). Within the subscriber's budget
// (arpPuntRate); any other reply is dropped, as ispmux asks subscribers
// nothing else.
func (p *Processor) probeReply(in uint8, pt *port, out *datapath.Verdict, pkt *classifier.Packet, f []byte, ip uint32, key uint64) {
	gw := pt.addr[pkt.VLAN&0xfff]
	if pkt.THA != pt.mac || gw == 0 || pkt.TPA != gw || pkt.SPA != ip {
		p.drop(in, out, classifier.ReasonARPIgnored)
		return
	}
	i := p.arpSlot(key)
	if !takeToken(&p.arpTokens[i], &p.arpLast[i], arpPuntRate, arpPuntBurst) {
		p.drop(in, out, classifier.ReasonARPIgnored)
		return
	}
	p.punt(in, out, pkt, f)
}
