package engine

import (
	"encoding/binary"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/fib"
)

// The frames ispmux answers or forwards itself: a routed frame's verdict
// (route), ARP and echo replies, and ICMP errors (time exceeded,
// fragmentation needed), rate limited per worker and port, and a
// subscriber's within its own share first (budgets.go, icmpShare).

// ICMP errors ispmux originates are limited per worker and port (RFC 1812
// §4.3.2.8): a burst, then a steady rate. This is the box's bound on what
// it sends; each subscriber's share of it (icmpSubRate) is checked first.
const (
	icmpErrBurst = 50
	icmpErrRate  = 100 // per second
)

// route sets a Forward verdict that replaces the L2 header [0:l3] with
// dst/src MACs and the egress VLAN, keeping bytes [l3:end), an IPv4 packet
// whose TTL (checked above 1) the worker decrements as it sends it
// (Verdict.DecTTL). The frame itself is left alone: the worker reads it
// right after, and writing into it here (TTL, checksum, header in place)
// cost ~7 ns per packet (BenchmarkPipeline/1K, 15 interleaved runs: 71.0
// vs 64.1 ns median).
func (p *Processor) route(out *datapath.Verdict, egress uint8, dst, src uint64, vlan uint16, l3, end int) {
	n := fib.WriteL2(out.Hdr[:], dst, src, vlan, vlan != 0, etherTypeIPv4)
	forwardIPv4(out, egress, uint8(n), l3, end)
}

// routeL2 is route with the new L2 header already built (an uplink's, see
// fib.Uplink.L2): one array copy instead of the header's fields.
func (p *Processor) routeL2(out *datapath.Verdict, egress uint8, hdr *[18]byte, hdrLen uint8, l3, end int) {
	out.Hdr = *hdr
	forwardIPv4(out, egress, hdrLen, l3, end)
}

// forwardIPv4 completes route's verdict once out.Hdr holds the new L2
// header of hdrLen bytes.
func forwardIPv4(out *datapath.Verdict, egress, hdrLen uint8, l3, end int) {
	out.Action = datapath.Forward
	out.Port = egress
	out.HdrLen = hdrLen
	out.Strip = uint8(l3)
	out.Len = uint16(end)
	out.DecTTL = true
}

// answerARP turns the request in f into our reply, in place, and sends it
// back out of the port it came from.
func (p *Processor) answerARP(in uint8, out *datapath.Verdict, pkt *classifier.Packet, f []byte, mac uint64) {
	n := fib.ARPReply(f[:cap(f)], mac, pkt.TPA, pkt.SHA, pkt.SPA, pkt.VLAN&0xfff, pkt.Tagged)
	out.Action = datapath.Forward
	out.Port = in
	out.Len = uint16(n)
	p.arpN[in]++
	p.touched |= 1 << in
}

// answerEcho turns an ICMP echo request in f (addressed to us) into our
// echo reply, in place, back out of the port it came from. An echo request
// whose ICMP checksum fails is dropped instead, as bad_checksum (and
// reports true: the frame is dealt with). It reports false (and leaves f
// alone) for anything else.
func (p *Processor) answerEcho(in uint8, out *datapath.Verdict, pkt *classifier.Packet, f []byte, mac uint64) bool {
	const icmp, echoRequest = 1, 8
	l4, end := pkt.L4, pkt.L3+pkt.TotalLen
	if pkt.Proto != icmp || pkt.Frag || end-l4 < 8 || end > len(f) || f[l4] != echoRequest || f[l4+1] != 0 ||
		!unicastAddr(pkt.SrcIP) { // no single host: RFC 1122 §3.2.1.3 (g)
		return false
	}
	if !l4ChecksumOK(pkt, f) {
		p.drop(in, out, classifier.ReasonBadChecksum)
		return true
	}
	fib.PutMAC(f[0:6], pkt.Src)
	fib.PutMAC(f[6:12], mac)
	ip := f[pkt.L3 : pkt.L3+pkt.IHL]
	var a [4]byte
	copy(a[:], ip[12:16])
	copy(ip[12:16], ip[16:20])
	copy(ip[16:20], a[:])
	ip[8] = 64
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], ^fib.Checksum(ip, 0))
	// Type 8 → 0: RFC 1624 incremental update, HC' = ~(~HC + ~m + m').
	f[l4] = 0
	hc := binary.BigEndian.Uint16(f[l4+2:])
	sum := uint32(^hc) + uint32(^uint16(echoRequest<<8)) + 0
	sum = sum&0xffff + sum>>16
	sum = sum&0xffff + sum>>16
	binary.BigEndian.PutUint16(f[l4+2:], ^uint16(sum))
	out.Action = datapath.Forward
	out.Port = in
	out.Len = uint16(end)
	p.echoN[in]++
	p.touched |= 1 << in
	return true
}

// l4ChecksumOK reports whether the transport checksum of pkt, an IPv4
// packet in f (its first and only fragment), verifies: ICMP's over the
// message, UDP's (over the UDP length; 0 is none, RFC 768) and TCP's with
// the pseudo-header. ispmux checks it only where it answers a segment
// itself (a ping to its addresses, the garden's DNS and TCP answers), as a
// host's stack does (RFC 1122 §3.2.2, §4.1.3.4, §4.2.2.7); a router
// forwards without looking. A hostile-subscriber trial found a ping with a
// bad checksum answered (with the checksum still bad, updated
// incrementally), and a garden DNS query or TCP segment whose checksum
// failed answered as if sound.
func l4ChecksumOK(pkt *classifier.Packet, f []byte) bool {
	l4, end := pkt.L4, pkt.L3+pkt.TotalLen
	if l4 > end || end > len(f) {
		return false
	}
	seg := f[l4:end]
	switch pkt.Proto {
	case 1: // ICMP: no pseudo-header
		return fib.Checksum(seg, 0) == 0xffff
	case classifier.ProtoUDP:
		if len(seg) < 8 {
			return false
		}
		if seg[6] == 0 && seg[7] == 0 {
			return true
		}
		if ulen := int(binary.BigEndian.Uint16(seg[4:])); ulen >= 8 && ulen <= len(seg) {
			seg = seg[:ulen]
		}
	}
	return fib.L4Checksum(pkt.SrcIP, pkt.DstIP, pkt.Proto, seg) == 0
}

// timeExceeded turns the TTL-expired IPv4 packet in f, already counted as
// dropped, into an ICMP Time Exceeded from src back to its sender, in place
// (RFC 792, RFC 1812 §4.3.2: the original header and 8 bytes of its data).
// It does nothing for a source without an address of ours, an ICMP error
// (no errors about errors), a non-first fragment, or over the rate limit
// (the subscriber's share, sub its MAC table key, then the port's; sub 0:
// a frame from an ISP, the port's alone).
func (p *Processor) timeExceeded(in uint8, out *datapath.Verdict, pkt *classifier.Packet, f []byte, mac uint64, src uint32, sub uint64) {
	p.icmpError(in, out, pkt, f, mac, src, 11, 0, 0, sub) // time exceeded, TTL exceeded in transit
}

// tooBig drops a packet larger than the egress MTU: counted, and answered
// with ICMP "fragmentation needed" naming the MTU when it has DF set (path
// MTU discovery, RFC 1191). ispmux does not fragment. sub is as for
// timeExceeded.
func (p *Processor) tooBig(in uint8, out *datapath.Verdict, pkt *classifier.Packet, f []byte, mac uint64, src uint32, mtu int, sub uint64) {
	p.drop(in, out, classifier.ReasonTooBig)
	if pkt.DF {
		p.icmpError(in, out, pkt, f, mac, src, 3, 4, uint16(mtu), sub)
	}
}

// icmpError turns f into the ICMP error (typ, code; mtu for "fragmentation
// needed") from src about it, in place, back out of the port it came from,
// rate limited per subscriber (sub, its MAC table key; 0 for a frame from
// an ISP) and then per port: a subscriber's error is refused at its own
// share first (icmp_errors_limited{budget="subscriber"}), which spends
// none of the port's budget, then at the port's ({budget="port"}), which
// spends none of the subscriber's share. Never about an ICMP error, a non-first fragment, a
// datagram to a broadcast or multicast address, or one whose source is no
// single host (RFC 1812 §4.3.2.7, RFC 1122 §3.2.2: zero, broadcast,
// multicast, loopback, class E): such sources, spoofed from the Internet,
// would also spend the port's error budget.
func (p *Processor) icmpError(in uint8, out *datapath.Verdict, pkt *classifier.Packet, f []byte, mac uint64, src uint32, typ, code uint8, mtu uint16, sub uint64) {
	const icmp = 1
	if src == 0 || pkt.FragOff != 0 || !unicastAddr(pkt.SrcIP) || !unicastAddr(pkt.DstIP) {
		return
	}
	if pkt.Proto == icmp && pkt.L4 < len(f) {
		switch f[pkt.L4] {
		case 3, 4, 5, 11, 12: // errors
			return
		}
	}
	var b uint64
	if sub != 0 {
		var ok bool
		if b, ok = p.icmpShare(sub); !ok {
			p.icmpSubLimN[in]++
			p.touched |= 1 << in
			return
		}
	}
	if !takeToken(&p.icmpTokens[in], &p.icmpLast[in], icmpErrRate, icmpErrBurst) {
		p.icmpPortLimN[in]++
		p.touched |= 1 << in
		return
	}
	if sub != 0 {
		p.icmpSubTokens[b]--
	}
	quote := min(pkt.IHL+8, pkt.TotalLen)
	l3 := pkt.L3
	if l3+28+quote > cap(f) {
		return
	}
	f = f[:cap(f)]
	copy(f[l3+28:l3+28+quote], f[l3:l3+quote]) // the quote moves behind our headers
	fib.PutMAC(f[0:6], pkt.Src)
	fib.PutMAC(f[6:12], mac)
	ip := f[l3 : l3+20]
	clear(ip)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(28+quote))
	ip[8], ip[9] = 64, icmp
	binary.BigEndian.PutUint32(ip[12:], src)
	binary.BigEndian.PutUint32(ip[16:], pkt.SrcIP)
	binary.BigEndian.PutUint16(ip[10:], ^fib.Checksum(ip, 0))
	ic := f[l3+20 : l3+28+quote]
	clear(ic[:8])
	ic[0], ic[1] = typ, code
	binary.BigEndian.PutUint16(ic[6:], mtu)
	binary.BigEndian.PutUint16(ic[2:], ^fib.Checksum(ic, 0))
	out.Action = datapath.Forward
	out.Port = in
	out.HdrLen, out.Strip, out.DecTTL = 0, 0, false
	out.Len = uint16(l3 + 28 + quote)
	p.icmpN[in]++
	p.touched |= 1 << in
}
