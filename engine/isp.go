package engine

import (
	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
)

// The general way for frames from ISPs (uplink VLANs): IPv4 routed to the
// bound subscriber its VRF and destination name, DHCP replies to our
// giaddr punted to the proxy, pings of our uplink address answered, proxy
// ARP for the ISP's bound subscribers, the portal's answers (the garden's
// uplink) sent back to their subscriber; the lane (lane.go) decides the
// common frames before this.

// fromISP handles a decoded frame received on the uplink VLAN of ISP isp.
// It reports whether it routed the frame to a subscriber (Process counts
// those).
func (p *Processor) fromISP(in uint8, pt *port, i int, f []byte, out *datapath.Verdict) (routed bool) {
	pkt := &p.pkts[i]
	isp := pt.isp[pkt.VLAN&0xfff]
	d, known := fib.UnpackDest(p.fvals[i]), p.ffound[i] && p.fibKeys[i] != 0
	up := p.up.Get(isp)
	if up == nil || !up.Configured {
		p.drop(in, out, classifier.ReasonUnknownInterface)
		return
	}
	switch pkt.Kind {
	case classifier.KindIPv4:
		if pkt.Dst != pt.mac {
			if pkt.Dst&(1<<40) != 0 && classifier.IsDHCP(pkt) {
				p.punt(in, out, pkt, f)
			} else {
				p.drop(in, out, classifier.ReasonNotForUs)
			}
			return
		}
		if pkt.DstIP == up.Addr {
			switch {
			case classifier.IsDHCP(pkt):
				p.punt(in, out, pkt, f) // relay replies to our giaddr
			case pkt.Proto == 1 && pkt.FragOff == 0 && pkt.L4 < len(f) && f[pkt.L4] == 3:
				// Destination unreachable about what we sent (a DHCP
				// server down): the proxy says so in its events.
				p.punt(in, out, pkt, f)
			case !subnetBroadcast(up, pkt.SrcIP) && p.answerEcho(in, out, pkt, f, pt.mac):
				// The ISP pinged our uplink address.
			default:
				p.drop(in, out, classifier.ReasonNotForUs)
			}
			return
		}
		if !known {
			p.drop(in, out, classifier.ReasonNoRoute)
			return
		}
		if pkt.Proto == classifier.ProtoUDP && pkt.SrcPort == classifier.PortDHCPServer &&
			pkt.DstPort == classifier.PortDHCPClient && pkt.FragOff == 0 {
			// A DHCP server answering a subscriber directly (the ACK to
			// an INFORM goes to ciaddr): the proxy answers as the ISP,
			// so the subscriber never sees the ISP's server.
			p.punt(in, out, pkt, f)
			return
		}
		if classifier.TouchesDHCPPort(pkt) {
			// Any other DHCP to a subscriber's address (a server's
			// answer to a relay the subscriber played, 67 → 67): the
			// subscriber gets DHCP from the proxy only.
			p.drop(in, out, classifier.ReasonDHCPBypass)
			return
		}
		if r := ipOptions(pkt, f); r != classifier.ReasonNone {
			p.drop(in, out, r)
			return
		}
		if mtu := int(p.s.mtu[d.Port%datapath.MaxPorts].Load()); mtu != 0 && pkt.TotalLen > mtu {
			p.tooBig(in, out, pkt, f, pt.mac, up.Addr, mtu, 0)
			return
		}
		if pkt.TTL <= 1 { // the worker decrements it (route)
			p.drop(in, out, classifier.ReasonTTLExpired)
			p.timeExceeded(in, out, pkt, f, pt.mac, up.Addr, 0)
			return
		}
		if isp == binding.GardenVRF {
			if _, ok := fromPortalVRF(pkt); ok {
				portalAnswer(pkt, f) // back to port 80/443 (portalpath.go)
			}
		}
		p.route(out, d.Port, d.MAC, p.s.ports[d.Port%datapath.MaxPorts].mac, d.VLAN, pkt.L3, pkt.L3+pkt.TotalLen)
		return true

	case classifier.KindARP:
		if pkt.SPA == up.Gateway && pkt.SPA != 0 {
			// The ISP router: the resolver learns (or refreshes) its
			// MAC from its replies and its requests; a request is also
			// answered below.
			if pkt.ARPOp != arpRequest {
				p.punt(in, out, pkt, f)
				return
			}
			p.puntCopy(in, pkt, f) // best effort: the answer matters more
		}
		if pkt.ARPOp != arpRequest {
			p.drop(in, out, classifier.ReasonARPIgnored)
			return
		}
		if pkt.TPA == up.Addr {
			p.answerARP(in, out, pkt, f, pt.mac)
			return
		}
		if known && pkt.SPA != pkt.TPA {
			// Proxy ARP for this ISP's bound subscribers: the ISP needs
			// no static route to reach them.
			p.answerARP(in, out, pkt, f, pt.mac)
			return
		}
		p.drop(in, out, classifier.ReasonARPIgnored)

	default:
		p.drop(in, out, classifier.ReasonUnsupportedEtherType)
	}
	return false
}

// subnetBroadcast reports whether a is the directed broadcast address of
// up's subnet (no single host: RFC 1122 §3.2.1.3 (g)).
func subnetBroadcast(up *fib.Uplink, a uint32) bool {
	if up.PrefixLen <= 0 || up.PrefixLen >= 31 {
		return false
	}
	host := uint32(1)<<(32-up.PrefixLen) - 1
	return a&^host == up.Addr&^host && a&host == host
}
