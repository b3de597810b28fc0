package dhcpproxy

import (
	"encoding/binary"
	"net/netip"

	"github.com/ispmux/ispmux/classifier"
)

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
