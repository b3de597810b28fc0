package dhcpproxy

import (
	"encoding/binary"
	"net/netip"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/fib"
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

// udpChecksumOK reports whether the UDP checksum of a frame udpPayload
// accepted verifies (RFC 768: over the pseudo-header and the datagram),
// or is 0 (none sent). A datagram whose checksum fails is dropped, as a
// host's stack or a DHCP server would (RFC 1122 §4.1.3.4). The lab's
// hosts compute their checksums in software (lab: veth's transmit
// "offload" leaves only the pseudo-header sum, which AF_XDP does not
// finish), as hosts behind a NIC have them computed.
func udpChecksumOK(p *classifier.Packet, f []byte) bool {
	ulen := int(binary.BigEndian.Uint16(f[p.L4+4:]))
	seg := f[p.L4 : p.L4+ulen]
	if seg[6] == 0 && seg[7] == 0 {
		return true
	}
	return fib.L4Checksum(p.SrcIP, p.DstIP, 17, seg) == 0
}

func addr4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func macBytes(m uint64) []byte {
	return []byte{byte(m >> 40), byte(m >> 32), byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}
}
