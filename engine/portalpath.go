package engine

import (
	"encoding/binary"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/internal/binding"
)

// The captive portal for bound subscribers. A subscriber bound at an ISP
// (VRF v < binding.GardenVRF) that opens the portal's address on port 80 or
// 443 — its ISP's resolver gave it the portal's public name's address,
// which lies outside every ISP's plan — is sent to the portal's link, not
// its ISP's uplink, with the destination port rewritten to
// binding.PortalPort(v, https): the portal listens there per VRF, so it
// knows the subscriber's ISP from the port and the subscriber from its
// source address in that VRF (addresses may overlap across ISPs; the
// tuple cannot). The portal's answers come back from that port: the
// source port gives the VRF, the VRF's table the subscriber, and the port
// is rewritten back. Stateless: nothing is kept per connection.

// toPortal reports whether the IPv4 packet (of a subscriber bound in VRF
// vrf < GardenVRF) is for the portal. Its first checks inline into the
// caller (every forwarded packet asks; only TCP goes on to toPortalTCP).
// The caller rewrites the destination port (portalRewrite) once it knows
// it forwards the packet: an ICMP error for it (too big, TTL expired)
// quotes it as the subscriber sent it, port 80 or 443, or the
// subscriber's stack matches the error to no connection.
func (p *Processor) toPortal(vrf uint8, pkt *classifier.Packet) bool {
	if pkt.Proto != classifier.ProtoTCP || pkt.Frag || vrf >= binding.GardenVRF {
		return false
	}
	return p.toPortalTCP(pkt)
}

// toPortalTCP is the rest of toPortal, for TCP of a VRF below GardenVRF.
func (p *Processor) toPortalTCP(pkt *classifier.Packet) bool {
	g := p.garden
	return g != nil && pkt.DstIP == g.portal && (pkt.DstPort == portHTTP || pkt.DstPort == portHTTPS)
}

// portalRewrite rewrites the destination port of a packet toPortal said
// yes to, in place, to VRF vrf's portal port.
func portalRewrite(vrf uint8, pkt *classifier.Packet, f []byte) {
	rewritePort(f, pkt.L4, 2, pkt.DstPort, binding.PortalPort(vrf, pkt.DstPort == portHTTPS))
}

// fromPortalVRF reports the VRF an answer from the portal is for (by its
// source port, see toPortal); false for the garden's own traffic.
func fromPortalVRF(pkt *classifier.Packet) (uint8, bool) {
	if pkt.Proto != classifier.ProtoTCP || pkt.Frag {
		return 0, false
	}
	vrf, _, ok := binding.PortalVRF(pkt.SrcPort)
	return vrf, ok
}

// portalAnswer rewrites an answer from the portal to a bound subscriber
// (fromPortalVRF said yes) back to port 80 or 443, in place.
func portalAnswer(pkt *classifier.Packet, f []byte) {
	_, https, _ := binding.PortalVRF(pkt.SrcPort)
	to := uint16(portHTTP)
	if https {
		to = portHTTPS
	}
	rewritePort(f, pkt.L4, 0, pkt.SrcPort, to)
}

// rewritePort replaces the TCP port at f[l4+at:] (at: 0 source, 2
// destination; from → to) and updates the TCP checksum at f[l4+16:]
// incrementally (RFC 1624: HC' = ~(~HC + ~m + m')).
func rewritePort(f []byte, l4, at int, from, to uint16) {
	binary.BigEndian.PutUint16(f[l4+at:], to)
	hc := binary.BigEndian.Uint16(f[l4+16:])
	sum := uint32(^hc) + uint32(^from) + uint32(to)
	sum = sum&0xffff + sum>>16
	sum = sum&0xffff + sum>>16
	binary.BigEndian.PutUint16(f[l4+16:], ^uint16(sum))
}
