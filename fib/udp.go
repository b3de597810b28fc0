package fib

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// Checksum returns the ones' complement sum (RFC 1071) of b added to init,
// folded to 16 bits; an odd last byte counts as padded with a zero. The
// Internet checksum of b is ^Checksum(b, 0).
func Checksum(b []byte, init uint16) uint16 {
	s := uint32(init)
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// L4Checksum returns the checksum of seg, a UDP datagram or TCP segment
// (protocol proto) from src to dst, over the pseudo-header and seg (RFC
// 768, RFC 9293): with seg's checksum field zero, the value to write
// there; with it filled in, 0 when it verifies.
func L4Checksum(src, dst uint32, proto uint8, seg []byte) uint16 {
	var ph [12]byte
	binary.BigEndian.PutUint32(ph[0:], src)
	binary.BigEndian.PutUint32(ph[4:], dst)
	ph[9] = proto
	binary.BigEndian.PutUint16(ph[10:], uint16(len(seg)))
	return ^Checksum(seg, Checksum(ph[:], 0))
}

// UDPFrame builds an Ethernet (802.1Q-tagged when vlan is not 0) / IPv4 /
// UDP frame around payload from src:sport to dst:dport, TTL 64, with both
// checksums computed. It allocates the frame: for the control plane and
// generators, not the per-packet path.
func UDPFrame(dstMAC, srcMAC uint64, vlan uint16, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	return AppendUDPFrame(nil, dstMAC, srcMAC, vlan, src, dst, sport, dport, payload)
}

// AppendUDPFrame is UDPFrame built at the end of buf (which it grows as
// append does), for a caller that reuses its buffers.
func AppendUDPFrame(buf []byte, dstMAC, srcMAC uint64, vlan uint16, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	hl := 14
	if vlan != 0 {
		hl = 18
	}
	n := len(buf)
	buf = slices.Grow(buf, hl+20+8+len(payload))[:n+hl+20+8+len(payload)]
	f := buf[n:]
	clear(f[:hl+20+8])
	WriteL2(f, dstMAC, srcMAC, vlan, vlan != 0, EtherTypeIPv4)
	ip := f[hl : hl+20]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	ip[8] = 64
	ip[9] = 17
	s, d := src.As4(), dst.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	binary.BigEndian.PutUint16(ip[10:], ^Checksum(ip, 0))
	udp := f[hl+20:]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	copy(udp[8:], payload)
	// Checksum over the pseudo-header and the datagram.
	c := L4Checksum(binary.BigEndian.Uint32(s[:]), binary.BigEndian.Uint32(d[:]), 17, udp[:8+len(payload)])
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], c)
	return buf
}
