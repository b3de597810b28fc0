package dhcpproxy

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/subscribers"
)

// RFC 6842 §3: a server MUST return the client identifier the client sent
// in its DHCPNAK. ispmux's NAKs sent instead of an ISP's ACK (no lease
// time, not admitted, address in use) were built from the ISP's ACK, not
// the client's REQUEST: an ISP server that does not echo option 61 (most
// pre-6842 servers) made ispmux's NAK lack it. They take the client's.
func TestAckWithoutLeaseNakEchoesClientID(t *testing.T) {
	r := newPRig(t)
	req, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(100, 64, 0, 100))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice()))),
		dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, nakClientID))
	r.fromClient(req)
	got := r.serve(func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := kea(t, 0)(m) // the ISP's ACK: option 51 = 0
		if rep != nil {
			rep.Options.Del(dhcpv4.OptionClientIdentifier) // a server that does not echo 61
		}
		return rep
	})
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("subscriber got %v, want a NAK", got)
	}
	if id := got[0].Options.Get(dhcpv4.OptionClientIdentifier); !bytes.Equal(id, nakClientID) {
		t.Errorf("NAK client identifier %x, want the REQUEST's %x (RFC 6842 §3)", id, nakClientID)
	}
}

// An ISP OFFER without a lease time is dropped with a rejected event
// naming the ISP's server (this session). The DISCOVER's transaction is
// kept with no server chosen, so when dhcp.timeout passes a second event
// said the ISP did not answer at all ("no answer from the ISP to
// DISCOVER"), though it did, at once, contradicting the rejected event.
// A refused answer is no silence now.
func TestOfferWithoutLeaseNoSilenceTimeout(t *testing.T) {
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	if got := r.serve(kea(t, 0)); len(got) != 0 {
		t.Fatalf("subscriber got %v, want nothing (OFFER without lease time dropped)", got)
	}
	for _, e := range r.eventsAfterTimeout() {
		if e.Kind == subscribers.EventTimeout {
			t.Errorf("timeout event after the ISP answered (its OFFER was refused): %q", e.Reason)
		}
	}
}

// An ISP's ACK that bindAndAck refuses (too many bindings on the circuit,
// the registration changed during the exchange, no lease time) is neither
// bound nor delivered, and the lease the ISP's server committed for it is
// released to that server as the client would release it: ciaddr the
// address ACKed, the ISP's server identifier, the REQUEST's Option 82 and
// client identifier, our giaddr (ack_refused_released). Before, nothing
// was sent: the ISP held the address for a client that never got it until
// its lease ran out, one per retransmitted REQUEST ACKed. Not released:
// an address a binding ispmux installed holds at that ISP (another
// subscriber's, which the RELEASE could free at a server keying leases by
// client identifier; the subscriber's own, a renewal's ACK refused).
func TestRefusedAckReleased(t *testing.T) {
	s2 := "02:00:00:00:01:02"
	addr101 := netip.MustParseAddr("100.64.0.101")
	t.Run("circuit_full", func(t *testing.T) {
		r := newPRig(t)
		r.p.setLimits(func(l *Limits) { l.MaxBindingsPerCircuit = 1 })
		// Customer c-s1, which the fake ISP accepts.
		if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(s2)), CustomerID: "c-s1", ISP: "alpha", Source: "api"}); err != nil {
			t.Fatal(err)
		}
		if got := r.dora(s1, kea(t, time.Minute), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("first subscriber got %v, want the ACK", got)
		}
		// The ISP ACKs the second the first one's address: refused,
		// and that address is the first one's, not released.
		if got := r.dora(s2, kea(t, time.Minute), nil); len(got) != 0 {
			t.Fatalf("second subscriber on a full circuit got %v", got)
		}
		if up, _ := r.relayedTo(); len(up) != 0 {
			t.Errorf("sent the ISP %v: the RELEASE of the address the first subscriber holds", up)
		}
		isp := recordingOp82(atAddr(kea(t, time.Minute), addr101))
		if got := r.dora(s2, isp.serve, nil); len(got) != 0 {
			t.Fatalf("second subscriber on a full circuit got %v", got)
		}
		if c := r.p.Counters(); c["circuit_full"] != 2 || r.tab.isBound(0x020000000102) {
			t.Fatalf("counters %v, second bound %v; want circuit_full 2, not bound", c, r.tab.isBound(0x020000000102))
		}
		r.wantRefusedReleased(addr101, isp.op82, nil)
	})
	t.Run("ack_registration_changed", func(t *testing.T) {
		r := newPRig(t)
		r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
		offer := r.serve(kea(t, time.Minute))[0]
		req, _ := dhcpv4.NewRequestFromOffer(offer)
		r.fromClient(req)
		block(t, r, s1)
		isp := recordingOp82(kea(t, time.Minute))
		if got := r.serve(isp.serve); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
			t.Fatalf("subscriber got %v, want a NAK", got)
		}
		if c := r.p.Counters(); c["ack_registration_changed"] != 1 {
			t.Fatalf("counters %v, want ack_registration_changed", c)
		}
		r.wantRefusedReleased(netip.MustParseAddr(s1Addr), isp.op82, nil)

		// Bound, then blocked while its renewal was at the ISP: the
		// address is the binding's, not released.
		r2 := newPRig(t)
		if got := r2.dora(s1, kea(t, time.Minute), nil); len(got) != 1 {
			t.Fatalf("got %v, want the ACK", got)
		}
		r2.fromClient(renewOf(t, s1, netip.MustParseAddr(s1Addr)))
		block(t, r2, s1)
		if got := r2.serve(kea(t, time.Minute)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
			t.Fatalf("renewal: subscriber got %v, want a NAK", got)
		}
		if up, _ := r2.relayedTo(); len(up) != 0 || r2.p.Counters()["ack_registration_changed"] != 1 {
			t.Errorf("renewal refused: sent the ISP %v (counters %v); want nothing, the binding's own lease", up, r2.p.Counters())
		}
	})
	t.Run("ack_without_lease_time", func(t *testing.T) {
		r := newPRig(t)
		r.fromClient(clientMsg(t, s1, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP(addr101.AsSlice()))),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice()))),
			dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, nakClientID)))
		isp := recordingOp82(atAddr(kea(t, 0), addr101))
		if got := r.serve(isp.serve); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
			t.Fatalf("subscriber got %v, want a NAK", got)
		}
		if c := r.p.Counters(); c["ack_without_lease_time"] != 1 {
			t.Fatalf("counters %v, want ack_without_lease_time", c)
		}
		r.wantRefusedReleased(addr101, isp.op82, nakClientID)
	})
	// An ACK without an address binds nothing either: the client is
	// NAKed and the refusal is an event, where it was only counted and
	// the REQUEST went unanswered.
	t.Run("ack_without_address", func(t *testing.T) {
		r := newPRig(t)
		r.fromClient(clientMsg(t, s1, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP(addr101.AsSlice()))),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice())))))
		noAddr := func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
			rep := kea(t, time.Minute)(m)
			rep.YourIPAddr = net.IPv4zero
			return rep
		}
		if got := r.serve(noAddr); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
			t.Fatalf("subscriber got %v, want a NAK", got)
		}
		r.p.notes.wait()
		if c := r.p.Counters(); c["ack_without_address"] != 1 || len(r.eventsOf(subscribers.EventRejected)) != 1 || r.tab.isBound(s1MAC) {
			t.Fatalf("counters %v, rejected events %v, bound %v: want ack_without_address, one event, not bound", c, r.eventsOf(subscribers.EventRejected), r.tab.isBound(s1MAC))
		}
	})
}

// block blocks subscriber m's registration (customer c-s1 at alpha).
func block(t *testing.T, r *prig, m string) {
	t.Helper()
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(m)), CustomerID: "c-s1", ISP: "alpha", Blocked: true, Source: "api"}); err != nil {
		t.Fatal(err)
	}
}

// atAddr answers as serve does, with ip as the address offered or ACKed.
func atAddr(serve func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4, ip netip.Addr) func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	return func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := serve(m)
		if rep != nil {
			rep.YourIPAddr = net.IP(ip.AsSlice())
		}
		return rep
	}
}

// op82Recorder answers as its ISP's server does and keeps the Option 82
// of the last message it answered.
type op82Recorder struct {
	isp  func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4
	op82 []byte
}

func recordingOp82(isp func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4) *op82Recorder {
	return &op82Recorder{isp: isp}
}

func (o *op82Recorder) serve(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	o.op82 = m.Options.Get(dhcpv4.OptionRelayAgentInformation)
	return o.isp(m)
}

// wantRefusedReleased checks that the ISP's server was sent one message,
// the RELEASE of ip as the refused exchange's client (Option 82 op82,
// client identifier clientID), and that it was counted.
func (r *prig) wantRefusedReleased(ip netip.Addr, op82, clientID []byte) {
	r.t.Helper()
	up, _ := r.relayedTo()
	rel := up[ispSID]
	if len(up) != 1 || rel == nil || rel.MessageType() != dhcpv4.MessageTypeRelease {
		r.t.Fatalf("the ISP's lease of the refused ACK not released: sent %v (counters %v)", up, r.p.Counters())
	}
	if !rel.ClientIPAddr.Equal(net.IP(ip.AsSlice())) || !rel.ServerIdentifier().Equal(net.IP(ispSID.AsSlice())) ||
		!rel.GatewayIPAddr.Equal(net.IP(giaddr.AsSlice())) || !bytes.Equal(rel.Options.Get(dhcpv4.OptionRelayAgentInformation), op82) ||
		!bytes.Equal(rel.Options.Get(dhcpv4.OptionClientIdentifier), clientID) {
		r.t.Errorf("RELEASE ciaddr %v server-id %v giaddr %v Option 82 %x client id %x; want %v, %v, %v, the REQUEST's %x and %x",
			rel.ClientIPAddr, rel.ServerIdentifier(), rel.GatewayIPAddr, rel.Options.Get(dhcpv4.OptionRelayAgentInformation),
			rel.Options.Get(dhcpv4.OptionClientIdentifier), ip, ispSID, giaddr, op82, clientID)
	}
	if c := r.p.Counters(); c["ack_refused_released"] != 1 || c["ack_refused_not_released"] != 0 {
		r.t.Errorf("ack_refused_released %d, ack_refused_not_released %d; want 1, 0", c["ack_refused_released"], c["ack_refused_not_released"])
	}
	// Through an intent, stored before the RELEASE was sent and completed
	// by a tick once it is surely on the wire.
	if ins, _ := r.store.Intents(); len(ins) != 1 || ins[0].Kind != subscribers.IntentReleaseUnbound || ins[0].IP != ip {
		r.t.Errorf("intents %+v; want the RELEASE of %v stored until the tick", ins, ip)
	}
	r.p.expire(time.Now().Add(time.Second))
	if up, _ := r.relayedTo(); len(up) != 0 {
		r.t.Errorf("the RELEASE was sent again: %v", up)
	}
	if ins, _ := r.store.Intents(); len(ins) != 0 || r.p.PendingIntents() != 0 {
		r.t.Errorf("intents %+v after the tick; want the RELEASE completed", ins)
	}
}

// The RELEASE of a refused ACK's lease is an intent (stored alone, before
// it is sent): with the ISP's next hop unresolved at that instant it stays
// pending, and a restarted proxy on the same store sends it to the server
// that ACKed, once, and completes it. Before, it was sent directly, and
// with the uplink down (or a crash before it left) it was lost: the ISP
// held the address for a client that never got it until its lease ran
// out.
func TestRefusedAckReleaseReplayed(t *testing.T) {
	r, second := twoServers(t, false)
	addr101 := netip.MustParseAddr("100.64.0.101")
	// To both servers; the first ACKs without a lease time, with the
	// uplink's next hop lost meanwhile.
	r.fromClient(clientMsg(t, s1, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP(addr101.AsSlice()))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice()))),
		dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, nakClientID)))
	r.p.committing.Wait() // the first relay waits for the next hop (relayLater)
	up, _ := r.relayedTo()
	if up[ispSID] == nil || up[second] == nil {
		t.Fatalf("REQUEST relayed to %v (counters %v)", keys(up), r.p.Counters())
	}
	op82 := up[ispSID].Options.Get(dhcpv4.OptionRelayAgentInformation)
	r.setUplinkDown(true)
	ack := serverReply(up[ispSID], dhcpv4.MessageTypeAck, ispSID, ispSID)
	ack.YourIPAddr = net.IP(addr101.AsSlice())
	ack.Options.Del(dhcpv4.OptionIPAddressLeaseTime)
	r.fromServerAt(ispSID, ack)
	if up, toClient := r.relayedTo(); len(up) != 0 || len(toClient) != 1 || toClient[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("with the uplink down: sent the ISP %v, the subscriber %v; want nothing, a NAK", keys(up), toClient)
	}
	ins, err := r.store.Intents()
	if err != nil || len(ins) != 1 || ins[0].Kind != subscribers.IntentReleaseUnbound || ins[0].IP != addr101 ||
		ins[0].ISP != "alpha" || ins[0].Access != "acc0" || ins[0].MAC != [6]byte(mac(s1)) {
		t.Fatalf("intents %+v, %v; want the RELEASE of %v pending (counters %v)", ins, err, addr101, r.p.Counters())
	}
	if c := r.p.Counters(); c["ack_refused_released"] != 1 || c["ack_refused_not_released"] != 0 || c["intent_deferred"] == 0 {
		t.Errorf("counters %v; want ack_refused_released 1 (recorded), intent_deferred", c)
	}

	// Restart: a new proxy on the same store, the ISP reachable again.
	r.setUplinkDown(false)
	p2 := New(r.p.config(), r.store, r.p.reg, r.tab, r.snd, nil)
	p2.isps["alpha"].Servers = []netip.Addr{ispSID, second}
	if _, err := p2.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	p2.expire(time.Now())
	up, _ = r.relayedTo()
	rel := up[ispSID]
	if len(up) != 1 || rel == nil || rel.MessageType() != dhcpv4.MessageTypeRelease {
		t.Fatalf("replay sent %v, want the RELEASE to the server that ACKed only", keys(up))
	}
	if !rel.ClientIPAddr.Equal(net.IP(addr101.AsSlice())) || !rel.ServerIdentifier().Equal(net.IP(ispSID.AsSlice())) ||
		!rel.GatewayIPAddr.Equal(net.IP(giaddr.AsSlice())) || !bytes.Equal(rel.Options.Get(dhcpv4.OptionRelayAgentInformation), op82) ||
		!bytes.Equal(rel.Options.Get(dhcpv4.OptionClientIdentifier), nakClientID) {
		t.Errorf("replayed %v; want the RELEASE of %v with the REQUEST's Option 82 and client identifier", rel, addr101)
	}
	if ins, _ := r.store.Intents(); len(ins) != 1 {
		t.Errorf("intent completed as soon as its frame was queued: %+v", ins)
	}
	p2.expire(time.Now().Add(time.Second))
	if up, _ := r.relayedTo(); len(up) != 0 {
		t.Errorf("the RELEASE was sent again: %v", keys(up))
	}
	if ins, _ := r.store.Intents(); len(ins) != 0 || p2.PendingIntents() != 0 {
		t.Errorf("intents after the replay: %+v", ins)
	}
	if c := p2.Counters(); c["intent_replayed"] != 1 || c["intent_sent_release_unbound"] != 1 {
		t.Errorf("counters %v; want intent_replayed 1, intent_sent_release_unbound 1", c)
	}
}

// A pending RELEASE of a refused ACK's lease is not sent once a binding
// ispmux installed holds the address (installedAt, checked again when it
// is sent): at the restart, another subscriber's binding of it (the ISP's
// server freed the lease meanwhile and granted it again) would be freed by
// that RELEASE at a server keying leases by client identifier. The intent
// is completed unsent.
func TestRefusedAckReleaseNotReplayedOverBinding(t *testing.T) {
	r := newPRig(t)
	addr101 := netip.MustParseAddr("100.64.0.101")
	r.fromClient(clientMsg(t, s1, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP(addr101.AsSlice()))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice())))))
	r.p.committing.Wait()
	up, _ := r.relayedTo()
	r.setUplinkDown(true)
	r.fromServerAt(ispSID, atAddr(kea(t, 0), addr101)(up[ispSID]))
	if ins, _ := r.store.Intents(); len(ins) != 1 {
		t.Fatalf("intents %+v; want the RELEASE of %v pending", ins, addr101)
	}
	now := time.Now()
	s2 := "02:00:00:00:01:02"
	if err := r.store.CommitBinding(subscribers.Binding{MAC: [6]byte(mac(s2)), Access: "acc0", ISP: "alpha", IP: addr101,
		Expires: now.Add(time.Hour), Updated: now, LeaseTime: 2 * time.Hour, ServerID: ispSID, Customer: "c-s2"}); err != nil {
		t.Fatal(err)
	}
	r.relayedTo()
	r.setUplinkDown(false)
	p2 := New(r.p.config(), r.store, r.p.reg, r.tab, r.snd, nil)
	if _, err := p2.Restore(now); err != nil {
		t.Fatal(err)
	}
	if !r.tab.isBound(0x020000000102) {
		t.Fatal("the other subscriber's binding was not restored")
	}
	p2.expire(now)
	p2.expire(now.Add(time.Second))
	if up, _ := r.relayedTo(); len(up) != 0 {
		t.Errorf("sent %v: the RELEASE of the address another subscriber's binding holds", up)
	}
	if ins, _ := r.store.Intents(); len(ins) != 0 || p2.PendingIntents() != 0 {
		t.Errorf("intents %+v; want the RELEASE completed unsent", ins)
	}
	if c := p2.Counters(); c["intent_superseded"] != 1 || c["intent_sent_release_unbound"] != 0 {
		t.Errorf("counters %v; want intent_superseded 1, no RELEASE sent", c)
	}
}

// A bound subscriber that starts over with a new client identifier is a
// new client to its ISP's server, which ACKs it another address and keeps
// the old lease: the binding moves to the new address, and the old lease
// is released to the ISP (its own client identifier, through an intent,
// replaced_released). Before, nothing was sent: a subscriber changing its
// client identifier at every exchange left a lease at the ISP each time
// (a trial emptied a /24 that way). Not when the ISP ACKs the same
// address (a renewal, or a server that moved the lease itself).
func TestReplacedLeaseReleased(t *testing.T) {
	r := newPRig(t)
	addr101 := netip.MustParseAddr("100.64.0.101")
	idA, idB := []byte{1, 2, 0xaa, 0, 0, 0, 1}, []byte{1, 2, 0xaa, 0, 0, 0, 2}
	doraID := func(id []byte, serve func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4) []*dhcpv4.DHCPv4 {
		return r.doraWithID(s1, id, serve, serve)
	}
	if got := doraID(idA, kea(t, time.Minute)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("first DORA: %v", got)
	}
	// The same client identifier, the same address: nothing released.
	if got := doraID(idA, kea(t, time.Minute)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("second DORA: %v", got)
	}
	if up, _ := r.relayedTo(); len(up) != 0 || r.p.Counters()["replaced_released"] != 0 {
		t.Fatalf("the same address ACKed again: sent the ISP %v (counters %v)", up, r.p.Counters())
	}
	op82 := recordingOp82(atAddr(kea(t, time.Minute), addr101))
	if got := doraID(idB, op82.serve); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck ||
		!got[0].YourIPAddr.Equal(net.IP(addr101.AsSlice())) {
		t.Fatalf("DORA with a new client identifier: %v", got)
	}
	if !r.tab.isBound(0x020000000101) {
		t.Fatal("not bound at the new address")
	}
	up, _ := r.relayedTo()
	rel := up[ispSID]
	if len(up) != 1 || rel == nil || rel.MessageType() != dhcpv4.MessageTypeRelease {
		t.Fatalf("the old lease not released: sent %v (counters %v)", up, r.p.Counters())
	}
	if !rel.ClientIPAddr.Equal(net.IP(netip.MustParseAddr(s1Addr).AsSlice())) || !bytes.Equal(rel.Options.Get(dhcpv4.OptionClientIdentifier), idA) ||
		!rel.ServerIdentifier().Equal(net.IP(ispSID.AsSlice())) || !bytes.Equal(rel.Options.Get(dhcpv4.OptionRelayAgentInformation), op82.op82) {
		t.Errorf("RELEASE ciaddr %v client id %x server-id %v Option 82 %x; want %s, %x, %v, %x", rel.ClientIPAddr,
			rel.Options.Get(dhcpv4.OptionClientIdentifier), rel.ServerIdentifier(), rel.Options.Get(dhcpv4.OptionRelayAgentInformation),
			s1Addr, idA, ispSID, op82.op82)
	}
	if c := r.p.Counters(); c["replaced_released"] != 1 || c["replaced_not_released"] != 0 {
		t.Errorf("replaced_released %d, replaced_not_released %d; want 1, 0", c["replaced_released"], c["replaced_not_released"])
	}
	// The new address's bound event names the one it replaces (which has
	// no end event of its own: a trial's webhook consumer saw two).
	r.p.notes.wait()
	if evs := r.eventsOf(subscribers.EventBound); len(evs) == 0 || !strings.Contains(evs[len(evs)-1].Reason, "replaces "+s1Addr+" (its RELEASE to the ISP recorded)") {
		t.Errorf("bound events %+v, want the last to name %s, released", evs, s1Addr)
	}
	if ins, _ := r.store.Intents(); len(ins) != 1 || ins[0].Kind != subscribers.IntentReleaseUnbound || ins[0].IP != netip.MustParseAddr(s1Addr) {
		t.Errorf("intents %+v; want the RELEASE of %s", ins, s1Addr)
	}
	if b, err := r.store.Binding("acc0", 0, subscribers.MAC(mac(s1))); err != nil || b.IP != addr101 || !bytes.Equal(b.ClientID, idB) {
		t.Errorf("stored binding %+v %v; want %v with client identifier %x", b, err, addr101, idB)
	}
}

// A SELECTING REQUEST naming another server than ispmux (here the ISP's
// own server identifier, which a subscriber can learn) is not relayed:
// the ISP's server would commit a lease no transaction takes the ACK of.
// Before, it was relayed (so the servers would see they were not chosen),
// and a trial had the ISP commit 20 leases that way.
func TestRequestOtherServerNotRelayed(t *testing.T) {
	r := newPRig(t)
	r.fromClient(clientMsg(t, s1, dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP(netip.MustParseAddr("100.64.0.150").AsSlice()))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ispSID.AsSlice())))))
	if up, toClient := r.relayedTo(); len(up) != 0 || len(toClient) != 0 {
		t.Fatalf("sent the ISP %v, the subscriber %v; want nothing", up, toClient)
	}
	if c := r.p.Counters(); c["request_other_server"] != 1 {
		t.Errorf("request_other_server %d, want 1", c["request_other_server"])
	}
}

// A bound client that reboots with a new client identifier asks for its
// address (INIT-REBOOT) as a new client: the ISP's server NAKs it (the
// address is the old identifier's), and the binding ends with a RELEASE
// of that old lease (its client identifier) to the ISP, through an
// intent (replaced_released). Before, the binding ended with the NAK and
// nothing else: the old lease stayed at the ISP until it expired, one per
// reboot (found by a new-user trial).
func TestNakForNewClientIDReleasesOld(t *testing.T) {
	r := newPRig(t)
	idA, idB := []byte{1, 2, 0xaa, 0, 0, 0, 1}, []byte{1, 2, 0xaa, 0, 0, 0, 2}
	if got := r.doraWithID(s1, idA, kea(t, time.Minute), kea(t, time.Minute)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("DORA: %v", got)
	}
	r.fromClient(clientMsg(t, s1, dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(s1Addr))), dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, idB)))
	if got := r.serve(keaRefusing(t)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("INIT-REBOOT with a new client identifier: %v, want the ISP's NAK", got)
	}
	if r.tab.isBound(s1MAC) {
		t.Error("still bound after the NAK")
	}
	up, _ := r.relayedTo()
	rel := up[ispSID]
	if len(up) != 1 || rel == nil || rel.MessageType() != dhcpv4.MessageTypeRelease ||
		!rel.ClientIPAddr.Equal(net.ParseIP(s1Addr)) || !bytes.Equal(rel.Options.Get(dhcpv4.OptionClientIdentifier), idA) {
		t.Fatalf("sent the ISP %v, want the RELEASE of %s with client identifier %x (counters %v)", up, s1Addr, idA, r.p.Counters())
	}
	if c := r.p.Counters(); c["replaced_released"] != 1 {
		t.Errorf("replaced_released %d, want 1", c["replaced_released"])
	}
	// The same client identifier NAKed (the ISP dropped the lease): no
	// RELEASE, the lease is not the ISP's any more.
	r2 := newPRig(t)
	if got := r2.dora(s1, kea(t, time.Minute), nil); len(got) != 1 {
		t.Fatalf("DORA: %v", got)
	}
	r2.fromClient(renewOf(t, s1, netip.MustParseAddr(s1Addr)))
	if got := r2.serve(keaRefusing(t)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("renewal: %v, want the NAK", got)
	}
	if up, _ := r2.relayedTo(); len(up) != 0 || r2.p.Counters()["replaced_released"] != 0 {
		t.Errorf("the same client NAKed: sent the ISP %v (counters %v); want nothing", up, r2.p.Counters())
	}
}

// A bound client's REQUEST for another address (SELECTING, after a
// DISCOVER), NAKed by the ISP: the binding ends, and its address, which
// the ISP's server still holds for the client, is released to it; the nak
// event names the bound address and the one asked for. Before, the
// binding ended with an event naming only the address asked for, and the
// bound one stayed leased at the ISP, unused, until it expired (found by a
// trial against Kea).
func TestNakForAnotherAddressReleasesBound(t *testing.T) {
	r := newPRig(t)
	if got := r.dora(s1, kea(t, time.Minute), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("DORA: %v", got)
	}
	other := netip.MustParseAddr("100.64.0.150")
	r.fromClient(clientMsg(t, s1, dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(other.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ourSID.AsSlice()))))
	if got := r.serve(keaRefusing(t)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("REQUEST for %s: %v, want the ISP's NAK", other, got)
	}
	if r.tab.isBound(s1MAC) {
		t.Error("still bound after the NAK")
	}
	up, _ := r.relayedTo()
	if rel := up[ispSID]; len(up) != 1 || rel == nil || rel.MessageType() != dhcpv4.MessageTypeRelease || !rel.ClientIPAddr.Equal(net.ParseIP(s1Addr)) {
		t.Fatalf("sent the ISP %v, want the RELEASE of %s (counters %v)", up, s1Addr, r.p.Counters())
	}
	evs := r.eventsOf(subscribers.EventNak)
	if len(evs) != 1 || evs[0].IP != netip.MustParseAddr(s1Addr) || !strings.Contains(evs[0].Reason, other.String()) {
		t.Errorf("nak events %+v, want one for %s naming %s", evs, s1Addr, other)
	}
}

// The RELEASE of a replaced lease is an intent: with the ISP's next hop
// lost as the new ACK arrives, it stays pending, and a restart on the same
// store sends it (the old lease's client identifier). (The crash between
// the commit and the intent: TestCrashReplacingLease.)
func TestReplacedLeaseReleaseReplayed(t *testing.T) {
	r := newPRig(t)
	addr101 := netip.MustParseAddr("100.64.0.101")
	idA, idB := []byte{1, 2, 0xaa, 0, 0, 0, 1}, []byte{1, 2, 0xaa, 0, 0, 0, 2}
	if got := r.doraWithID(s1, idA, kea(t, time.Minute), kea(t, time.Minute)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("first DORA: %v", got)
	}
	got := r.doraWithID(s1, idB, atAddr(kea(t, time.Minute), addr101), func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := atAddr(kea(t, time.Minute), addr101)(m)
		r.setUplinkDown(true) // lost as the ACK arrives
		return rep
	})
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("DORA with a new client identifier: %v", got)
	}
	if up, _ := r.relayedTo(); len(up) != 0 {
		t.Fatalf("sent the ISP %v with its next hop lost", up)
	}
	if ins, _ := r.store.Intents(); len(ins) != 1 || ins[0].Kind != subscribers.IntentReleaseUnbound || ins[0].IP != netip.MustParseAddr(s1Addr) {
		t.Fatalf("intents %+v; want the RELEASE of %s pending", ins, s1Addr)
	}
	r.setUplinkDown(false)
	p2 := New(r.p.config(), r.store, r.p.reg, r.tab, r.snd, nil) // the restart
	if _, err := p2.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	p2.expire(time.Now())
	up, _ := r.relayedTo()
	rel := up[ispSID]
	if len(up) != 1 || rel == nil || rel.MessageType() != dhcpv4.MessageTypeRelease ||
		!rel.ClientIPAddr.Equal(net.ParseIP(s1Addr)) || !bytes.Equal(rel.Options.Get(dhcpv4.OptionClientIdentifier), idA) {
		t.Fatalf("replay sent %v, want the RELEASE of %s with client identifier %x (counters %v)", up, s1Addr, idA, p2.Counters())
	}
}

// doraWithID runs a DORA of m with the client identifier id: offer answers
// its DISCOVER, ack its REQUEST (from the OFFER). It returns what the
// client got for its REQUEST.
func (r *prig) doraWithID(m string, id []byte, offer, ack func(*dhcpv4.DHCPv4) *dhcpv4.DHCPv4) []*dhcpv4.DHCPv4 {
	r.t.Helper()
	r.fromClient(discover(r.t, dhcpv4.WithHwAddr(mac(m)), dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, id)))
	got := r.serve(offer)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		r.t.Fatalf("DISCOVER with client identifier %x: got %v, want an OFFER", id, got)
	}
	req, _ := dhcpv4.NewRequestFromOffer(got[0], dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, id))
	r.fromClient(req)
	return r.serve(ack)
}
