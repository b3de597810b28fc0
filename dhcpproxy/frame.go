package dhcpproxy

import (
	"encoding/binary"
	"net/netip"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/fib"
)

// udpFrame builds an Ethernet (+802.1Q) / IPv4 / UDP frame around payload.
func udpFrame(dstMAC, srcMAC uint64, vlan uint16, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	hl := 14
	if vlan != 0 {
		hl = 18
	}
	f := make([]byte, hl+20+8+len(payload))
	fib.WriteL2(f, dstMAC, srcMAC, vlan, vlan != 0, fib.EtherTypeIPv4)
	ip := f[hl : hl+20]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	ip[8] = 64
	ip[9] = 17
	s, d := src.As4(), dst.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	binary.BigEndian.PutUint16(ip[10:], ^sum16(ip, 0))
	udp := f[hl+20:]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	copy(udp[8:], payload)
	// Checksum over the pseudo-header and the datagram.
	var ph [12]byte
	copy(ph[0:4], s[:])
	copy(ph[4:8], d[:])
	ph[9] = 17
	binary.BigEndian.PutUint16(ph[10:], uint16(8+len(payload)))
	c := ^sum16(udp, sum16(ph[:], 0))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], c)
	return f
}

// sum16 is the ones' complement sum of b (odd length padded), folded.
func sum16(b []byte, init uint16) uint16 {
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

// udpPayload returns the UDP payload of a decoded IPv4/UDP frame, or false
// when the UDP header's length disagrees with the IP datagram.
func udpPayload(p *classifier.Packet, f []byte) ([]byte, bool) {
	if p.Kind != classifier.KindIPv4 || p.Proto != 17 || p.Frag || p.L4+8 > len(f) {
		return nil, false
	}
	end := p.L3 + p.TotalLen
	ulen := int(binary.BigEndian.Uint16(f[p.L4+4:]))
	if ulen < 8 || p.L4+ulen > end || end > len(f) {
		return nil, false
	}
	return f[p.L4+8 : p.L4+ulen], true
}

func addr4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func macBytes(m uint64) []byte {
	return []byte{byte(m >> 40), byte(m >> 32), byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}
}
