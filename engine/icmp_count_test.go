package engine

import (
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// ispmux_port_icmp_errors_sent_total (PortCounters.ICMPErrors) counts the
// "fragmentation needed" (3/4) sent for a DF packet over the egress MTU
// too, not only time exceeded as its HELP and docs/OPERATIONS.md say
// (metrics' TestICMPErrorsHelp).
func TestICMPErrorsCountFragNeeded(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	r.c.SetMTU(1, 1400)
	ipl := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, Flags: layers.IPv4DontFragment,
		SrcIP: net.ParseIP("100.64.0.11").To4(), DstIP: net.ParseIP("198.51.100.10").To4()}
	udp := &layers.UDP{SrcPort: 1, DstPort: 2}
	_ = udp.SetNetworkLayerForChecksum(ipl)
	out := r.send(0, serialize(t, append(ethLayers(sub1, accMAC, 0, layers.EthernetTypeIPv4), ipl, udp, gopacket.Payload(make([]byte, 1472)))...))
	if len(out[0]) != 1 {
		t.Fatalf("%d frames back, want the ICMP 3/4", len(out[0]))
	}
	if n := r.s.Counters()[0].ICMPErrors; n != 1 {
		t.Fatalf("ICMPErrors %d after one fragmentation needed", n)
	}
}
