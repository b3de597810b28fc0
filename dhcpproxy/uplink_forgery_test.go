package dhcpproxy

import (
	"encoding/binary"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/classifier"
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
	r.unreachableQuoting(4, 576, relayed[:min(len(relayed), 20+8+236)]) // as a router quotes (RFC 1812 §4.3.2.3)
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

// relayedPackets takes the frames sent so far and returns the IPv4
// packets relayed to the ISP's servers, by server.
func (r *prig) relayedPackets() map[netip.Addr][]byte {
	out := map[netip.Addr][]byte{}
	for _, s := range r.snd.take() {
		var p classifier.Packet
		if s.port == upPort && p.Decode(s.frame) == classifier.ReasonNone {
			out[addr4(p.DstIP)] = s.frame[p.L3:]
		}
	}
	return out
}

// unreachableQuoting: the ISP's router sends our uplink address an ICMP
// destination unreachable of code (mtu: its next-hop MTU field) quoting
// quote, the start of an IPv4 packet.
func (r *prig) unreachableQuoting(code byte, mtu uint16, quote []byte) {
	r.t.Helper()
	icmp := make([]byte, 8+len(quote))
	icmp[0], icmp[1] = 3, code // destination unreachable
	binary.BigEndian.PutUint16(icmp[6:], mtu)
	copy(icmp[8:], quote)
	ipl := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: net.IPv4(192, 0, 2, 254), DstIP: net.IP(giaddr.AsSlice())}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(macBytes(gwMAC)), DstMAC: net.HardwareAddr(macBytes(upMAC)), EthernetType: layers.EthernetTypeIPv4}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ipl, gopacket.Payload(icmp)); err != nil {
		r.t.Fatal(err)
	}
	r.p.HandleFrame(upPort, buf.Bytes())
}

// timeoutsByMAC returns the reasons of the timeout events in evs, by MAC.
func timeoutsByMAC(evs []subscribers.Event) map[string][]string {
	out := map[string][]string{}
	for _, e := range evs {
		if e.Kind == subscribers.EventTimeout {
			a := binding.MACString(binding.MAC48(e.MAC))
			out[a] = append(out[a], e.Reason)
		}
	}
	return out
}

// An ISP with two servers. s1 renews (relayed to its lease's server, the
// first, only) and the first server's router says host unreachable about
// it; then s2's DISCOVER (relayed to both) gets a port unreachable from
// the second server's side. The ISP had one note: the later one replaced
// the earlier, and s1's timeout named the second server's port
// unreachable, about a message s1's renewal never went to. Each note is
// now the transaction's it quotes: s1's timeout names the first server's
// host unreachable, s2's the second's port unreachable.
func TestUnreachableNamesItsTransactionOnly(t *testing.T) {
	r, second := twoServersBound(t)
	ip := netip.MustParseAddr("100.64.0.101")
	r.fromClientUnicast(renewing(t, s1, ip.String()), ip)
	renewal := r.relayedPackets()
	if len(renewal) != 1 || renewal[ispSID] == nil {
		t.Fatalf("renewal relayed to %v, want %v only", slices.Collect(maps.Keys(renewal)), ispSID)
	}
	r.unreachableQuoting(1, 0, renewal[ispSID])
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:02"))))
	disc := r.relayedPackets()
	if disc[second] == nil {
		t.Fatalf("DISCOVER relayed to %v, want both servers", slices.Collect(maps.Keys(disc)))
	}
	r.unreachableQuoting(3, 0, disc[second])
	if c := r.p.Counters(); c["server_unreachable"] != 2 {
		t.Fatalf("server_unreachable %d, want 2 (counters %v)", c["server_unreachable"], c)
	}
	tos := timeoutsByMAC(r.eventsAfterTimeout())
	want := map[string]string{
		s1:                  ispSID.String() + ": host unreachable",
		"02:00:00:00:01:02": second.String() + ": port unreachable",
	}
	for m, w := range want {
		if len(tos[m]) != 1 || !strings.Contains(tos[m][0], w) {
			t.Errorf("%s's timeouts %q, want one naming %q", m, tos[m], w)
		}
	}
}

// A host on the ISP's segment forges port unreachables quoting realistic
// datagrams: from our uplink address, port 67, to the ISP's real server,
// in the form of the DISCOVER ispmux relayed for s1 but with a made-up
// xid, or s1's xid with another chaddr. Each was taken, and explained
// every pending subscriber's timeout ("no DHCP server running"). So was a
// quote too short to hold an xid (RFC 792's 8 bytes past the IP header).
// Now an unreachable counts only when its quote names a pending
// transaction (xid, and chaddr when quoted): those count as
// icmp_unreachable_no_transaction and icmp_unreachable_short, and no
// timeout names them.
func TestUnreachableQuotingNoTransaction(t *testing.T) {
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	relayed := r.relayedPackets()[ispSID]
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:02"))))
	if relayed == nil || r.relayedPackets()[ispSID] == nil {
		t.Fatal("DISCOVERs not relayed")
	}
	const dhcp = 20 + 8 // the DHCP message in the quoted packet
	madeUpXID := slices.Clone(relayed)
	copy(madeUpXID[dhcp+4:], []byte{0xde, 0xad, 0xbe, 0xef})
	r.unreachableQuoting(3, 0, madeUpXID)
	otherChaddr := slices.Clone(relayed)
	copy(otherChaddr[dhcp+28:], mac("02:00:00:00:09:09"))
	r.unreachableQuoting(3, 0, otherChaddr)
	r.unreachableQuoting(3, 0, relayed[:dhcp])
	c := r.p.Counters()
	if c["server_unreachable"] != 0 || c["icmp_unreachable_no_transaction"] != 2 || c["icmp_unreachable_short"] != 1 {
		t.Errorf("server_unreachable %d, icmp_unreachable_no_transaction %d, icmp_unreachable_short %d; want 0, 2, 1",
			c["server_unreachable"], c["icmp_unreachable_no_transaction"], c["icmp_unreachable_short"])
	}
	tos := timeoutsByMAC(r.eventsAfterTimeout())
	for _, m := range []string{s1, "02:00:00:00:01:02"} {
		if len(tos[m]) != 1 || strings.Contains(tos[m][0], "unreachable") {
			t.Errorf("%s's timeouts %q, want one naming no unreachable", m, tos[m])
		}
	}
}

// An unreachable quoting s1's renewal exactly (xid, chaddr), but as if it
// had gone to the ISP's second server, which it did not (a renewal goes
// to its lease's server only): it is about no message ispmux relayed, and
// names nothing in s1's timeout.
func TestUnreachableFromServerNotRelayedTo(t *testing.T) {
	r, second := twoServersBound(t)
	ip := netip.MustParseAddr("100.64.0.101")
	r.fromClientUnicast(renewing(t, s1, ip.String()), ip)
	renewal := r.relayedPackets()[ispSID]
	if renewal == nil {
		t.Fatal("renewal not relayed to its lease's server")
	}
	forged := slices.Clone(renewal)
	copy(forged[16:20], second.AsSlice())
	r.unreachableQuoting(3, 0, forged)
	if c := r.p.Counters(); c["server_unreachable"] != 0 || c["icmp_unreachable_no_transaction"] != 1 {
		t.Errorf("server_unreachable %d, icmp_unreachable_no_transaction %d; want 0, 1", c["server_unreachable"], c["icmp_unreachable_no_transaction"])
	}
	tos := timeoutsByMAC(r.eventsAfterTimeout())
	if len(tos[s1]) != 1 || strings.Contains(tos[s1][0], second.String()) {
		t.Errorf("s1's timeouts %q, want one not naming %v", tos[s1], second)
	}
}
