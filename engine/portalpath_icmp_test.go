package engine

import (
	"encoding/binary"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/ispmux/ispmux/datapath"
)

// TestPortalPathICMPQuote: a bound subscriber's TCP to the portal (port
// 443, rewritten to its VRF's portal port when forwarded) that cannot be
// forwarded (TTL 1; bigger than the portal link's MTU with DF) gets an
// ICMP error quoting the packet as the subscriber sent it. The
// subscriber's stack matches ICMP errors to its connection by the quoted
// ports: quoting the rewritten port (before, 31000+VRF), the error was
// ignored, PMTU discovery to the portal black-holed and traceroute saw
// nothing.
func TestPortalPathICMPQuote(t *testing.T) {
	r := gardenRig(t)
	quoted := func(name string, f []byte, out [datapath.MaxPorts][][]byte) {
		t.Helper()
		if len(out[0]) != 1 || len(out[2]) != 0 {
			t.Fatalf("%s: %d back, %d to the portal", name, len(out[0]), len(out[2]))
		}
		ipl := decode(t, out[0][0]).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ipl.Protocol != layers.IPProtocolICMPv4 {
			t.Fatalf("%s: not ICMP: %v", name, ipl.Protocol)
		}
		q := ipl.Payload[8:] // the quoted IP header and 8 bytes
		ihl := int(q[0]&0xf) * 4
		if got := binary.BigEndian.Uint16(q[ihl+2:]); got != 443 {
			t.Errorf("%s: ICMP error quotes destination port %d, the subscriber sent 443", name, got)
		}
	}
	// TTL 1 (traceroute to the portal).
	f := tcpFrame(t, alphaSub1, portal, 443, layers.TCP{SYN: true, Seq: 1}, nil)
	f[14+8] = 1
	binary.BigEndian.PutUint16(f[14+10:], 0)
	binary.BigEndian.PutUint16(f[14+10:], ^checksum20(f[14:34]))
	quoted("TTL 1", f, r.send(0, f))

	// Bigger than the portal link's MTU, DF set.
	r.c.SetMTU(2, 1400)
	ipl := ipLayer(alphaSub1, portal, layers.IPProtocolTCP)
	seg := &layers.TCP{SrcPort: 40000, DstPort: 443, ACK: true, Seq: 5, Ack: 6, Window: 64240}
	_ = seg.SetNetworkLayerForChecksum(ipl)
	big := serialize(t, append(ethLayers(alphaSub1.mac, accMAC, 0, layers.EthernetTypeIPv4), ipl, seg, gopacket.Payload(make([]byte, 1460)))...)
	quoted("too big", big, r.send(0, big))
}

func checksum20(h []byte) uint16 {
	var s uint32
	for i := 0; i < 20; i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
