package dhcpproxy

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/subscribers"
)

// A device registered (a claim, the API) while it holds an onboarding
// lease keeps it until its handover (its next REQUEST is NAKed by ispmux,
// never relayed). Its DHCPINFORM from that garden address (Windows sends
// one right after binding, and for WPAD) was relayed to its ISP: the ISP
// saw the onboarding address (docs/ARCHITECTURE.md, Onboarding: "No ISP
// ever sees an onboarding lease"), and its answer, via giaddr, gave the
// device in the walled garden the ISP's options (router, DNS, WPAD) for an
// address the ISP never leased; sent straight to ciaddr it is dropped by
// the datapath (no_route: the garden address is not in the ISP's VRF).
func TestHandoverInformNotRelayed(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	const m = "02:77:00:00:00:01"
	ack := r.obDORA(m)
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(m)), CustomerID: "c-s1", ISP: "alpha", Source: "claim"}); err != nil {
		t.Fatal(err)
	}
	inf := clientMsg(t, m, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(ack.YourIPAddr))
	r.p.HandleFrame(accPort, fib.UDPFrame(accMAC, 0x027700000001, 0, addrOf(ack.YourIPAddr), ourSID, 68, 67, inf.ToBytes()))
	r.p.committing.Wait()
	var toClient []*dhcpv4.DHCPv4
	for _, s := range r.snd.take() {
		if s.port != accPort {
			t.Errorf("INFORM from the onboarding address %v relayed to an ISP (port %d): %v", ack.YourIPAddr, s.port, dhcpOf(s.frame).MessageType())
			continue
		}
		toClient = append(toClient, dhcpOf(s.frame))
	}
	// Still in the garden until its handover: the garden's answer.
	if len(toClient) != 1 || toClient[0].MessageType() != dhcpv4.MessageTypeAck || len(toClient[0].Router()) != 1 ||
		!toClient[0].Router()[0].Equal(net.IPv4(100, 65, 0, 1)) || toClient[0].Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
		t.Errorf("subscriber got %v, want the garden's ACK to its INFORM (router 100.65.0.1, no lease)", toClient)
	}
}

// A registered subscriber with no binding (an address set by hand, not a
// [[subscriber]]) sends a DHCPINFORM: relayed (RFC 2131 §4.3.5: the
// server must not check for a lease). An ISP server that answers straight
// to ciaddr (RFC 2131 §4.3.5) has its ACK dropped by the datapath
// (no_route: the address is bound nowhere), so the INFORM goes unanswered.
// Nothing says so: no event (fine) but no counter either — the
// transaction ends silently; relayed_inform is the only trace.
func TestUnansweredInformCounted(t *testing.T) {
	r := newPRig(t)
	inf := clientMsg(t, s1, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(net.ParseIP("100.64.0.77")))
	r.fromClientUnicast(inf, netip.MustParseAddr("100.64.0.77"))
	if up, _ := r.relayedTo(); up[ispSID] == nil {
		t.Fatalf("INFORM not relayed (counters %v)", r.p.Counters())
	}
	r.p.expire(time.Now().Add(time.Second))
	r.p.notes.wait()
	found := false
	for k, v := range r.p.Counters() {
		if v > 0 && strings.Contains(k, "inform") && k != "relayed_inform" {
			found = true
		}
	}
	if !found {
		t.Errorf("an INFORM the ISP never answered left no counter (counters %v)", r.p.Counters())
	}
	if evs, _ := r.store.Events(0, 0); len(evs) != 0 {
		for _, e := range evs {
			t.Logf("event %s %s", e.Kind, e.Reason)
		}
	}
}

// The server sends the DHCPACK to a DHCPINFORM to the INFORM's ciaddr
// (RFC 2131 §4.3.5; §4.1: giaddr 0 and ciaddr set, unicast to ciaddr). An
// ISP's ACK that leaves ciaddr 0 (table 3 allows it) and, as it should,
// yiaddr 0 was delivered to 255.255.255.255: a bound client's stack need
// not take a broadcast on port 68 for the socket its INFORM went out of.
// It goes to the INFORM's ciaddr now (else, ciaddr 0, to the address the
// INFORM came from), at the client's MAC.
func TestInformAckToInformAddress(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ciaddr string
	}{
		{"ciaddr", "100.64.0.77"},
		{"no ciaddr, from 100.64.0.77", "0.0.0.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newPRig(t)
			from := netip.MustParseAddr("100.64.0.77")
			inf := clientMsg(t, s1, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(net.ParseIP(tc.ciaddr)))
			r.fromClientUnicast(inf, from)
			up, _ := r.relayedTo()
			if up[ispSID] == nil {
				t.Fatalf("INFORM not relayed (counters %v)", r.p.Counters())
			}
			ack, _ := dhcpv4.NewReplyFromRequest(up[ispSID], dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ispSID.AsSlice()))),
				dhcpv4.WithOption(dhcpv4.OptDNS(net.IPv4(192, 0, 2, 53))),
				dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, up[ispSID].Options.Get(dhcpv4.OptionRelayAgentInformation)))
			ack.ClientIPAddr, ack.YourIPAddr = net.IPv4zero, net.IPv4zero
			r.fromServerAt(ispSID, ack)
			sent := r.snd.take()
			if len(sent) != 1 || sent[0].port != accPort {
				t.Fatalf("sent %d frames, want the ACK to the subscriber (counters %v)", len(sent), r.p.Counters())
			}
			var pkt classifier.Packet
			if pkt.Decode(sent[0].frame) != classifier.ReasonNone || pkt.Dst != s1MAC || addr4(pkt.DstIP) != from {
				t.Errorf("ACK to the INFORM sent to MAC %012x, IP %v; want the client's MAC and %v", pkt.Dst, addr4(pkt.DstIP), from)
			}
		})
	}
}

// An ISP's ACK to an INFORM that does not fit what the client takes (the
// access MTU fell to 320 bytes: 292 for the DHCP message, less than the
// BOOTP minimum every reply is padded to) is refused as a too-big OFFER or
// ACK to a REQUEST is (fitOrRefuse): reply_too_big, a rejected event and
// no timeout event, nothing sent to the subscriber.
func TestInformAckTooBigRefused(t *testing.T) {
	r := newPRig(t)
	from := netip.MustParseAddr("100.64.0.77")
	inf := clientMsg(t, s1, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(net.IP(from.AsSlice())))
	r.fromClientUnicast(inf, from)
	up, _ := r.relayedTo()
	if up[ispSID] == nil {
		t.Fatalf("INFORM not relayed (counters %v)", r.p.Counters())
	}
	r.p.SetPortMTU(accPort, 320)
	ack, _ := dhcpv4.NewReplyFromRequest(up[ispSID], dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ispSID.AsSlice()))),
		dhcpv4.WithOption(dhcpv4.OptDNS(net.IPv4(192, 0, 2, 53))),
		dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, up[ispSID].Options.Get(dhcpv4.OptionRelayAgentInformation)))
	r.fromServerAt(ispSID, ack)
	if sent := r.snd.take(); len(sent) != 0 || r.p.Counters()["reply_too_big"] != 1 || r.p.Counters()["ack_inform"] != 0 {
		t.Fatalf("sent %d frames (counters %v), want none and reply_too_big", len(sent), r.p.Counters())
	}
	wantRejectedNoTimeout(t, r.eventsAfterTimeout(), "the ACK to the INFORM was refused as too big")
}

// The garden's ACK to an INFORM from an onboarding lease's address
// (onboardInform) is sent and counted (onboarding_inform) alike for a
// device without a record and for one registered since, before its
// handover (onboardingHandover).
func TestOnboardingInformCounted(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	const m = "02:77:00:00:00:01"
	ack := r.obDORA(m)
	for i, registered := range []bool{false, true} {
		if registered {
			if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(m)), CustomerID: "c-s1", ISP: "alpha", Source: "claim"}); err != nil {
				t.Fatal(err)
			}
		}
		r.fromClient(clientMsg(t, m, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(ack.YourIPAddr)))
		iack := r.one(dhcpv4.MessageTypeAck)
		if iack.Options.Has(dhcpv4.OptionIPAddressLeaseTime) || len(iack.Router()) != 1 || !iack.Router()[0].Equal(net.IPv4(100, 65, 0, 1)) {
			t.Errorf("registered %v: ACK to the INFORM %v, want the garden's (router 100.65.0.1, no lease)", registered, iack)
		}
		if n := r.p.Counters()["onboarding_inform"]; n != uint64(i+1) {
			t.Errorf("registered %v: onboarding_inform %d, want %d", registered, n, i+1)
		}
	}
}

// An INFORM naming an address another subscriber holds at the same ISP is
// not relayed (inform_not_own_address): the ISP's server would answer to
// that address and hear of a client at the neighbour's (a security trial).
// The sender's own bound address is relayed as before.
func TestInformNeighboursAddressNotRelayed(t *testing.T) {
	r := newPRig(t)
	const s2 = "02:00:00:00:01:02" // registered as c-s2, same ISP
	if got := r.dora(s1, kea(t, time.Minute), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("s1's DORA: %v", got)
	}
	r.p.committing.Wait()
	r.snd.take()
	// s2 names s1's address.
	inf := clientMsg(t, s2, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(net.ParseIP(s1Addr)))
	r.fromClientUnicast(inf, netip.MustParseAddr(s1Addr))
	if up, _ := r.relayedTo(); up[ispSID] != nil {
		t.Errorf("an INFORM naming a neighbour's address was relayed")
	}
	if n := r.p.Counters()["inform_not_own_address"]; n != 1 {
		t.Errorf("inform_not_own_address = %d, want 1", n)
	}
	// s1 itself: relayed.
	inf = clientMsg(t, s1, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(net.ParseIP(s1Addr)))
	r.fromClientUnicast(inf, netip.MustParseAddr(s1Addr))
	if up, _ := r.relayedTo(); up[ispSID] == nil {
		t.Errorf("s1's INFORM for its own address not relayed (counters %v)", r.p.Counters())
	}
}
