package engine

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/fib"
)

// Garden configures the walled garden: what a subscriber bound in
// binding.GardenVRF (an onboarding lease) may reach. The garden's uplink is
// ISP binding.GardenVRF's, configured like any ISP's (Control.ConfigureISP):
// the link to the captive portal.
//
// Such a subscriber reaches the access gateway as any subscriber does (its
// pings are answered) and, beyond it, only:
//
//   - DNS: UDP to port 53 of any address is answered by the datapath (see
//     dnsRespond): names resolve to PortalAddr;
//   - the portal: TCP to PortalAddr port 80 or 443 goes to the garden's
//     uplink like any upstream traffic;
//   - HTTPS and any other TCP port elsewhere (but 80): TCP to any other
//     address is answered with a TCP reset from that address (a fast
//     failure, no certificate error; an https:// URL by name resolves to
//     the portal instead, whose certificate does not name it:
//     docs/ARCHITECTURE.md);
//   - HTTP elsewhere: TCP to port 80 of any other address is answered, by
//     the datapath and without state, with a redirect to the portal
//     (gardenhttp.go).
//
// Everything else, fragments included, is dropped as walled_garden.
type Garden struct {
	// PortalAddr is the captive portal's IPv4 address (host order, as
	// IP4 returns it): DNS answers point to it.
	PortalAddr uint32
	// Names, when not empty, are the only names DNS answers for
	// ("portal.example.net", case-insensitive, a trailing dot allowed);
	// other names get NXDOMAIN. Empty: every name resolves to the portal.
	Names []string
	// Routers are the addresses the onboarding leases give as the router
	// (each pool's first address; host order): a ping to one is answered
	// from it, as the access gateway's is, anything else to it is
	// not_for_us. (Before, the router a garden lease gave did not answer
	// ping while the access gateway did: found by a new-user trial.)
	Routers []uint32
}

// garden is a Garden as the workers read it: names in lower-case wire
// format.
type garden struct {
	portal  uint32
	names   [][]byte
	routers []uint32
	// redirect is the answer to HTTP elsewhere (gardenhttp.go), seed
	// the key of its connections' sequence numbers (httpISN).
	redirect []byte
	seed     uint64
}

// isRouter reports whether a is one of the garden's routers.
func (g *garden) isRouter(a uint32) bool {
	for _, r := range g.routers {
		if r == a {
			return true
		}
	}
	return false
}

// SetGarden publishes the walled garden's configuration; nil removes it
// (every frame of a walled-garden subscriber past the gateway is then
// dropped as walled_garden). It returns an error, and changes nothing, for
// a zero PortalAddr or a name that is not a valid DNS name. Safe from any
// goroutine; workers see it from their next batch.
func (s *State) SetGarden(g *Garden) error {
	s.gardenMu.Lock()
	defer s.gardenMu.Unlock()
	if g == nil {
		s.garden.Store(nil)
		if o := s.offload(); o != nil {
			o.SetPortal(0)
		}
		return nil
	}
	if g.PortalAddr == 0 {
		return fmt.Errorf("engine: garden: no portal address")
	}
	ng := &garden{portal: g.PortalAddr, routers: slices.Clone(g.Routers), redirect: gardenRedirect(g.PortalAddr), seed: rand.Uint64()}
	for _, n := range g.Names {
		w, err := gardenName(n)
		if err != nil {
			return fmt.Errorf("engine: garden: name %q: %w", n, err)
		}
		ng.names = append(ng.names, w)
	}
	s.garden.Store(ng)
	if o := s.offload(); o != nil {
		o.SetPortal(ng.portal)
	}
	return nil
}

const (
	portDNS   = 53
	portHTTP  = 80
	portHTTPS = 443

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// gardenPass applies the walled garden to an IPv4 frame of a bound
// subscriber of binding.GardenVRF (its MAC, source address and our MAC
// checked). It reports whether the frame goes on along the normal path:
// to the access gateway (a ping answered, anything else not_for_us) or to
// the portal (forwarded to the garden's uplink). Otherwise it has set the
// verdict: a DNS answer or a TCP reset sent back, a bad_checksum drop (a
// DNS query or TCP segment it would have answered whose checksum fails), or
// a walled_garden drop.
func (p *Processor) gardenPass(in uint8, pt *port, out *datapath.Verdict, pkt *classifier.Packet, f []byte) bool {
	g := p.garden
	if g != nil && pkt.Proto == classifier.ProtoUDP && pkt.DstPort == portDNS && !pkt.Frag {
		// Any address, the gateway's included: whatever server the
		// client was given, it gets the portal.
		if !p.answerDNS(in, out, pkt, f, pt.mac, g) {
			p.dropFrom(in, out, classifier.ReasonWalledGarden, pkt.Src)
		}
		return false
	}
	if gw := pt.addr[pkt.VLAN&0xfff]; gw != 0 && pkt.DstIP == gw {
		return true
	}
	if g != nil && g.isRouter(pkt.DstIP) {
		// The router the garden lease gave: a ping answered, as the
		// gateway's (the reply comes from the address pinged).
		if !p.answerEcho(in, out, pkt, f, pt.mac) {
			p.drop(in, out, classifier.ReasonNotForUs)
		}
		return false
	}
	switch {
	case g == nil || pkt.Proto != classifier.ProtoTCP || pkt.Frag:
	case pkt.DstIP == g.portal:
		if pkt.DstPort == portHTTP || pkt.DstPort == portHTTPS {
			return true
		}
	case pkt.DstPort == portHTTP:
		if p.answerHTTP(in, out, pkt, f, pt.mac, g) {
			return false
		}
	default:
		// HTTPS, and any other TCP port, elsewhere: a reset at once
		// (another port than 443 was dropped, and an app waited for
		// its connection to time out: a trial).
		if p.answerRST(in, out, pkt, f, pt.mac) {
			return false
		}
	}
	p.dropFrom(in, out, classifier.ReasonWalledGarden, pkt.Src)
	return false
}

// unicastAddr reports whether a is an address we may answer from: not
// 0.0.0.0/8, loopback, multicast, reserved or broadcast.
func unicastAddr(a uint32) bool {
	return a>>24 != 0 && a>>24 != 127 && a < 0xe0000000
}

// answerDNS turns the DNS query in f (UDP, first and only fragment) into
// the garden's answer from the address it was sent to, in place, back out
// of the port it came from. It reports false, leaving f alone, for a query
// it does not answer; a datagram whose UDP checksum fails is dropped here,
// bad_checksum (reporting true: dealt with).
func (p *Processor) answerDNS(in uint8, out *datapath.Verdict, pkt *classifier.Packet, f []byte, mac uint64, g *garden) bool {
	l3, l4, end := pkt.L3, pkt.L4, pkt.L3+pkt.TotalLen
	ulen := int(binary.BigEndian.Uint16(f[l4+4:]))
	if ulen < 8 || l4+ulen > end || !unicastAddr(pkt.DstIP) {
		return false
	}
	if !l4ChecksumOK(pkt, f) {
		p.drop(in, out, classifier.ReasonBadChecksum)
		return true
	}
	b := f[:cap(f)]
	n := dnsRespond(b[l4+8:], ulen-8, g.portal, g.names)
	if n == 0 {
		return false
	}
	// A fresh 20-byte IP header: the query's options are not echoed.
	u := l3 + 20
	if l4 != u {
		copy(b[u+8:], b[l4+8:l4+8+n])
	}
	ulen = 8 + n
	putIPv4(b[l3:u], pkt.DstIP, pkt.SrcIP, classifier.ProtoUDP, 20+ulen)
	udp := b[u : u+ulen]
	binary.BigEndian.PutUint16(udp[0:], portDNS)
	binary.BigEndian.PutUint16(udp[2:], pkt.SrcPort)
	binary.BigEndian.PutUint16(udp[4:], uint16(ulen))
	binary.BigEndian.PutUint16(udp[6:], 0)
	c := fib.L4Checksum(pkt.DstIP, pkt.SrcIP, classifier.ProtoUDP, udp)
	if c == 0 {
		c = 0xffff // 0 would mean "no checksum"
	}
	binary.BigEndian.PutUint16(udp[6:], c)
	p.answer(in, out, pkt, b, mac, u+ulen)
	p.dnsN[in]++
	return true
}

// answerRST answers the TCP segment in f (first and only fragment) with a
// reset from the address it was sent to (RFC 9293 §3.10.7.1), in place,
// back out of the port it came from. It reports false, leaving f alone, for
// a reset (never answered) or a malformed header; a segment whose checksum
// fails is dropped here, bad_checksum (reporting true: dealt with).
func (p *Processor) answerRST(in uint8, out *datapath.Verdict, pkt *classifier.Packet, f []byte, mac uint64) bool {
	seg, doff, flags, ok := gardenSegment(pkt, f)
	if !ok {
		return false
	}
	if !l4ChecksumOK(pkt, f) {
		p.drop(in, out, classifier.ReasonBadChecksum)
		return true
	}
	var seq, ack uint32
	rflags := byte(tcpRST)
	if flags&tcpACK != 0 {
		seq = binary.BigEndian.Uint32(seg[8:])
	} else {
		ack = binary.BigEndian.Uint32(seg[4:]) + uint32(len(seg)-doff)
		if flags&tcpSYN != 0 {
			ack++
		}
		if flags&tcpFIN != 0 {
			ack++
		}
		rflags |= tcpACK
	}
	// 40 bytes from L3: the query's IP and TCP headers held as many.
	n := putTCPAnswer(f[:cap(f)], pkt, seq, ack, rflags, 0, nil, nil)
	p.answer(in, out, pkt, f[:cap(f)], mac, n)
	p.rstN[in]++
	return true
}

// gardenSegment returns the TCP segment of pkt in f (first and only
// fragment), its data offset and its flags, and whether the garden may
// answer it (answerRST, answerHTTP): a well-formed header, not a reset,
// sent to an address it may answer from.
func gardenSegment(pkt *classifier.Packet, f []byte) (seg []byte, doff int, flags byte, ok bool) {
	seg = f[pkt.L4 : pkt.L3+pkt.TotalLen] // the classifier checked 20 bytes at least
	doff = int(seg[12]>>4) * 4
	flags = seg[13]
	return seg, doff, flags, doff >= 20 && doff <= len(seg) && flags&tcpRST == 0 && unicastAddr(pkt.DstIP)
}

// putTCPAnswer writes into b, from pkt's L3 offset on, the answer to pkt's
// TCP segment: a 20-byte IPv4 header and a segment from its destination
// to its source with seq, ack, flags, window, the options opts (a multiple
// of 4 bytes) and payload, checksums computed. It returns the frame's
// length, or 0 (nothing written) if b cannot hold it.
func putTCPAnswer(b []byte, pkt *classifier.Packet, seq, ack uint32, flags byte, window uint16, opts, payload []byte) int {
	th := 20 + len(opts)
	u := pkt.L3 + 20
	end := u + th + len(payload)
	if end > len(b) {
		return 0
	}
	putIPv4(b[pkt.L3:u], pkt.DstIP, pkt.SrcIP, classifier.ProtoTCP, end-pkt.L3)
	tcp := b[u:end]
	binary.BigEndian.PutUint16(tcp[0:], pkt.DstPort)
	binary.BigEndian.PutUint16(tcp[2:], pkt.SrcPort)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], ack)
	tcp[12], tcp[13] = byte(th/4)<<4, flags
	binary.BigEndian.PutUint16(tcp[14:], window)
	clear(tcp[16:20]) // checksum, urgent pointer
	copy(tcp[20:], opts)
	copy(tcp[th:], payload)
	binary.BigEndian.PutUint16(tcp[16:], fib.L4Checksum(pkt.DstIP, pkt.SrcIP, classifier.ProtoTCP, tcp))
	return end
}

// answer sends the first n bytes of b, an answer built in place, back to
// the sender out of port in: the L2 header stays (its VLAN tag too) with
// the MACs swapped. Short frames are padded with zeros to
// fib.MinFrameLen.
func (p *Processor) answer(in uint8, out *datapath.Verdict, pkt *classifier.Packet, b []byte, mac uint64, n int) {
	fib.PutMAC(b[0:6], pkt.Src)
	fib.PutMAC(b[6:12], mac)
	if n < fib.MinFrameLen && len(b) >= fib.MinFrameLen {
		clear(b[n:fib.MinFrameLen])
		n = fib.MinFrameLen
	}
	out.Action = datapath.Forward
	out.Port = in
	out.HdrLen, out.Strip, out.DecTTL = 0, 0, false
	out.Len = uint16(n)
	p.touched |= 1 << in
}

// putIPv4 writes a 20-byte IPv4 header from src to dst: DF, ID 0 (RFC
// 6864), TTL 64, checksum computed.
func putIPv4(ip []byte, src, dst uint32, proto uint8, total int) {
	_ = ip[19]
	ip[0], ip[1] = 0x45, 0
	binary.BigEndian.PutUint16(ip[2:], uint16(total))
	binary.BigEndian.PutUint32(ip[4:], 0x4000) // ID 0, DF
	ip[8], ip[9] = 64, proto
	binary.BigEndian.PutUint16(ip[10:], 0)
	binary.BigEndian.PutUint32(ip[12:], src)
	binary.BigEndian.PutUint32(ip[16:], dst)
	binary.BigEndian.PutUint16(ip[10:], ^fib.Checksum(ip[:20], 0))
}
