package dhcpproxy

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// A host on the ISP's segment that is not one of dhcp_servers answers a
// relayed DISCOVER (right xid, our Option 82 echoed; then one without
// Option 82): nothing reaches the subscriber, no event, the transaction is
// not marked refused (its silence is still a timeout), and the real
// server's OFFER is delivered.
func TestSpoofedAnswerFromNonServer(t *testing.T) {
	r := newPRig(t)
	rogue := netip.MustParseAddr("192.0.2.66")
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	up, _ := r.relayedTo()
	m := up[ispSID]
	if m == nil {
		t.Fatal("not relayed")
	}
	r.fromServerAt(rogue, serverReply(m, dhcpv4.MessageTypeOffer, rogue, rogue))
	no82 := serverReply(m, dhcpv4.MessageTypeOffer, rogue, rogue)
	no82.Options.Del(dhcpv4.OptionRelayAgentInformation)
	r.fromServerAt(rogue, no82)
	r.p.notes.wait()
	if _, toClient := r.relayedTo(); len(toClient) != 0 {
		t.Fatalf("rogue answer delivered: %v", toClient)
	}
	if c := r.p.Counters(); c["unknown_server"] != 2 {
		t.Errorf("unknown_server %d", c["unknown_server"])
	}
	if evs, _ := r.store.Events(0, 10); len(evs) != 0 {
		t.Errorf("events from a rogue answer: %+v", evs)
	}
	r.fromServerAt(ispSID, serverReply(m, dhcpv4.MessageTypeOffer, ispSID, ispSID))
	if _, toClient := r.relayedTo(); len(toClient) != 1 || !toClient[0].YourIPAddr.Equal(net.IPv4(100, 64, 0, 101)) {
		t.Fatalf("real OFFER not delivered: %v", toClient)
	}
}

// forgedUnreachable: an ICMP destination unreachable (code) to our uplink
// address, from the segment, quoting an IPv4/UDP datagram src:sport ->
// dst:67 that ispmux never sent.
func forgedUnreachable(t *testing.T, r *prig, code byte, src, dst netip.Addr, sport uint16) {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: 67}
	udp.SetNetworkLayerForChecksum(ip)
	qb := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(qb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, udp, gopacket.Payload(make([]byte, 16))); err != nil {
		t.Fatal(err)
	}
	icmp := make([]byte, 8+len(qb.Bytes()))
	icmp[0], icmp[1] = 3, code
	copy(icmp[8:], qb.Bytes())
	outer := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: net.IP(netip.MustParseAddr("192.0.2.66").AsSlice()), DstIP: net.IP(giaddr.AsSlice())}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(macBytes(0x02cc00000066)), DstMAC: net.HardwareAddr(macBytes(upMAC)), EthernetType: layers.EthernetTypeIPv4}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, outer, gopacket.Payload(icmp)); err != nil {
		t.Fatal(err)
	}
	r.p.HandleFrame(upPort, buf.Bytes())
}

// A host on the ISP's segment sends ispmux's uplink address an ICMP port
// unreachable quoting a datagram ispmux never sent (not from our uplink
// address, to an address that is none of the ISP's dhcp_servers). The
// real server is silent: every subscriber's timeout in the next 2×timeout
// names the forged "server" and cause instead of the ISP's silence.
// Expected: an unreachable is about what we relayed (quoted source our
// uplink address, port 67, destination one of dhcp_servers); others are
// counted as icmp_unreachable_other and change no event.
func TestForgedUnreachableChangesNoTimeouts(t *testing.T) {
	r := newPRig(t)
	fake := netip.MustParseAddr("198.51.100.9")
	forgedUnreachable(t, r, 3, netip.MustParseAddr("192.0.2.66"), fake, 68)
	if c := r.p.Counters(); c["server_unreachable"] != 0 {
		t.Errorf("a forged unreachable about %s, not one of alpha's servers, was taken: server_unreachable %d", fake, c["server_unreachable"])
	}
	for _, m := range []string{"02:00:00:00:01:01", "02:00:00:00:01:02"} {
		r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(m))))
	}
	r.snd.take() // the ISP is silent
	evs := r.eventsAfterTimeout()
	if len(evs) != 2 {
		t.Fatalf("events %+v, want two timeouts", evs)
	}
	for _, e := range evs {
		if e.Kind != subscribers.EventTimeout || strings.Contains(e.Reason, fake.String()) || strings.Contains(e.Reason, "no DHCP server running") {
			t.Errorf("%s's event names the forged unreachable: %s %q", binding.MACString(binding.MAC48(e.MAC)), e.Kind, e.Reason)
		}
	}
}

// A router on the path says subscriber A's relayed DISCOVER (large: many
// options) needs fragmenting (ICMP 3/4, quoting A's datagram, xid
// included). Subscriber B's small DISCOVER is simply not answered (the
// ISP does not know B). B's timeout must not say its message was too big
// for the path: frag-needed is about the quoted datagram (RFC 1191), not
// the server; A's may say so.
func TestFragNeededBlamesOnlyItsMessage(t *testing.T) {
	r := newPRig(t)
	big := discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")),
		dhcpv4.WithGeneric(dhcpv4.OptionUserClassInformation, make([]byte, 250)),
		dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, make([]byte, 250)))
	r.fromClient(big)
	sent := r.snd.take()
	if len(sent) != 1 {
		t.Fatalf("relayed %d frames", len(sent))
	}
	relayed := sent[0].frame[14:]
	quote := relayed[:min(len(relayed), 20+8+236)] // as a router quotes (RFC 1812 §4.3.2.3)
	icmp := make([]byte, 8+len(quote))
	icmp[0], icmp[1] = 3, 4
	binary.BigEndian.PutUint16(icmp[6:], 576)
	copy(icmp[8:], quote)
	ipl := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: net.IPv4(192, 0, 2, 254), DstIP: net.IP(giaddr.AsSlice())}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(macBytes(gwMAC)), DstMAC: net.HardwareAddr(macBytes(upMAC)), EthernetType: layers.EthernetTypeIPv4}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ipl, gopacket.Payload(icmp)); err != nil {
		t.Fatal(err)
	}
	r.p.HandleFrame(upPort, buf.Bytes())
	if c := r.p.Counters(); c["server_unreachable"] != 1 {
		t.Fatalf("counters %v", c)
	}
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:02"))))
	r.snd.take()
	evs := r.eventsAfterTimeout()
	if len(evs) != 2 {
		t.Fatalf("events %+v", evs)
	}
	for _, e := range evs {
		a := binding.MACString(binding.MAC48(e.MAC))
		tooBig := strings.Contains(e.Reason, "too big for the path")
		if a == "02:00:00:00:01:02" && tooBig {
			t.Errorf("B's small DISCOVER's timeout blames A's frag-needed: %q", e.Reason)
		}
		if a == "02:00:00:00:01:01" && !tooBig {
			t.Errorf("A's timeout does not say too big: %q", e.Reason)
		}
	}
}
