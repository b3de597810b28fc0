package engine

import (
	"encoding/binary"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/fib"
)

// pingFrom is an ICMP echo request from the garden-rig subscriber s to dst,
// its checksum right.
func pingFrom(t testing.TB, s gardenSub, dst string) []byte {
	ipl := ipLayer(s, dst, layers.IPProtocolICMPv4)
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1}
	return serialize(t, append(ethLayers(s.mac, accMAC, s.vlan, layers.EthernetTypeIPv4), ipl, icmp)...)
}

// spoilL4 flips a bit of the transport checksum of the untagged IPv4 frame
// f (20-byte IP header), leaving the IP header's valid.
func spoilL4(f []byte, proto byte) []byte {
	g := append([]byte(nil), f...)
	off := map[byte]int{1: 2, classifier.ProtoUDP: 6, classifier.ProtoTCP: 16}[proto]
	g[14+20+off] ^= 0x01
	return g
}

// TestBadL4ChecksumNotAnswered: what ispmux answers itself (a ping to its
// uplink address or to a subscriber's gateway, the garden's DNS and TCP
// answers) it answered even when the segment's checksum failed: a ping with
// a bad ICMP checksum got an echo reply (its checksum still bad, updated
// incrementally), a garden DNS query or TCP SYN whose checksum failed an
// answer. A host's stack drops such a segment (RFC 1122 §3.2.2, §4.1.3.4,
// §4.2.2.7); now ispmux does too, counted as bad_checksum. Found by a
// hostile-subscriber trial in the lab (scapy, ICMP(chksum=0x1234) to
// 100.64.0.1: answered).
func TestBadL4ChecksumNotAnswered(t *testing.T) {
	r := gardenRig(t)
	syn := layers.TCP{SYN: true, Seq: 1000}
	for _, c := range []struct {
		name  string
		port  int
		good  []byte
		proto byte
	}{
		{"ping to the uplink address", 1, echoTo(t, "198.51.100.10", "192.0.2.2"), 1},
		{"ping to the gateway", 0, pingFrom(t, alphaSub1, "100.64.0.1"), 1},
		{"garden ping to the gateway", 0, pingFrom(t, onboard, "100.64.0.1"), 1},
		{"garden DNS", 0, dnsFrame(t, onboard, "9.9.9.9", query(1, "example.com", 1, nil)), classifier.ProtoUDP},
		{"garden HTTP SYN", 0, tcpFrame(t, onboard, "93.184.216.34", 80, syn, nil), classifier.ProtoTCP},
		{"garden HTTPS SYN (reset)", 0, tcpFrame(t, onboard, "93.184.216.34", 443, syn, nil), classifier.ProtoTCP},
	} {
		t.Run(c.name, func(t *testing.T) {
			if out := r.send(c.port, c.good); len(out[c.port]) != 1 {
				t.Fatalf("the segment with a good checksum: %d answers, want 1", len(out[c.port]))
			}
			before := r.dropCount(c.port, classifier.ReasonBadChecksum)
			out := r.send(c.port, spoilL4(c.good, c.proto))
			for p, fs := range out {
				if len(fs) != 0 {
					t.Errorf("a bad checksum answered: %d frame(s) out of port %d", len(fs), p)
				}
			}
			if got := r.dropCount(c.port, classifier.ReasonBadChecksum); got != before+1 {
				t.Errorf("bad_checksum %d → %d, want +1", before, got)
			}
		})
	}
	// A UDP checksum of 0 is none (RFC 768): the query is answered.
	f := dnsFrame(t, onboard, "9.9.9.9", query(2, "example.com", 1, nil))
	f[14+20+6], f[14+20+7] = 0, 0
	if out := r.send(0, f); len(out[0]) != 1 {
		t.Errorf("a DNS query without a UDP checksum: %d answers, want 1", len(out[0]))
	}
}

// TestL4ChecksumOK checks the verifier on its own: ICMP without a
// pseudo-header, UDP over its length field (bytes past it in the IP
// payload are not summed), TCP.
func TestL4ChecksumOK(t *testing.T) {
	for _, c := range []struct {
		name string
		f    []byte
	}{
		{"icmp", pingFrom(t, alphaSub1, "100.64.0.1")},
		{"udp", dnsFrame(t, onboard, "9.9.9.9", query(3, "example.com", 1, nil))},
		{"tcp", tcpFrame(t, onboard, "93.184.216.34", 80, layers.TCP{SYN: true}, []byte("x"))},
	} {
		var pkt classifier.Packet
		if reason := pkt.Decode(c.f); reason != classifier.ReasonNone {
			t.Fatalf("%s: decode: %v", c.name, reason)
		}
		if !l4ChecksumOK(&pkt, c.f) {
			t.Errorf("%s: a good checksum refused", c.name)
		}
		bad := spoilL4(c.f, pkt.Proto)
		if l4ChecksumOK(&pkt, bad) {
			t.Errorf("%s: a bad checksum accepted", c.name)
		}
	}
	// UDP: the checksum covers the UDP length, not trailing IP payload.
	f := dnsFrame(t, onboard, "9.9.9.9", query(4, "example.com", 1, nil))
	g := append(append([]byte(nil), f...), 0xde, 0xad)
	ip := g[14:]
	binary.BigEndian.PutUint16(ip[2:], binary.BigEndian.Uint16(ip[2:])+2)
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], ^fib.Checksum(ip[:20], 0))
	var pkt classifier.Packet
	if reason := pkt.Decode(g); reason != classifier.ReasonNone {
		t.Fatalf("decode: %v", reason)
	}
	if !l4ChecksumOK(&pkt, g) {
		t.Errorf("UDP with bytes past its length in the IP payload refused")
	}
}
