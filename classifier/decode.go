package classifier

import "encoding/binary"

// EtherTypes and IP protocols the classifier knows.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeVLAN = 0x8100 // 802.1Q C-tag
	EtherTypeQinQ = 0x88a8 // 802.1ad S-tag
	EtherTypeIPv6 = 0x86dd

	ProtoTCP = 6
	ProtoUDP = 17

	PortDHCPServer = 67
	PortDHCPClient = 68
)

// Header sizes.
const (
	ethHeaderLen  = 14
	vlanTagLen    = 4
	arpLen        = 28 // Ethernet/IPv4 ARP
	ipv4MinLen    = 20
	udpHeaderLen  = 8
	tcpHeaderLen  = 20
	ipv4DontFrag  = 0x4000
	ipv4MoreFrags = 0x2000
	ipv4OffMask   = 0x1fff
)

// Kind is the L3 payload kind of a decoded frame.
type Kind uint8

// Kinds.
const (
	KindOther Kind = iota // not decoded past Ethernet (only with a drop reason)
	KindARP               // Ethernet/IPv4 ARP
	KindIPv4              // IPv4
)

// Packet holds the decoded headers of one frame. A worker owns one Packet and
// reuses it for every frame; Decode overwrites all of it. Offsets index the
// frame passed to Decode, and the struct keeps no reference to it.
type Packet struct {
	Dst, Src  uint64 // 48-bit MACs as big-endian integers (low 48 bits)
	Tagged    bool   // one 802.1Q tag with a VID other than 0
	VLAN      uint16 // VID of the tag; 0 if untagged or priority-tagged
	EtherType uint16 // inner EtherType (after the tag, if any)
	L3        int    // offset of the L3 header (14 or 18)
	Kind      Kind

	// IPv4 (Kind == KindIPv4).
	SrcIP, DstIP uint32
	TTL, Proto   uint8
	IHL          int    // header length in bytes (20..60)
	TotalLen     int    // IPv4 total length; L3+TotalLen <= len(frame), the rest is padding
	Frag         bool   // part of a fragmented datagram: MF set or offset != 0
	DF           bool   // don't fragment
	FragOff      uint16 // fragment offset in bytes (the header field × 8)
	L4           int    // offset of the L4 header: L3+IHL
	SrcPort      uint16 // UDP/TCP ports, when FragOff == 0 and Proto is UDP or TCP
	DstPort      uint16

	// ARP (Kind == KindARP; only Ethernet/IPv4 ARP is accepted).
	ARPOp    uint16
	SHA, THA uint64 // sender and target hardware addresses
	SPA, TPA uint32 // sender and target protocol addresses
}

// MAC reads a 6-byte MAC address as a big-endian integer. b must hold at
// least 6 bytes.
func MAC(b []byte) uint64 {
	_ = b[5]
	return uint64(binary.BigEndian.Uint16(b))<<32 | uint64(binary.BigEndian.Uint32(b[2:]))
}

// IsMulticastMAC reports whether m has the group bit set (broadcast included).
func IsMulticastMAC(m uint64) bool { return m&(1<<40) != 0 }

// BroadcastMAC is ff:ff:ff:ff:ff:ff.
const BroadcastMAC = 1<<48 - 1

// Decode parses the frame b into p and returns ReasonNone, or the reason to
// drop the frame. It never allocates and never panics, whatever b holds.
//
// On ReasonNone the fields of p's Kind are set and every offset in p is
// within b (L3+TotalLen <= len(b) for IPv4; ports are inside the datagram).
// On a drop only the fields decoded before the failing check are meaningful,
// Kind is KindOther and the rest is zero.
//
// Checks, in order: at least the 14-byte Ethernet header (Malformed); source
// MAC neither multicast nor zero (BadSourceMAC); at most one 802.1Q tag (a
// second 802.1Q or 802.1ad tag is UnsupportedEtherType); then by EtherType:
//
//   - ARP: 28 bytes with htype 1, ptype 0x0800, hlen 6, plen 4 (Malformed);
//   - IPv4: version 4, IHL >= 5, header within b, IHL <= total length <= bytes
//     after the Ethernet header (Malformed); header checksum (BadChecksum);
//     in a datagram's first fragment, a UDP or TCP header long enough to hold
//     the ports (8 or 20 bytes within the total length, Malformed);
//   - anything else, IPv6 included: UnsupportedEtherType.
func (p *Packet) Decode(b []byte) Reason {
	*p = Packet{}
	if len(b) < ethHeaderLen {
		return ReasonMalformed
	}
	p.Dst = MAC(b[0:6])
	p.Src = MAC(b[6:12])
	if p.Src == 0 || IsMulticastMAC(p.Src) {
		return ReasonBadSourceMAC
	}
	et := binary.BigEndian.Uint16(b[12:14])
	off := ethHeaderLen
	if et == EtherTypeVLAN {
		if len(b) < ethHeaderLen+vlanTagLen {
			return ReasonMalformed
		}
		p.VLAN = binary.BigEndian.Uint16(b[14:16]) & 0x0fff
		p.Tagged = p.VLAN != 0 // VID 0: priority tag, same as untagged
		et = binary.BigEndian.Uint16(b[16:18])
		off += vlanTagLen
		if et == EtherTypeVLAN || et == EtherTypeQinQ {
			return ReasonUnsupportedEtherType
		}
	}
	p.EtherType = et
	p.L3 = off
	switch et {
	case EtherTypeIPv4:
		return p.decodeIPv4(b[off:])
	case EtherTypeARP:
		return p.decodeARP(b[off:])
	}
	return ReasonUnsupportedEtherType
}

// decodeARP decodes an Ethernet/IPv4 ARP packet; b starts at the ARP header.
func (p *Packet) decodeARP(b []byte) Reason {
	if len(b) < arpLen {
		return ReasonMalformed
	}
	b = b[:arpLen]
	if binary.BigEndian.Uint16(b[0:2]) != 1 || // htype Ethernet
		binary.BigEndian.Uint16(b[2:4]) != EtherTypeIPv4 || // ptype IPv4
		b[4] != 6 || b[5] != 4 { // hlen, plen
		return ReasonMalformed
	}
	p.ARPOp = binary.BigEndian.Uint16(b[6:8])
	p.SHA = MAC(b[8:14])
	p.SPA = binary.BigEndian.Uint32(b[14:18])
	p.THA = MAC(b[18:24])
	p.TPA = binary.BigEndian.Uint32(b[24:28])
	p.Kind = KindARP
	return ReasonNone
}

// decodeIPv4 decodes an IPv4 header and the ports of UDP/TCP; b starts at the
// IPv4 header and runs to the end of the frame.
func (p *Packet) decodeIPv4(b []byte) Reason {
	if len(b) < ipv4MinLen || b[0]>>4 != 4 {
		return ReasonMalformed
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < ipv4MinLen || ihl > len(b) || total < ihl || total > len(b) {
		return ReasonMalformed
	}
	if !ChecksumOK(b[:ihl]) {
		return ReasonBadChecksum
	}
	b = b[:total] // drop Ethernet padding
	p.IHL = ihl
	p.TotalLen = total
	frag := binary.BigEndian.Uint16(b[6:8])
	p.FragOff = (frag & ipv4OffMask) * 8
	p.Frag = frag&ipv4MoreFrags != 0 || p.FragOff != 0
	p.DF = frag&ipv4DontFrag != 0
	p.TTL = b[8]
	p.Proto = b[9]
	p.SrcIP = binary.BigEndian.Uint32(b[12:16])
	p.DstIP = binary.BigEndian.Uint32(b[16:20])
	p.L4 = p.L3 + ihl
	if p.FragOff == 0 {
		l4 := b[ihl:]
		switch p.Proto {
		case ProtoUDP:
			if len(l4) < udpHeaderLen {
				return ReasonMalformed
			}
		case ProtoTCP:
			if len(l4) < tcpHeaderLen {
				return ReasonMalformed
			}
		default:
			p.Kind = KindIPv4
			return ReasonNone
		}
		p.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		p.DstPort = binary.BigEndian.Uint16(l4[2:4])
	}
	p.Kind = KindIPv4
	return ReasonNone
}

// ChecksumOK reports whether the one's complement sum of the IPv4 header h
// (checksum field included) is 0xffff: Decode's check, and the engine's
// lane's. len(h) is a multiple of 4.
//
// The words are summed in the machine's byte order: a one's complement sum
// of byte-swapped words is the byte-swapped sum (RFC 1071 §2(B)), and
// 0xffff is its own swap. A 20-byte header, nearly every packet, is five
// loads and adds with no loop.
func ChecksumOK(h []byte) bool {
	var sum uint64
	if len(h) == ipv4MinLen {
		sum = uint64(binary.NativeEndian.Uint32(h[0:4])) + uint64(binary.NativeEndian.Uint32(h[4:8])) +
			uint64(binary.NativeEndian.Uint32(h[8:12])) + uint64(binary.NativeEndian.Uint32(h[12:16])) +
			uint64(binary.NativeEndian.Uint32(h[16:20]))
	} else {
		for len(h) >= 4 {
			sum += uint64(binary.NativeEndian.Uint32(h))
			h = h[4:]
		}
	}
	// Fold 64 → 16 bits with end-around carry.
	sum = sum&0xffffffff + sum>>32
	sum = sum&0xffffffff + sum>>32
	sum = sum&0xffff + sum>>16
	sum = sum&0xffff + sum>>16
	return sum == 0xffff
}

// IsDHCP reports whether p is a DHCP (BOOTP) message: IPv4 UDP, not a non-first
// fragment, with both ports in {67, 68} (client→server, server→client, and
// relay→server 67→67).
func IsDHCP(p *Packet) bool {
	return p.Kind == KindIPv4 && p.Proto == ProtoUDP && p.FragOff == 0 &&
		(p.SrcPort == PortDHCPServer || p.SrcPort == PortDHCPClient) &&
		(p.DstPort == PortDHCPServer || p.DstPort == PortDHCPClient)
}

// TouchesDHCPPort reports whether p is IPv4 UDP (not a non-first
// fragment) with either port 67 or 68: DHCP, or a datagram that would
// reach a DHCP server or client around the relay (a subscriber's from an
// ephemeral port to its ISP's server at port 67, with its own giaddr and
// Option 82, and the server's answer to that giaddr: a security trial).
// No application uses these ports for anything else.
func TouchesDHCPPort(p *Packet) bool {
	return p.Kind == KindIPv4 && p.Proto == ProtoUDP && p.FragOff == 0 &&
		(p.SrcPort == PortDHCPServer || p.SrcPort == PortDHCPClient ||
			p.DstPort == PortDHCPServer || p.DstPort == PortDHCPClient)
}
