package dhcpproxy

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
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

// rapidAck is server srv's rapid-commit ACK (RFC 4039: option 80) to the
// relayed DISCOVER m, naming itself as server identifier.
func rapidAck(m *dhcpv4.DHCPv4, srv netip.Addr) *dhcpv4.DHCPv4 {
	ack := serverReply(m, dhcpv4.MessageTypeAck, srv, srv)
	ack.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRapidCommit, nil))
	return ack
}

// A rapid-commit DISCOVER (RFC 4039) goes to both servers of the ISP, and
// both commit a lease and ACK. The first ACK is bound; the second server
// has committed 100.64.0.103 to the client, which will never use it
// (RFC 3315 §22.14, which RFC 4039 follows: "some servers will commit
// addresses that are not actually used by the client"): ispmux, which
// holds the client's side of the exchange, releases it, once, to that
// server, as the client would its own lease: ciaddr the address that
// server committed, its server identifier, the DISCOVER's Option 82 and
// client identifier, giaddr ours. Before, the second ACK found no
// transaction and was dropped: the address stayed held for nobody until
// the ISP's lease ran out.
func TestRapidCommitSecondServerReleased(t *testing.T) {
	r, second := twoServers(t, false)
	clientID := []byte{1, 2, 0, 0, 0, 1, 1}
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)), dhcpv4.WithGeneric(dhcpv4.OptionRapidCommit, nil),
		dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, clientID)))
	up, _ := r.relayedTo()
	if up[ispSID] == nil || up[second] == nil {
		t.Fatalf("rapid-commit DISCOVER relayed to %v, want both servers", keys(up))
	}
	op82 := up[second].Options.Get(dhcpv4.OptionRelayAgentInformation)
	r.fromServerAt(ispSID, rapidAck(up[ispSID], ispSID))
	if _, toClient := r.relayedTo(); len(toClient) != 1 || toClient[0].MessageType() != dhcpv4.MessageTypeAck || !r.tab.isBound(s1MAC) {
		t.Fatalf("subscriber got %v, want the first server's ACK and a binding", toClient)
	}
	late := rapidAck(up[second], second)
	r.fromServerAt(second, late)
	sent, toClient := r.relayedTo()
	if len(toClient) != 0 {
		t.Errorf("second server's rapid-commit ACK delivered too: %v", toClient[0].YourIPAddr)
	}
	rel := sent[second]
	if rel == nil || rel.MessageType() != dhcpv4.MessageTypeRelease {
		t.Fatalf("second server's rapid-commit lease not released: sent %v (counters %v)", sent, r.p.Counters())
	}
	if sent[ispSID] != nil {
		t.Errorf("the bound server was sent a %s", sent[ispSID].MessageType())
	}
	if !rel.ClientIPAddr.Equal(net.IPv4(100, 64, 0, 103)) || !rel.GatewayIPAddr.Equal(net.IP(giaddr.AsSlice())) ||
		!rel.ServerIdentifier().Equal(net.IP(second.AsSlice())) || rel.ClientHWAddr.String() != s1 {
		t.Errorf("RELEASE ciaddr %v giaddr %v server-id %v chaddr %v; want 100.64.0.103, %v, %v, %s",
			rel.ClientIPAddr, rel.GatewayIPAddr, rel.ServerIdentifier(), rel.ClientHWAddr, giaddr, second, s1)
	}
	if got := rel.Options.Get(dhcpv4.OptionRelayAgentInformation); !bytes.Equal(got, op82) {
		t.Errorf("RELEASE Option 82 %x, want the DISCOVER's %x", got, op82)
	}
	if got := rel.Options.Get(dhcpv4.OptionClientIdentifier); !bytes.Equal(got, clientID) {
		t.Errorf("RELEASE client identifier %x, want the client's %x", got, clientID)
	}
	// The same ACK again (the server answering a retransmission): released
	// once only.
	r.fromServerAt(second, late)
	if sent, _ = r.relayedTo(); len(sent) != 0 {
		t.Errorf("second copy of the losing ACK: sent %v again", keys(sent))
	}
	if c := r.p.Counters(); c["rapid_commit_released"] != 1 {
		t.Errorf("rapid_commit_released = %d, want 1 (counters %v)", c["rapid_commit_released"], c)
	}
	if b, err := r.store.Binding("acc0", 0, [6]byte(mac(s1))); err != nil || b.IP != netip.MustParseAddr("100.64.0.101") {
		t.Errorf("binding %v (%v), want 100.64.0.101 from the first server", b.IP, err)
	}
}

// The RELEASE of the losing server's rapid-commit lease is an intent:
// with the ISP's next hop unresolved when that ACK comes, it is stored and
// stays pending, and the tick sends it to that server (only) once the next
// hop is back, then completes it. Before, it was sent directly and lost
// (rapid_commit_not_released): the server held the address for nobody
// until its lease ran out.
func TestRapidCommitReleaseSentWhenUplinkBack(t *testing.T) {
	r, second := twoServers(t, false)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)), dhcpv4.WithGeneric(dhcpv4.OptionRapidCommit, nil)))
	r.p.committing.Wait()
	up, _ := r.relayedTo()
	if up[ispSID] == nil || up[second] == nil {
		t.Fatalf("rapid-commit DISCOVER relayed to %v, want both servers", keys(up))
	}
	r.fromServerAt(ispSID, rapidAck(up[ispSID], ispSID))
	if _, toClient := r.relayedTo(); len(toClient) != 1 || !r.tab.isBound(s1MAC) {
		t.Fatalf("subscriber got %v, want the first server's ACK and a binding", toClient)
	}
	r.setUplinkDown(true)
	r.fromServerAt(second, rapidAck(up[second], second))
	if sent, _ := r.relayedTo(); len(sent) != 0 {
		t.Fatalf("sent %v with the uplink down", keys(sent))
	}
	ins, err := r.store.Intents()
	if err != nil || len(ins) != 1 || ins[0].Kind != subscribers.IntentReleaseUnbound || ins[0].IP != netip.MustParseAddr("100.64.0.103") {
		t.Fatalf("intents %+v, %v; want the RELEASE of 100.64.0.103 pending (counters %v)", ins, err, r.p.Counters())
	}
	if c := r.p.Counters(); c["rapid_commit_released"] != 1 || c["rapid_commit_not_released"] != 0 {
		t.Errorf("counters %v; want rapid_commit_released 1 (recorded)", c)
	}
	r.setUplinkDown(false)
	r.p.expire(time.Now())
	sent, _ := r.relayedTo()
	if rel := sent[second]; len(sent) != 1 || rel == nil || rel.MessageType() != dhcpv4.MessageTypeRelease ||
		!rel.ClientIPAddr.Equal(net.IPv4(100, 64, 0, 103)) || !rel.ServerIdentifier().Equal(net.IP(second.AsSlice())) {
		t.Fatalf("uplink back: sent %v, want the RELEASE of 100.64.0.103 to %v only", sent, second)
	}
	r.p.expire(time.Now().Add(time.Second))
	if sent, _ := r.relayedTo(); len(sent) != 0 {
		t.Errorf("the RELEASE was sent again: %v", keys(sent))
	}
	if ins, _ := r.store.Intents(); len(ins) != 0 || r.p.PendingIntents() != 0 {
		t.Errorf("intents %+v after the tick; want the RELEASE completed", ins)
	}
}

// Two servers sharing one lease database (a Kea HA pair, or servers on
// one SQL backend) both ACK a rapid-commit DISCOVER with the same
// address: that lease is the one bound, and releasing it to the second
// server would free the address the subscriber uses. Nothing is sent.
func TestRapidCommitSameAddressNotReleased(t *testing.T) {
	r, second := twoServers(t, false)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)), dhcpv4.WithGeneric(dhcpv4.OptionRapidCommit, nil)))
	up, _ := r.relayedTo()
	r.fromServerAt(ispSID, rapidAck(up[ispSID], ispSID))
	r.relayedTo()
	same := rapidAck(up[second], second)
	same.YourIPAddr = net.IPv4(100, 64, 0, 101)
	r.fromServerAt(second, same)
	if sent, toClient := r.relayedTo(); len(sent) != 0 || len(toClient) != 0 {
		t.Errorf("second ACK of the bound address: sent the ISP %v, the subscriber %d messages", keys(sent), len(toClient))
	}
	if !r.tab.isBound(s1MAC) {
		t.Error("binding lost")
	}
}

// The client's REQUEST names the first server (RFC 2131 §4.3.2: the
// server identifier of the OFFER it took); ispmux relays it to both
// servers so the second sees it was not chosen (§3.1 step 3: "Those
// servers not selected by the DHCPREQUEST message use the message as
// notification that the client has declined that server's offer"). A
// second server that ACKs anyway (its own offer, 100.64.0.103) first must
// not be bound: the client asked for 100.64.0.101, the first server is
// committing it, and its ACK, which follows, would then find no
// transaction. Before, the wrong server's ACK was bound and delivered.
func TestAckFromServerNotSelectedIgnored(t *testing.T) {
	r, second := twoServers(t, false)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	up, _ := r.relayedTo()
	discToB := up[second]
	r.fromServerAt(ispSID, serverReply(up[ispSID], dhcpv4.MessageTypeOffer, ispSID, ispSID))
	_, toClient := r.relayedTo()
	if len(toClient) != 1 {
		t.Fatalf("subscriber got %v, want the OFFER", toClient)
	}
	req, _ := dhcpv4.NewRequestFromOffer(toClient[0])
	r.fromClient(req)
	up, _ = r.relayedTo()
	if up[second] == nil || up[ispSID] == nil {
		t.Fatalf("REQUEST relayed to %v, want both servers", keys(up))
	}
	// The second server ACKs its own offer (of the DISCOVER, same xid).
	r.fromServerAt(second, serverReply(discToB, dhcpv4.MessageTypeAck, second, second))
	if _, toClient = r.relayedTo(); len(toClient) != 0 {
		t.Errorf("ACK of %v from %v, a server the client did not select, delivered", toClient[0].YourIPAddr, second)
	}
	if r.tab.isBound(s1MAC) {
		t.Errorf("bound by the ACK of %v, a server the client did not select", second)
	}
	if c := r.p.Counters(); c["ack_other_server"] != 1 {
		t.Errorf("ack_other_server = %d, want 1", c["ack_other_server"])
	}
	// The selected server's ACK binds what the client asked for.
	r.fromServerAt(ispSID, serverReply(up[ispSID], dhcpv4.MessageTypeAck, ispSID, ispSID))
	_, toClient = r.relayedTo()
	if len(toClient) != 1 || toClient[0].MessageType() != dhcpv4.MessageTypeAck || !toClient[0].YourIPAddr.Equal(net.IPv4(100, 64, 0, 101)) {
		t.Fatalf("subscriber got %v after the selected server's ACK, want its ACK of 100.64.0.101 (counters %v)", toClient, r.p.Counters())
	}
	if b, err := r.store.Binding("acc0", 0, [6]byte(mac(s1))); err != nil || b.IP != netip.MustParseAddr("100.64.0.101") {
		t.Errorf("binding %v (%v), want 100.64.0.101", b.IP, err)
	}
}

// With server-id override every server names ispmux's address, so the
// identifier does not tell which server the client selected: the source
// does. The REQUEST went to the chosen server only; an ACK with its xid
// from the other one, which was never sent that REQUEST (a misbehaving
// server), is not bound.
func TestOverrideAckFromServerNotSelectedIgnored(t *testing.T) {
	r, second := twoServers(t, true)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	up, _ := r.relayedTo()
	discToB := up[second]
	r.fromServerAt(ispSID, serverReply(up[ispSID], dhcpv4.MessageTypeOffer, ispSID, ourSID))
	_, toClient := r.relayedTo()
	req, _ := dhcpv4.NewRequestFromOffer(toClient[0])
	r.fromClient(req)
	up, _ = r.relayedTo()
	r.fromServerAt(second, serverReply(discToB, dhcpv4.MessageTypeAck, second, ourSID))
	if _, toClient = r.relayedTo(); len(toClient) != 0 || r.tab.isBound(s1MAC) {
		t.Errorf("ACK from %v, a server the client did not select, delivered (%d) or bound", second, len(toClient))
	}
	r.fromServerAt(ispSID, serverReply(up[ispSID], dhcpv4.MessageTypeAck, ispSID, ourSID))
	if _, toClient = r.relayedTo(); len(toClient) != 1 || !toClient[0].YourIPAddr.Equal(net.IPv4(100, 64, 0, 101)) || !r.tab.isBound(s1MAC) {
		t.Errorf("subscriber got %v after the selected server's ACK, want its ACK of 100.64.0.101 and a binding", toClient)
	}
}

// s1 holds 100.64.0.103, granted by the second server. Its rapid-commit
// DISCOVER is ACKed by both servers: the first with 100.64.0.101, which a
// static customer holds (declined, s1 NAKed: nothing bound, its binding
// of 100.64.0.103 stays), the second with 100.64.0.103, s1's own lease.
// That lease is still bound: a RELEASE of it would free at the ISP an
// address ispmux forwards for (a phantom the ISP may give to another).
func TestRapidCommitBoundAddressNotReleased(t *testing.T) {
	r, second := twoServers(t, false)
	r.bindVia(second, second)
	held := netip.MustParseAddr("100.64.0.103")
	if l, ok := r.p.Lease(accPort, 0, s1MAC); !ok || l.IP != held {
		t.Fatalf("s1 holds %v (%v), want %v", l.IP, ok, held)
	}
	static := binding.Binding{Port: accPort, MAC: 0x020000000199, IP: netip.MustParseAddr("100.64.0.101"), Static: true}
	r.tab.bound[static.MAC] = static
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)), dhcpv4.WithGeneric(dhcpv4.OptionRapidCommit, nil)))
	up, _ := r.relayedTo()
	r.fromServerAt(ispSID, rapidAck(up[ispSID], ispSID))
	r.relayedTo()
	r.fromServerAt(second, rapidAck(up[second], second))
	sent, _ := r.relayedTo()
	if m := sent[second]; m != nil && m.MessageType() == dhcpv4.MessageTypeRelease {
		t.Errorf("RELEASE of %v sent to %v while s1's binding of it is held (counters %v)", m.ClientIPAddr, second, r.p.Counters())
	}
	if l, ok := r.p.Lease(accPort, 0, s1MAC); !ok || l.IP != held {
		t.Errorf("s1's binding %v (%v), want %v kept", l.IP, ok, held)
	}
}

// The losing server's rapid-commit ACK names 100.64.0.103, an address
// another subscriber's installed binding holds at that ISP (a server that
// gave it twice): nothing is released. That RELEASE, naming s1's client,
// could free the other's lease at a server keying leases by address, the
// same rule as for an ACK refused (releaseRefused) or too big
// (releaseTooBig). Before, releaseUnused checked only s1's own binding
// (holds) and sent it.
func TestRapidCommitAnothersAddressNotReleased(t *testing.T) {
	r, second := twoServers(t, false)
	other := binding.Binding{Port: accPort, MAC: 0x020000000102, IP: netip.MustParseAddr("100.64.0.103")}
	r.tab.bound[other.MAC] = other
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)), dhcpv4.WithGeneric(dhcpv4.OptionRapidCommit, nil)))
	up, _ := r.relayedTo()
	if up[ispSID] == nil || up[second] == nil {
		t.Fatalf("rapid-commit DISCOVER relayed to %v, want both servers", keys(up))
	}
	r.fromServerAt(ispSID, rapidAck(up[ispSID], ispSID))
	if _, toClient := r.relayedTo(); len(toClient) != 1 || !r.tab.isBound(s1MAC) {
		t.Fatalf("subscriber got %v, want the first server's ACK and a binding", toClient)
	}
	r.fromServerAt(second, rapidAck(up[second], second))
	if sent, _ := r.relayedTo(); sent[second] != nil {
		t.Errorf("sent %v a %s of %v, the address another subscriber's binding holds (counters %v)",
			second, sent[second].MessageType(), sent[second].ClientIPAddr, r.p.Counters())
	}
	if c := r.p.Counters(); c["rapid_commit_released"] != 0 || c["rapid_commit_extra_ack"] != 1 {
		t.Errorf("counters %v; want rapid_commit_extra_ack 1, nothing released", c)
	}
}

// The first server answers s1's rapid-commit DISCOVER with an OFFER (it
// does not do rapid commit), delivered; s1 REQUESTs it. The second server
// then ACKs the DISCOVER (rapid commit): it has committed 100.64.0.103 to
// s1, which took the other server's OFFER. That ACK is not bound (the
// client selected the first server), and its lease is released to the
// second server, once, as a second rapid-commit ACK is. Before, it was
// only counted (ack_other_server): the address stayed held for nobody.
func TestRapidCommitAckAfterSelectingReleased(t *testing.T) {
	r, second := twoServers(t, false)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)), dhcpv4.WithGeneric(dhcpv4.OptionRapidCommit, nil)))
	up, _ := r.relayedTo()
	discToB := up[second]
	r.fromServerAt(ispSID, serverReply(up[ispSID], dhcpv4.MessageTypeOffer, ispSID, ispSID))
	_, toClient := r.relayedTo()
	if len(toClient) != 1 {
		t.Fatalf("subscriber got %v, want the OFFER", toClient)
	}
	req, _ := dhcpv4.NewRequestFromOffer(toClient[0])
	r.fromClient(req)
	up, _ = r.relayedTo()
	late := rapidAck(discToB, second)
	r.fromServerAt(second, late)
	sent, toClient := r.relayedTo()
	if len(toClient) != 0 || r.tab.isBound(s1MAC) {
		t.Fatalf("the second server's rapid-commit ACK was delivered (%d) or bound", len(toClient))
	}
	rel := sent[second]
	if rel == nil || rel.MessageType() != dhcpv4.MessageTypeRelease || !rel.ClientIPAddr.Equal(net.IPv4(100, 64, 0, 103)) {
		t.Fatalf("second server's rapid-commit lease not released: sent %v (counters %v)", sent, r.p.Counters())
	}
	r.fromServerAt(second, late)
	if sent, _ = r.relayedTo(); len(sent) != 0 {
		t.Errorf("second copy of the ACK: sent %v again", keys(sent))
	}
	r.fromServerAt(ispSID, serverReply(up[ispSID], dhcpv4.MessageTypeAck, ispSID, ispSID))
	if _, toClient = r.relayedTo(); len(toClient) != 1 || !toClient[0].YourIPAddr.Equal(net.IPv4(100, 64, 0, 101)) || !r.tab.isBound(s1MAC) {
		t.Errorf("subscriber got %v after the selected server's ACK, want its ACK of 100.64.0.101 and a binding", toClient)
	}
}

// sidOf is server srv's identifier: its address, or ours under server-id
// override.
func (r *prig) sidOf(srv netip.Addr) netip.Addr {
	if r.p.isps["alpha"].ServerIDOverride {
		return ourSID
	}
	return srv
}

// offerFrom has server srv answer the DISCOVER relayed to it (in up) with
// an OFFER naming its identifier (sidOf), and returns what the subscriber
// was sent.
func (r *prig) offerFrom(up map[netip.Addr]*dhcpv4.DHCPv4, srv netip.Addr) []*dhcpv4.DHCPv4 {
	r.t.Helper()
	if up[srv] == nil || up[srv].MessageType() != dhcpv4.MessageTypeDiscover {
		r.t.Fatalf("no DISCOVER relayed to %v (relayed: %v)", srv, up)
	}
	r.fromServerAt(srv, serverReply(up[srv], dhcpv4.MessageTypeOffer, srv, r.sidOf(srv)))
	_, toClient := r.relayedTo()
	return toClient
}

// wantOfferOf fails the test unless got is the one OFFER of server srv
// (serverReply's address for it).
func wantOfferOf(t *testing.T, got []*dhcpv4.DHCPv4, srv netip.Addr, counters map[string]uint64) {
	t.Helper()
	want := net.IPv4(100, 64, 0, 100+srv.As4()[3])
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer || !got[0].YourIPAddr.Equal(want) {
		for _, m := range got {
			t.Logf("subscriber got %s of %v", m.MessageType(), m.YourIPAddr)
		}
		t.Fatalf("subscriber got %d messages, want the OFFER of %v from %v (offer_other_server %d)",
			len(got), want, srv, counters["offer_other_server"])
	}
}

// finishWith has the subscriber REQUEST the offer (delivered from server
// srv) and srv ACK it, and fails the test unless the REQUEST named srv's
// identifier (and went to srv only, under server-id override) and the
// subscriber is bound.
func (r *prig) finishWith(offer *dhcpv4.DHCPv4, srv netip.Addr) {
	r.t.Helper()
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	r.fromClient(req)
	up, _ := r.relayedTo()
	sid := r.sidOf(srv)
	if up[srv] == nil || !up[srv].ServerIdentifier().Equal(net.IP(sid.AsSlice())) || sid == ourSID && len(up) != 1 {
		r.t.Fatalf("REQUEST relayed as %v, want it to %v naming %v", up, srv, sid)
	}
	r.fromServerAt(srv, serverReply(up[srv], dhcpv4.MessageTypeAck, srv, sid))
	_, toClient := r.relayedTo()
	if len(toClient) != 1 || toClient[0].MessageType() != dhcpv4.MessageTypeAck || !r.tab.isBound(s1MAC) {
		r.t.Fatalf("subscriber got %v, want %v's ACK and a binding", toClient, srv)
	}
}

// Two servers (a Kea HA pair, or two independent ones); the first's OFFER
// is taken, but it never answers the client's REQUEST: past dhcp.timeout
// the REQUEST's transaction ends, the client retransmits it (a new
// transaction, the remembered OFFER's server chosen), gives up and goes
// back to INIT with a new DISCOVER under the same xid (RFC 2131 lets the
// client keep it; some do). The other server's OFFER to that DISCOVER must
// reach the client: the first server is the one failing. Before, the
// DISCOVER took over the REQUEST's transaction with the first server still
// chosen, and the second's OFFER was dropped (offer_other_server) — the
// client got no address while a server was there to serve it.
func TestRediscoverAfterUnansweredRequest(t *testing.T) {
	r, second := twoServers(t, false)
	d := discover(t, dhcpv4.WithHwAddr(mac(s1)))
	r.fromClient(d)
	up, _ := r.relayedTo()
	got := r.offerFrom(up, ispSID)
	wantOfferOf(t, got, ispSID, r.p.Counters())
	req, _ := dhcpv4.NewRequestFromOffer(got[0])
	r.fromClient(req)
	r.relayedTo() // the first server is silent, the second was not chosen
	r.p.expire(time.Now().Add(time.Second))
	if evs := r.eventsOf(subscribers.EventTimeout); len(evs) != 1 {
		t.Fatalf("timeout events %d, want the REQUEST's", len(evs))
	}
	r.fromClient(req) // a retransmission, still unanswered
	r.relayedTo()
	r.fromClient(d) // back to INIT, the same xid
	up, _ = r.relayedTo()
	if len(up) != 2 {
		t.Fatalf("new DISCOVER relayed to %d servers, want both", len(up))
	}
	got = r.offerFrom(up, second)
	wantOfferOf(t, got, second, r.p.Counters())
	r.finishWith(got[0], second)
}

// As TestRediscoverAfterUnansweredRequest, the client going back to INIT
// while its REQUEST's transaction is still waiting (it retransmitted it
// less than dhcp.timeout before): the same, with server-id override too
// (the servers told apart by address).
func TestRediscoverWhileRequestPending(t *testing.T) {
	for _, override := range []bool{false, true} {
		t.Run(fmt.Sprint("override=", override), func(t *testing.T) { rediscoverWhileRequestPending(t, override) })
	}
}

func rediscoverWhileRequestPending(t *testing.T, override bool) {
	r, second := twoServers(t, override)
	d := discover(t, dhcpv4.WithHwAddr(mac(s1)))
	r.fromClient(d)
	up, _ := r.relayedTo()
	got := r.offerFrom(up, ispSID)
	wantOfferOf(t, got, ispSID, r.p.Counters())
	req, _ := dhcpv4.NewRequestFromOffer(got[0])
	r.fromClient(req)
	r.fromClient(req)
	r.relayedTo()
	r.fromClient(d)
	up, _ = r.relayedTo()
	got = r.offerFrom(up, second)
	wantOfferOf(t, got, second, r.p.Counters())
	// The first server, back, offers too: the second's was taken.
	if got := r.offerFrom(up, ispSID); len(got) != 0 {
		t.Errorf("a second OFFER to one DISCOVER delivered: %v", got[0].YourIPAddr)
	}
	r.finishWith(got[0], second)
}

// The chosen server NAKs the REQUEST (its partner holds the client's
// lease, say); the client goes back to INIT under the same xid, and the
// other server's OFFER reaches it.
func TestRediscoverAfterNak(t *testing.T) {
	r, second := twoServers(t, false)
	d := discover(t, dhcpv4.WithHwAddr(mac(s1)))
	r.fromClient(d)
	up, _ := r.relayedTo()
	got := r.offerFrom(up, ispSID)
	wantOfferOf(t, got, ispSID, r.p.Counters())
	req, _ := dhcpv4.NewRequestFromOffer(got[0])
	r.fromClient(req)
	up, _ = r.relayedTo()
	r.fromServerAt(ispSID, serverReply(up[ispSID], dhcpv4.MessageTypeNak, ispSID, ispSID))
	if _, toClient := r.relayedTo(); len(toClient) != 1 || toClient[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("subscriber got %v, want the NAK", toClient)
	}
	r.fromClient(d)
	up, _ = r.relayedTo()
	got = r.offerFrom(up, second)
	wantOfferOf(t, got, second, r.p.Counters())
	r.finishWith(got[0], second)
}

// The client declines the first server's address (in use on its link) and
// goes back to INIT under the same xid: the other server's OFFER reaches
// it.
func TestRediscoverAfterDecline(t *testing.T) {
	r, second := twoServers(t, false)
	d := discover(t, dhcpv4.WithHwAddr(mac(s1)))
	r.fromClient(d)
	up, _ := r.relayedTo()
	got := r.offerFrom(up, ispSID)
	wantOfferOf(t, got, ispSID, r.p.Counters())
	r.finishWith(got[0], ispSID)
	r.fromClient(clientMsg(t, s1, dhcpv4.MessageTypeDecline, dhcpv4.WithTransactionID(d.TransactionID),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(got[0].YourIPAddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice())))))
	r.p.committing.Wait()
	r.p.notes.wait()
	if r.tab.isBound(s1MAC) {
		t.Fatal("still bound after the DECLINE")
	}
	r.relayedTo()
	r.fromClient(d)
	up, _ = r.relayedTo()
	got = r.offerFrom(up, second)
	wantOfferOf(t, got, second, r.p.Counters())
	r.finishWith(got[0], second)
}

// A DISCOVER retransmitted (the same xid) while the first is pending, or
// after the OFFER taken was lost on the access link, is the same
// selection: one OFFER delivered, from the server taken first, and a
// later one from another server is dropped (the REQUEST will name the
// first). TestRetransmissionOutlivesDeadline relies on the retransmission
// staying in the first copy's transaction too.
func TestRetransmittedDiscoverOneSelection(t *testing.T) {
	r, second := twoServers(t, false)
	d := discover(t, dhcpv4.WithHwAddr(mac(s1)))
	r.fromClient(d)
	first, _ := r.relayedTo()
	r.fromClient(d) // no answer yet: retransmitted
	r.relayedTo()
	got := r.offerFrom(first, ispSID)
	wantOfferOf(t, got, ispSID, r.p.Counters())
	if got := r.offerFrom(first, second); len(got) != 0 {
		t.Fatalf("the second server's OFFER to the same DISCOVER delivered: %v", got[0].YourIPAddr)
	}
	r.fromClient(d) // the OFFER was lost: retransmitted again
	up, _ := r.relayedTo()
	if got := r.offerFrom(up, second); len(got) != 0 {
		t.Fatalf("the second server's OFFER to the retransmission delivered: %v", got[0].YourIPAddr)
	}
	got = r.offerFrom(up, ispSID)
	wantOfferOf(t, got, ispSID, r.p.Counters())
	r.finishWith(got[0], ispSID)
}

// rediscoverPending has the subscriber take server srv's OFFER, REQUEST
// it, and go back to INIT under the same xid (a DISCOVER) before srv
// answers the REQUEST; it returns the relayed REQUEST and DISCOVER (to
// srv).
func (r *prig) rediscoverPending(srv netip.Addr) (req, disc *dhcpv4.DHCPv4) {
	r.t.Helper()
	return r.rediscoverPendingOf(s1, srv)
}

// rediscoverPendingOf is rediscoverPending for the subscriber of MAC m.
func (r *prig) rediscoverPendingOf(m string, srv netip.Addr) (req, disc *dhcpv4.DHCPv4) {
	r.t.Helper()
	d := discover(r.t, dhcpv4.WithHwAddr(mac(m)))
	r.fromClient(d)
	up, _ := r.relayedTo()
	got := r.offerFrom(up, srv)
	wantOfferOf(r.t, got, srv, r.p.Counters())
	creq, _ := dhcpv4.NewRequestFromOffer(got[0])
	r.fromClient(creq)
	up, _ = r.relayedTo()
	req = up[srv]
	r.fromClient(d)
	up, _ = r.relayedTo()
	disc = up[srv]
	if req == nil || req.MessageType() != dhcpv4.MessageTypeRequest || disc == nil || disc.MessageType() != dhcpv4.MessageTypeDiscover {
		r.t.Fatalf("relayed REQUEST %v, DISCOVER %v", req, disc)
	}
	return req, disc
}

// The client gave up its REQUEST and went back to INIT under the same xid
// (its DISCOVER took over the REQUEST's transaction); the server's ACK to
// the REQUEST comes after. The client, SELECTING, takes no ACK: it is not
// bound, stored nor delivered (ack_after_discover), no RELEASE is sent
// (the server offers that lease again), and the DISCOVER's OFFER, after
// it, reaches the client, whose REQUEST is then bound. Before, the late
// ACK was bound and delivered as a rapid-commit answer to the DISCOVER,
// which it took: the OFFER found no transaction (no_transaction).
func TestLateAckAfterRediscoverNotBound(t *testing.T) {
	r := newPRig(t)
	req, disc := r.rediscoverPending(ispSID)
	r.fromServerAt(ispSID, serverReply(req, dhcpv4.MessageTypeAck, ispSID, ispSID))
	up, toClient := r.relayedTo()
	if len(toClient) != 0 || len(up) != 0 || r.tab.isBound(s1MAC) {
		t.Errorf("late ACK of the REQUEST: subscriber got %v, ISP sent %v, bound %v; want nothing", toClient, up, r.tab.isBound(s1MAC))
	}
	if _, err := r.store.Binding("acc0", 0, [6]byte(mac(s1))); err == nil {
		t.Error("a binding stored for an ACK the client, SELECTING, does not take")
	}
	if n := r.p.Counters()["ack_after_discover"]; n != 1 {
		t.Errorf("ack_after_discover %d, want 1", n)
	}
	got := r.offerFrom(map[netip.Addr]*dhcpv4.DHCPv4{ispSID: disc}, ispSID)
	wantOfferOf(t, got, ispSID, r.p.Counters())
	r.finishWith(got[0], ispSID)
	r.p.expire(time.Now().Add(time.Second))
	if evs := r.eventsOf(subscribers.EventTimeout); len(evs) != 0 {
		t.Errorf("timeout events %v: the REQUEST was answered", evs)
	}
}

// As TestLateAckAfterRediscoverNotBound, the ISP never answering the
// REQUEST: its silence is still a timeout event, though the DISCOVER that
// took over its transaction was answered. Before, it was reported by
// nobody.
func TestOvertakenRequestTimeoutReported(t *testing.T) {
	r := newPRig(t)
	_, disc := r.rediscoverPending(ispSID)
	got := r.offerFrom(map[netip.Addr]*dhcpv4.DHCPv4{ispSID: disc}, ispSID)
	wantOfferOf(t, got, ispSID, r.p.Counters())
	r.p.expire(time.Now().Add(time.Second))
	evs := r.eventsOf(subscribers.EventTimeout)
	if len(evs) != 1 || !strings.Contains(evs[0].Reason, "REQUEST") {
		t.Fatalf("timeout events %v, want the REQUEST's", evs)
	}
}

// As TestLateAckAfterRediscoverNotBound, the server NAKing the REQUEST:
// the refusal is recorded (a nak event, nak_after_discover), not sent to
// the client (SELECTING, it takes none), not taken for the DISCOVER's NAK,
// and the DISCOVER's OFFER still reaches the client.
func TestLateNakAfterRediscover(t *testing.T) {
	r := newPRig(t)
	req, disc := r.rediscoverPending(ispSID)
	r.fromServerAt(ispSID, serverReply(req, dhcpv4.MessageTypeNak, ispSID, ispSID))
	if _, toClient := r.relayedTo(); len(toClient) != 0 {
		t.Errorf("late NAK of the REQUEST delivered: %v", toClient)
	}
	if evs := r.eventsOf(subscribers.EventNak); len(evs) != 1 || evs[0].IP != netip.MustParseAddr("100.64.0.101") {
		t.Errorf("nak events %v, want the REQUEST's of 100.64.0.101", evs)
	}
	c := r.p.Counters()
	if c["nak_after_discover"] != 1 || c["nak_not_request"] != 0 {
		t.Errorf("nak_after_discover %d, nak_not_request %d; want 1, 0", c["nak_after_discover"], c["nak_not_request"])
	}
	got := r.offerFrom(map[netip.Addr]*dhcpv4.DHCPv4{ispSID: disc}, ispSID)
	wantOfferOf(t, got, ispSID, r.p.Counters())
	r.finishWith(got[0], ispSID)
}

// As TestLateNakAfterRediscover, the client bound before at another
// address: the NAK ends that binding and releases its address to the ISP
// (the client left it), and the DISCOVER's OFFER still reaches the client.
// Before, the RELEASE's intent dropped the subscriber's transactions in
// flight with the binding, the DISCOVER's among them: its OFFER found no
// transaction (a review).
func TestLateNakAfterRediscoverBound(t *testing.T) {
	r := newPRig(t)
	if got := r.dora(s1, kea(t, time.Hour), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck || !got[0].YourIPAddr.Equal(net.ParseIP(s1Addr)) {
		t.Fatalf("DORA: %v", got)
	}
	req, disc := r.rediscoverPending(ispSID)
	r.fromServerAt(ispSID, serverReply(req, dhcpv4.MessageTypeNak, ispSID, ispSID))
	up, toClient := r.relayedTo()
	if len(toClient) != 0 {
		t.Errorf("late NAK of the REQUEST delivered: %v", toClient)
	}
	if rel := up[ispSID]; rel == nil || rel.MessageType() != dhcpv4.MessageTypeRelease || !rel.ClientIPAddr.Equal(net.ParseIP(s1Addr)) {
		t.Errorf("sent the ISP %v, want the RELEASE of %s", up, s1Addr)
	}
	if c := r.p.Counters(); c["transactions_dropped_at_end"] != 0 {
		t.Errorf("transactions_dropped_at_end %d, want 0", c["transactions_dropped_at_end"])
	}
	got := r.offerFrom(map[netip.Addr]*dhcpv4.DHCPv4{ispSID: disc}, ispSID)
	wantOfferOf(t, got, ispSID, r.p.Counters())
}

// As TestLateNakAfterRediscover, with two servers: the server the
// REQUEST did not select (it took the REQUEST as the decline of its
// OFFER, RFC 2131 §4.3.2: no answer) NAKs the DISCOVER. That NAK is the
// DISCOVER's (nak_not_request; if no OFFER comes, its end reports the
// DISCOVER refused), not the REQUEST's, whose silence is still a timeout.
// Before, it was taken for the REQUEST's (nak_after_discover, a nak event
// for the address the REQUEST asked for), the REQUEST's silence went
// unreported, and the DISCOVER's end was reported as silence (a timeout
// event: a refused handover counted as unanswered).
func TestDiscoverNakAfterRediscoverNotRequests(t *testing.T) {
	r, second := twoServers(t, false)
	_, disc := r.rediscoverPending(ispSID)
	r.fromServerAt(second, serverReply(disc, dhcpv4.MessageTypeNak, second, second))
	if _, toClient := r.relayedTo(); len(toClient) != 0 {
		t.Errorf("NAK to the DISCOVER delivered: %v", toClient)
	}
	c := r.p.Counters()
	if c["nak_after_discover"] != 0 || c["nak_not_request"] != 1 {
		t.Errorf("nak_after_discover %d, nak_not_request %d; want 0, 1", c["nak_after_discover"], c["nak_not_request"])
	}
	if evs := r.eventsOf(subscribers.EventNak); len(evs) != 0 {
		t.Errorf("nak events %v before the DISCOVER's end, want none", evs)
	}
	r.p.expire(time.Now().Add(time.Second))
	naks, tos := r.eventsOf(subscribers.EventNak), r.eventsOf(subscribers.EventTimeout)
	if len(naks) != 1 || !strings.Contains(naks[0].Reason, "answered the DISCOVER with a NAK") {
		t.Errorf("nak events %v, want the DISCOVER's", naks)
	}
	if len(tos) != 1 || !strings.Contains(tos[0].Reason, "REQUEST") {
		t.Errorf("timeout events %v, want the REQUEST's only", tos)
	}
}

// As TestLateNakAfterRediscover, the server NAKing the DISCOVER too: its
// first NAK is the REQUEST's (it answers in order), its second the
// DISCOVER's. Before, both were the REQUEST's: two nak events for one
// REQUEST, and the DISCOVER's end reported as silence.
func TestSecondNakAfterRediscoverIsDiscovers(t *testing.T) {
	r := newPRig(t)
	req, disc := r.rediscoverPending(ispSID)
	r.fromServerAt(ispSID, serverReply(req, dhcpv4.MessageTypeNak, ispSID, ispSID))
	r.fromServerAt(ispSID, serverReply(disc, dhcpv4.MessageTypeNak, ispSID, ispSID))
	if _, toClient := r.relayedTo(); len(toClient) != 0 {
		t.Errorf("NAKs delivered: %v", toClient)
	}
	c := r.p.Counters()
	if c["nak_after_discover"] != 1 || c["nak_not_request"] != 1 {
		t.Errorf("nak_after_discover %d, nak_not_request %d; want 1, 1", c["nak_after_discover"], c["nak_not_request"])
	}
	if evs := r.eventsOf(subscribers.EventNak); len(evs) != 1 || evs[0].IP != netip.MustParseAddr("100.64.0.101") {
		t.Errorf("nak events %v, want the REQUEST's of 100.64.0.101 only", evs)
	}
	r.p.expire(time.Now().Add(time.Second))
	naks := r.eventsOf(subscribers.EventNak)
	if len(naks) != 2 || !strings.Contains(naks[1].Reason, "answered the DISCOVER with a NAK") {
		t.Errorf("nak events %v, want the REQUEST's, then the DISCOVER's", naks)
	}
	if tos := r.eventsOf(subscribers.EventTimeout); len(tos) != 0 {
		t.Errorf("timeout events %v: both were answered", tos)
	}
}

// A renewal whose lease's server is no longer one of the ISP's (its
// identifier and the address its ACK came from both unnamed now) goes to
// every server, and the transaction notes as much (relay decides the
// target once, for relayedTo and sendRelay): an ICMP port unreachable for
// the server it went to is the transaction's (server_unreachable), not
// taken for another server's.
func TestRenewalToUnnamedServerUnreachableNoted(t *testing.T) {
	r, second := twoServers(t, false)
	r.bindVia(ispSID, netip.MustParseAddr("198.51.100.7"))
	r.p.isps["alpha"].Servers = []netip.Addr{second}
	ip := netip.MustParseAddr("100.64.0.101")
	r.fromClientUnicast(renewing(t, s1, ip.String()), ip)
	sent := r.snd.take()
	if len(sent) != 1 || sent[0].port != upPort {
		t.Fatalf("relayed %d frames, want the renewal to %v (counters %v)", len(sent), second, r.p.Counters())
	}
	var pkt classifier.Packet
	if pkt.Decode(sent[0].frame) != classifier.ReasonNone || addr4(pkt.DstIP) != second {
		t.Fatalf("renewal relayed to %v, want %v", addr4(pkt.DstIP), second)
	}
	r.unreachableQuoting(3, 0, sent[0].frame[14:])
	if c := r.p.Counters(); c["server_unreachable"] != 1 {
		t.Errorf("server_unreachable %d, want 1 (counters %v)", c["server_unreachable"], c)
	}
}

// sentUp takes what the proxy has sent and returns the DHCP messages of
// type mt among them sent on alpha's uplink (upPort).
func (r *prig) sentUp(mt dhcpv4.MessageType) []*dhcpv4.DHCPv4 {
	var out []*dhcpv4.DHCPv4
	for _, s := range r.snd.take() {
		if m := dhcpOf(s.frame); s.port == upPort && m != nil && m.MessageType() == mt {
			out = append(out, m)
		}
	}
	return out
}

// An ISP's server answers from an address its dhcp_servers does not list
// (a trial: dnsmasq on a second address of its host). The answer is
// dropped (unknown_server), as ISP-SERVERS.md says, and the timeout event
// said only "no answer from the ISP": the ISP did answer. The event names
// the address now.
func TestTimeoutNamesUnlistedServer(t *testing.T) {
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	up, _ := r.relayedTo()
	if up[ispSID] == nil {
		t.Fatal("DISCOVER not relayed")
	}
	other := netip.MustParseAddr("192.0.2.77")
	r.fromServerAt(other, serverReply(up[ispSID], dhcpv4.MessageTypeOffer, other, other))
	if _, toClient := r.relayedTo(); len(toClient) != 0 || r.p.Counters()["unknown_server"] != 1 {
		t.Fatalf("the unlisted server's OFFER: client sent %v, counters %v; want it dropped", toClient, r.p.Counters())
	}
	for _, e := range r.eventsAfterTimeout() {
		if e.Kind == subscribers.EventTimeout {
			if !strings.Contains(e.Reason, other.String()) {
				t.Errorf("timeout event %q does not name %v, which answered", e.Reason, other)
			}
			return
		}
	}
	t.Error("no timeout event")
}
