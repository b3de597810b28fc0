package fib

import "encoding/binary"

// EtherType values the rewrites write.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeVLAN = 0x8100
)

// BroadcastMAC is ff:ff:ff:ff:ff:ff as a 48-bit value.
const BroadcastMAC = 0xffff_ffff_ffff

// ARP sizes: an ARP packet for Ethernet/IPv4 is 28 bytes, and a frame is
// padded to MinFrameLen (60, the 64-byte minimum without FCS).
const (
	ARPLen      = 28
	MinFrameLen = 60
)

// PutMAC writes the 48-bit MAC m into b[0:6], most significant byte first.
func PutMAC(b []byte, m uint64) {
	_ = b[5]
	binary.BigEndian.PutUint16(b[0:2], uint16(m>>32))
	binary.BigEndian.PutUint32(b[2:6], uint32(m))
}

// MAC reads the 48-bit MAC in b[0:6].
func MAC(b []byte) uint64 {
	_ = b[5]
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 |
		uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

// WriteL2 writes an Ethernet header at b[0:]: dst, src, then an 802.1Q
// tag (PCP 0, VID vlan) when tagged, then etherType. It returns the header
// length, 18 when tagged and 14 otherwise; b must be at least that long.
//
// To put a header in front of an L3 packet at offset l3 of a frame, call it
// on frame[l3-n:], where n is 18 or 14; the frame then starts at l3-n.
func WriteL2(b []byte, dst, src uint64, vlan uint16, tagged bool, etherType uint16) int {
	_ = b[13]
	// Three stores, not one per byte: dst and src's top 16 bits, src's
	// low 32, then the EtherType (or the tag and the EtherType).
	binary.BigEndian.PutUint64(b[0:8], dst<<16|src>>32&0xffff)
	binary.BigEndian.PutUint32(b[8:12], uint32(src))
	if !tagged {
		binary.BigEndian.PutUint16(b[12:14], etherType)
		return 14
	}
	_ = b[17]
	binary.BigEndian.PutUint32(b[12:16], EtherTypeVLAN<<16|uint32(vlan&0x0fff))
	binary.BigEndian.PutUint16(b[16:18], etherType)
	return 18
}

// DecTTL decrements the TTL of the IPv4 header at ip[0:] and patches its
// header checksum incrementally. If the TTL is 0 or 1 the packet must not
// be forwarded: DecTTL leaves the header unchanged and returns false.
// ip must hold at least 12 bytes (the caller has validated the header).
//
// The patch is RFC 1624 equation 3, HC' = ~(~HC + ~m + m'), with m the
// 16-bit word holding TTL and protocol. Since m' = m - 0x100 and m >= 0x200,
// ~m + m' is the constant 0xfeff, so HC' = ~(~HC + 0xfeff) with one
// end-around carry. Unlike RFC 1141's HC + m + ~m' (and Linux's
// ip_decrease_ttl) it never yields 0xffff where a full recomputation gives
// 0x0000.
func DecTTL(ip []byte) bool { return DecTTLTo(ip, ip) }

// DecTTLTo is DecTTL reading the header at src and writing the new TTL
// and checksum into dst, a copy of it (for a frame just copied: src is in
// the cache, and reading back what was just written into dst may stall).
// src and dst may be the same; both must hold at least 12 bytes.
func DecTTLTo(dst, src []byte) bool {
	_, _ = src[11], dst[11]
	ttl := src[8]
	if ttl <= 1 {
		return false
	}
	sum := uint32(^binary.BigEndian.Uint16(src[10:12])) + 0xfeff
	sum = sum&0xffff + sum>>16
	dst[8] = ttl - 1
	binary.BigEndian.PutUint16(dst[10:12], ^uint16(sum))
	return true
}

// ARPReply writes at b[0:] an Ethernet frame (802.1Q-tagged with vlan when
// tagged) carrying the ARP reply "srcIP is at srcMAC" to dstMAC/dstIP, pads
// it with zeros to MinFrameLen and returns its length, 60. b must hold
// MinFrameLen bytes.
func ARPReply(b []byte, srcMAC uint64, srcIP uint32, dstMAC uint64, dstIP uint32, vlan uint16, tagged bool) int {
	return writeARP(b, 2, dstMAC, srcMAC, srcIP, dstMAC, dstIP, vlan, tagged)
}

// ARPRequest writes at b[0:] a broadcast Ethernet frame (802.1Q-tagged with
// vlan when tagged) carrying the ARP request "who has targetIP? tell srcIP
// (srcMAC)", with the target hardware address zero. It pads to MinFrameLen
// and returns the length, 60. b must hold MinFrameLen bytes.
func ARPRequest(b []byte, srcMAC uint64, srcIP uint32, targetIP uint32, vlan uint16, tagged bool) int {
	return writeARP(b, 1, BroadcastMAC, srcMAC, srcIP, 0, targetIP, vlan, tagged)
}

// ARPProbe is ARPRequest sent to dstMAC alone (Ethernet unicast, the
// target hardware address zero, as Linux probes a neighbour it knows):
// "who has targetIP? tell srcIP (srcMAC)", asked of the one device
// expected to hold it.
func ARPProbe(b []byte, dstMAC, srcMAC uint64, srcIP uint32, targetIP uint32, vlan uint16, tagged bool) int {
	return writeARP(b, 1, dstMAC, srcMAC, srcIP, 0, targetIP, vlan, tagged)
}

func writeARP(b []byte, op uint16, ethDst, sha uint64, spa uint32, tha uint64, tpa uint32, vlan uint16, tagged bool) int {
	_ = b[MinFrameLen-1]
	n := WriteL2(b, ethDst, sha, vlan, tagged, EtherTypeARP)
	a := b[n : n+ARPLen]
	binary.BigEndian.PutUint16(a[0:2], 1)             // hardware type: Ethernet
	binary.BigEndian.PutUint16(a[2:4], EtherTypeIPv4) // protocol type
	a[4] = 6                                          // hardware address length
	a[5] = 4                                          // protocol address length
	binary.BigEndian.PutUint16(a[6:8], op)            // 1 request, 2 reply
	PutMAC(a[8:14], sha)
	binary.BigEndian.PutUint32(a[14:18], spa)
	PutMAC(a[18:24], tha)
	binary.BigEndian.PutUint32(a[24:28], tpa)
	clear(b[n+ARPLen : MinFrameLen])
	return MinFrameLen
}
