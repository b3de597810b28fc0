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
)

// serverReply is server srv's answer of type mt to the relayed m, offering
// 100.64.0.(100+last octet of srv), naming sid as its server identifier.
func serverReply(m *dhcpv4.DHCPv4, mt dhcpv4.MessageType, srv, sid netip.Addr) *dhcpv4.DHCPv4 {
	rep, _ := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(mt),
		dhcpv4.WithYourIP(net.IPv4(100, 64, 0, 100+srv.As4()[3])),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(sid.AsSlice()))),
		dhcpv4.WithLeaseTime(60),
		dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, m.Options.Get(dhcpv4.OptionRelayAgentInformation)))
	return rep
}

// relayedTo splits the frames sent so far: the relayed messages by the
// server they went to, and the messages the subscriber was sent.
func (r *prig) relayedTo() (map[netip.Addr]*dhcpv4.DHCPv4, []*dhcpv4.DHCPv4) {
	up := map[netip.Addr]*dhcpv4.DHCPv4{}
	var toClient []*dhcpv4.DHCPv4
	for _, s := range r.snd.take() {
		m := dhcpOf(s.frame)
		if s.port == accPort {
			toClient = append(toClient, m)
			continue
		}
		var p classifier.Packet
		p.Decode(s.frame)
		up[addr4(p.DstIP)] = m
	}
	return up, toClient
}

// twoServers is the rig with a second server at alpha (192.0.2.3), and
// server-id override on or off.
func twoServers(t *testing.T, override bool) (*prig, netip.Addr) {
	r := newPRig(t)
	second := netip.MustParseAddr("192.0.2.3")
	r.p.isps["alpha"].Servers = []netip.Addr{ispSID, second}
	r.p.isps["alpha"].ServerIDOverride = override
	return r, second
}

func (r *prig) fromServerAt(srv netip.Addr, rep *dhcpv4.DHCPv4) {
	r.p.HandleFrame(upPort, fib.UDPFrame(upMAC, gwMAC, 0, srv, giaddr, 67, 67, rep.ToBytes()))
	r.p.committing.Wait()
}

// Two servers at one ISP; the second one's OFFER to the DISCOVER arrives
// after the subscriber has already sent its REQUEST for the first's
// (the same xid, RFC 2131 §4.4.1). The late OFFER must not be delivered nor
// change the server the REQUEST selects: the client's retransmitted
// REQUEST must still name the first server (RFC 2131 §4.3.2: the server-id
// in a SELECTING REQUEST says which server was chosen).
func TestLateOfferAfterRequest(t *testing.T) {
	r, second := twoServers(t, false)

	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	up, _ := r.relayedTo()
	if len(up) != 2 {
		t.Fatalf("DISCOVER relayed to %d servers, want 2", len(up))
	}
	discToB := up[second]
	// The first server answers at once.
	r.fromServerAt(ispSID, serverReply(up[ispSID], dhcpv4.MessageTypeOffer, ispSID, ispSID))
	_, toClient := r.relayedTo()
	if len(toClient) != 1 || toClient[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("subscriber got %v, want the first OFFER", toClient)
	}
	req, _ := dhcpv4.NewRequestFromOffer(toClient[0])
	r.fromClient(req)
	up, _ = r.relayedTo()
	if sid := up[second].ServerIdentifier(); !sid.Equal(net.IP(ispSID.AsSlice())) {
		t.Fatalf("REQUEST relayed naming %v, want %v", sid, ispSID)
	}
	// The second server's OFFER, late.
	r.fromServerAt(second, serverReply(discToB, dhcpv4.MessageTypeOffer, second, second))
	_, toClient = r.relayedTo()
	if len(toClient) != 0 {
		t.Errorf("late OFFER of the server not chosen delivered to the subscriber: %v", toClient[0].YourIPAddr)
	}
	// The client retransmits its REQUEST (no answer yet).
	r.fromClient(req)
	up, _ = r.relayedTo()
	for srv, m := range up {
		if sid := m.ServerIdentifier(); !sid.Equal(net.IP(ispSID.AsSlice())) {
			t.Errorf("retransmitted REQUEST relayed to %v naming server %v: the client chose %v", srv, sid, ispSID)
		}
	}
	// Each server answers as RFC 2131 §4.3.2 says: only the one the
	// REQUEST names ACKs (its own offer); the other sees it was not chosen.
	for srv, m := range up {
		if m.ServerIdentifier().Equal(net.IP(srv.AsSlice())) {
			r.fromServerAt(srv, serverReply(m, dhcpv4.MessageTypeAck, srv, srv))
		}
	}
	_, toClient = r.relayedTo()
	if len(toClient) != 1 || !toClient[0].YourIPAddr.Equal(net.IPv4(100, 64, 0, 101)) {
		for _, m := range toClient {
			t.Logf("subscriber got %s of %v", m.MessageType(), m.YourIPAddr)
		}
		t.Errorf("subscriber requested 100.64.0.101 from %v; want that ACK", ispSID)
	}
}

// With server-id override (RFC 5107) every server of the ISP names the
// override address (ours) as its server identifier, so the identifier no
// longer tells two servers' OFFERs apart: ispmux's "the first OFFER wins"
// (the subscriber sees one server, only the chosen one is selected by the
// REQUEST) must still hold.
func TestOverrideTwoServersOneOffer(t *testing.T) {
	r, second := twoServers(t, true)

	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	up, _ := r.relayedTo()
	// Both servers honour the override: option 54 = 100.64.0.1.
	r.fromServerAt(ispSID, serverReply(up[ispSID], dhcpv4.MessageTypeOffer, ispSID, ourSID))
	r.fromServerAt(second, serverReply(up[second], dhcpv4.MessageTypeOffer, second, ourSID))
	_, toClient := r.relayedTo()
	if len(toClient) != 1 {
		for _, m := range toClient {
			t.Logf("delivered %s of %v", m.MessageType(), m.YourIPAddr)
		}
		t.Errorf("subscriber got %d OFFERs from the two servers, want only the first", len(toClient))
	}
}

// An ISP server that carries part of its options in the 'file' field
// (option 52 = 1, RFC 2131 §4.1 / RFC 2132 §9.3: a client MUST interpret
// them) answers the DISCOVER: the subscriber gets the OFFER with option 52
// and the file field's options as the server sent them, less the ISP's
// lease and relay options. Before, the reply was dropped as
// server_malformed and the exchange timed out with an event saying the
// ISP did not answer.
func TestServerOptionOverload(t *testing.T) {
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	got := r.serve(func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := kea(t, time.Minute)(m)
		rep.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionOptionOverload, []byte{1}))
		// DNS 8.8.8.8 in the file field, then END.
		rep.BootFileName = string([]byte{6, 4, 8, 8, 8, 8, 255})
		return rep
	})
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("subscriber got %v (counters %v), want the ISP's OFFER", got, r.p.Counters())
	}
	if o := got[0].Options.Get(dhcpv4.OptionOptionOverload); len(o) != 1 || o[0] != 1 {
		t.Errorf("option 52 = %v, want 1", o)
	}
	if f := []byte(got[0].BootFileName); len(f) < 7 || string(f[:7]) != string([]byte{6, 4, 8, 8, 8, 8, 255}) {
		t.Errorf("file field %x, want DNS 8.8.8.8 then END", f)
	}
}

// The options a server put in the file and sname fields are filtered as
// those of the options field: its lease options and server identifier
// never reach the subscriber (ours are in the options field), the others
// do.
func TestServerOptionOverloadFiltered(t *testing.T) {
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	got := r.serve(func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := kea(t, time.Minute)(m)
		rep.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionOptionOverload, []byte{3}))
		// file: lease time, DNS, T1; sname: a server-id, 82, a domain
		// name (no zero byte: the parser reads these fields as strings).
		rep.BootFileName = string([]byte{51, 4, 1, 1, 1, 1, 6, 4, 8, 8, 8, 8, 58, 4, 2, 2, 2, 2, 255})
		rep.ServerHostName = string([]byte{54, 4, 192, 9, 2, 1, 82, 3, 1, 1, 'x', 15, 3, 'i', 's', 'p', 255})
		return rep
	})
	if len(got) != 1 {
		t.Fatalf("subscriber got %v (counters %v)", got, r.p.Counters())
	}
	if f, want := []byte(got[0].BootFileName), []byte{6, 4, 8, 8, 8, 8, 255}; len(f) < len(want) || string(f[:len(want)]) != string(want) || strings.Trim(string(f[len(want):]), "\x00") != "" {
		t.Errorf("file field %x, want only DNS then END", f)
	}
	if f, want := []byte(got[0].ServerHostName), []byte{15, 3, 'i', 's', 'p', 255}; len(f) < len(want) || string(f[:len(want)]) != string(want) {
		t.Errorf("sname field %x, want only the domain name then END", f)
	}
	if sid := got[0].ServerIdentifier(); !sid.Equal(net.IP(ourSID.AsSlice())) {
		t.Errorf("server-id %v, want ours", sid)
	}
}

// With server-id override, the REQUEST goes to the server whose OFFER was
// taken only: the others, which see our address as the server-id too,
// cannot tell they were not chosen and would NAK an address they did not
// offer.
func TestOverrideRequestToChosenServer(t *testing.T) {
	r, second := twoServers(t, true)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	up, _ := r.relayedTo()
	r.fromServerAt(second, serverReply(up[second], dhcpv4.MessageTypeOffer, second, ourSID))
	_, toClient := r.relayedTo()
	if len(toClient) != 1 {
		t.Fatalf("subscriber got %d messages, want the OFFER", len(toClient))
	}
	req, _ := dhcpv4.NewRequestFromOffer(toClient[0])
	r.fromClient(req)
	up, _ = r.relayedTo()
	if len(up) != 1 || up[second] == nil {
		t.Errorf("REQUEST relayed to %d servers (%v), want the chosen one only", len(up), up)
	}
}

// bindThrough runs s1's DORA on r (twoServers with server-id override)
// with server srv answering (its identifier ours, as under override).
func (r *prig) bindThrough(srv netip.Addr) { r.t.Helper(); r.bindVia(srv, ourSID) }

// bindVia runs s1's DORA on r (twoServers) with server srv answering and
// naming sid as its identifier, mods applied to its ACK, and fails the
// test unless s1 is bound. With server-id override the REQUEST must have
// gone to srv only.
func (r *prig) bindVia(srv, sid netip.Addr, mods ...func(ack *dhcpv4.DHCPv4)) {
	r.t.Helper()
	r.fromClient(discover(r.t, dhcpv4.WithHwAddr(mac(s1))))
	up, _ := r.relayedTo()
	r.fromServerAt(srv, serverReply(up[srv], dhcpv4.MessageTypeOffer, srv, sid))
	_, toClient := r.relayedTo()
	if len(toClient) != 1 {
		r.t.Fatalf("subscriber got %v, want the OFFER", toClient)
	}
	req, _ := dhcpv4.NewRequestFromOffer(toClient[0])
	r.fromClient(req)
	up, _ = r.relayedTo()
	if up[srv] == nil || r.p.isps["alpha"].ServerIDOverride && len(up) != 1 {
		r.t.Fatalf("REQUEST relayed to %v, want the chosen server %v (only, with override)", up, srv)
	}
	ack := serverReply(up[srv], dhcpv4.MessageTypeAck, srv, sid)
	for _, mod := range mods {
		mod(ack)
	}
	r.fromServerAt(srv, ack)
	if _, toClient = r.relayedTo(); len(toClient) != 1 || toClient[0].MessageType() != dhcpv4.MessageTypeAck || !r.tab.isBound(s1MAC) {
		r.t.Fatalf("subscriber got %v, want the ACK and a binding", toClient)
	}
}
