package dhcpproxy

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/subscribers"
)

// windowsClientID is a Windows client identifier: type 1 (Ethernet) + the MAC.
var windowsClientID = []byte{1, 0x02, 0x77, 0, 0, 0, 0x31}

// RFC 6842 §3: a server MUST return the client identifier (61) the client
// sent, unaltered. ispmux's own NAK and local ACK do; its onboarding
// server's OFFER and ACK (to a Windows client sending 61 = 1+MAC) must too.
func TestOnboardingEchoesWindowsClientID(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	const m = "02:77:00:00:00:31"
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(m)), dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, windowsClientID),
		dhcpv4.WithGeneric(dhcpv4.OptionClassIdentifier, []byte("MSFT 5.0"))))
	offer := r.one(dhcpv4.MessageTypeOffer)
	if got := offer.Options.Get(dhcpv4.OptionClientIdentifier); !bytes.Equal(got, windowsClientID) {
		t.Errorf("onboarding OFFER option 61 = %x, want the client's %x (RFC 6842 §3)", got, windowsClientID)
	}
	req, _ := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, windowsClientID))
	r.fromClient(req)
	ack := r.one(dhcpv4.MessageTypeAck)
	if got := ack.Options.Get(dhcpv4.OptionClientIdentifier); !bytes.Equal(got, windowsClientID) {
		t.Errorf("onboarding ACK option 61 = %x, want the client's %x (RFC 6842 §3)", got, windowsClientID)
	}
	// Windows' DHCPINFORM right after: the ACK echoes 61 and carries no
	// lease time and no yiaddr (RFC 2131 §4.3.5).
	inf := clientMsg(t, m, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(ack.YourIPAddr),
		dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, windowsClientID))
	r.fromClient(inf)
	iack := r.one(dhcpv4.MessageTypeAck)
	if iack.Options.Has(dhcpv4.OptionIPAddressLeaseTime) || !iack.YourIPAddr.IsUnspecified() {
		t.Errorf("INFORM ACK: lease time %v, yiaddr %v", iack.IPAddressLeaseTime(0), iack.YourIPAddr)
	}
	if got := iack.Options.Get(dhcpv4.OptionClientIdentifier); !bytes.Equal(got, windowsClientID) {
		t.Errorf("onboarding INFORM ACK option 61 = %x, want the client's %x (RFC 6842 §3)", got, windowsClientID)
	}
}

// keaRapid answers a DISCOVER carrying option 80 with an ACK carrying 80
// (RFC 4039), like a Kea with rapid commit enabled.
func keaRapid(t *testing.T) func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	return func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := keaT1(t, time.Hour, 30*time.Minute)(m)
		if rep != nil && m.MessageType() == dhcpv4.MessageTypeDiscover && m.Options.Has(dhcpv4.OptionRapidCommit) {
			rep.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeAck))
			rep.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRapidCommit, nil))
		}
		return rep
	}
}

// Rapid commit: the ISP ACKs a DISCOVER with 80. The binding is stored and
// installed before the client hears of it, with a bound event; the client
// lease is ispmux's.
func TestRapidCommitACKStoredFirst(t *testing.T) {
	r, _ := newSRig(t)
	r.snd.onACK = func() {
		if !r.tab.isBound(s1MAC) {
			t.Error("rapid-commit ACK sent before the binding was installed")
		}
		if _, err := r.store.Binding("acc0", 0, [6]byte(mac(s1))); err != nil {
			t.Errorf("rapid-commit ACK sent before the binding was stored: %v", err)
		}
	}
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)), dhcpv4.WithGeneric(dhcpv4.OptionRapidCommit, nil)))
	got := r.serve(keaRapid(t))
	r.snd.onACK = nil
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("subscriber got %v, want one ACK", got)
	}
	wantLease(t, "rapid ACK", got[0], 10*time.Minute)
	if !got[0].ServerIdentifier().Equal(net.IP(ourSID.AsSlice())) {
		t.Errorf("rapid ACK server id %v", got[0].ServerIdentifier())
	}
	if evs := r.eventsOf(subscribers.EventBound); len(evs) != 1 {
		t.Errorf("bound events %d, want 1", len(evs))
	}
}

// Windows INIT-REBOOT at boot on another network: REQUEST with option 50
// from that network, no server-id, ciaddr 0. NAKed (broadcast), nothing
// relayed, the binding it holds here untouched.
func TestInitRebootFromOtherNetwork(t *testing.T) {
	r, _ := newSRig(t)
	got := r.dora(s1, keaT1(t, time.Hour, 30*time.Minute), nil)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("got %v", got)
	}
	r.fromClient(clientMsg(t, s1, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 168, 1, 50))),
		dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, windowsClientID)))
	ports := r.toPorts()
	if len(ports[upPort]) != 0 {
		t.Errorf("relayed to the ISP: %v", ports[upPort])
	}
	if len(ports[accPort]) != 1 || ports[accPort][0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("to client %v, want a NAK", ports[accPort])
	}
	if !r.tab.isBound(s1MAC) {
		t.Error("binding ended by a NAKed INIT-REBOOT for another network's address")
	}
}

// RFC 5227: the client ARP-probes the ACKed address, finds it in use and
// sends DHCPDECLINE (option 50, ciaddr 0, server-id ours). The binding
// ends with a declined event, the DECLINE reaches the ISP with its own
// server-id and our Option 82, and no timeout is reported.
func TestDeclineAfterARPProbe(t *testing.T) {
	r, _ := newSRig(t)
	got := r.dora(s1, keaT1(t, time.Hour, 30*time.Minute), nil)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("got %v", got)
	}
	r.fromClient(clientMsg(t, s1, dhcpv4.MessageTypeDecline,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(s1Addr))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice())))))
	r.p.committing.Wait()
	r.p.notes.wait()
	ports := r.toPorts()
	if len(ports[upPort]) != 1 || ports[upPort][0].MessageType() != dhcpv4.MessageTypeDecline {
		t.Fatalf("to ISP %v, want one DECLINE", ports[upPort])
	}
	d := ports[upPort][0]
	if !d.ServerIdentifier().Equal(net.IP(ispSID.AsSlice())) || !d.Options.Has(dhcpv4.OptionRelayAgentInformation) {
		t.Errorf("DECLINE to ISP: sid %v, option 82 %v", d.ServerIdentifier(), d.Options.Has(dhcpv4.OptionRelayAgentInformation))
	}
	if r.tab.isBound(s1MAC) {
		t.Error("still bound after DECLINE")
	}
	if evs := r.eventsOf(subscribers.EventDeclined); len(evs) != 1 {
		t.Errorf("declined events %d, want 1", len(evs))
	}
	time.Sleep(400 * time.Millisecond)
	r.p.expireTxns(time.Now())
	r.p.notes.wait()
	if evs := r.eventsOf(subscribers.EventTimeout); len(evs) != 0 {
		t.Errorf("timeout events after a DECLINE: %v", evs)
	}
	_ = netip.Addr{}
}

// A RENEWING client unicasts its REQUEST (ciaddr, no server-id, no option
// 50) to an address that is not ispmux's server identifier (one it kept
// from before a renumbering of the access address, or its router): the
// frame still comes to ispmux's MAC and is punted. It is a renewal
// (RENEWING: unicast, RFC 2131 §4.4.5) and must go to the lease's server
// only, like one unicast to ispmux's address (TestRenewalToLeaseServerOnly):
// another authoritative server NAKs a lease it does not hold.
func TestRenewalUnicastToOtherAddress(t *testing.T) {
	r, second := twoServersBound(t)
	ip := netip.MustParseAddr("100.64.0.101")
	other := netip.MustParseAddr("100.64.0.254")
	m := renewing(t, s1, ip.String())
	r.p.HandleFrame(accPort, fib.UDPFrame(accMAC, s1MAC, 0, ip, other, 68, 67, m.ToBytes()))
	up, _ := r.relayedTo()
	if up[ispSID] == nil {
		t.Fatalf("renewal not relayed to the lease's server (relayed to %v; counters %v)", up, r.p.Counters())
	}
	if m := up[second]; m != nil {
		t.Errorf("renewal unicast to %v of a lease granted by %v also relayed to %v", other, ispSID, second)
		r.fromServerAt(second, serverReply(m, dhcpv4.MessageTypeNak, second, second))
	}
	if ri, _ := parseOption82(up[ispSID].Options.Get(dhcpv4.OptionRelayAgentInformation)); ri[subRelayFlags] == nil {
		t.Errorf("unicast renewal relayed without the RFC 5010 U flag")
	}
	r.fromServerAt(ispSID, serverReply(up[ispSID], dhcpv4.MessageTypeAck, ispSID, ispSID))
	_, toClient := r.relayedTo()
	if !r.tab.isBound(s1MAC) {
		t.Errorf("binding granted by %v ended by the NAK of %v, which does not hold it", ispSID, second)
	}
	if len(toClient) != 1 || toClient[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("subscriber got %v, want only its server's ACK", toClient)
	}
}

// After a rapid-commit binding, ispmux's own ACK to a renewal repeats the
// stored ACK's options, but not option 80, which belongs to an ACK that
// answers a DISCOVER (RFC 4039).
func TestLocalRenewalAfterRapidCommitLeavesOutOption80(t *testing.T) {
	r, _ := newSRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)), dhcpv4.WithGeneric(dhcpv4.OptionRapidCommit, nil)))
	if got := r.serve(keaRapid(t)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("got %v", got)
	}
	r.fromClient(renewing(t, s1, s1Addr))
	got := r.toPorts()[accPort]
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("renewal: %v, want ispmux's ACK", got)
	}
	if got[0].Options.Has(dhcpv4.OptionRapidCommit) {
		t.Errorf("ispmux's ACK to a RENEWING REQUEST carries option 80 (rapid commit) from the stored ACK")
	}
}

// A subscriber that declines every address it is given has the first
// declineBurst DECLINEs of an hour passed to its ISP, and after that its
// address released instead (decline_limited; a declined event saying
// so): an ISP's server quarantines a declined address (Kea: a day), and
// before, a trial quarantined an address a second from one subscriber.
func TestDeclineLimited(t *testing.T) {
	r, _ := newSRig(t)
	r.p.setLimits(func(l *Limits) { l.MACRate, l.MACBurst = 1000, 1000 })
	for i := range declineBurst + 2 {
		if got := r.dora(s1, keaT1(t, time.Hour, 30*time.Minute), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("DORA %d: got %v", i, got)
		}
		r.fromClient(clientMsg(t, s1, dhcpv4.MessageTypeDecline,
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(s1Addr))),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice())))))
		r.p.committing.Wait()
		ports := r.toPorts()
		want := dhcpv4.MessageTypeDecline
		if i >= declineBurst {
			want = dhcpv4.MessageTypeRelease
		}
		if len(ports[upPort]) != 1 || ports[upPort][0].MessageType() != want {
			t.Fatalf("DECLINE %d: to the ISP %v, want one %v", i, ports[upPort], want)
		}
		if m := ports[upPort][0]; !m.ServerIdentifier().Equal(net.IP(ispSID.AsSlice())) || !m.Options.Has(dhcpv4.OptionRelayAgentInformation) ||
			(want == dhcpv4.MessageTypeRelease && !m.ClientIPAddr.Equal(net.ParseIP(s1Addr))) {
			t.Errorf("DECLINE %d: %v to the ISP with server-id %v, ciaddr %v, Option 82 %v", i, want, m.ServerIdentifier(), m.ClientIPAddr,
				m.Options.Has(dhcpv4.OptionRelayAgentInformation))
		}
		if r.tab.isBound(s1MAC) {
			t.Fatalf("DECLINE %d: still bound", i)
		}
	}
	if c := r.p.Counters(); c["relayed_decline"] != declineBurst || c["decline_limited"] != 2 {
		t.Errorf("relayed_decline %d, decline_limited %d; want %d, 2", c["relayed_decline"], c["decline_limited"], declineBurst)
	}
	evs := r.eventsOf(subscribers.EventDeclined)
	if len(evs) != declineBurst+2 || !strings.Contains(evs[len(evs)-1].Reason, "released to the ISP, not declined") {
		t.Errorf("declined events %+v; want %d, the last saying it was released", evs, declineBurst+2)
	}
	// Still over the budget now; a window later it is back.
	sk := subKey{circuitKey{accPort, 0}, s1MAC}
	if r.p.limits.allowDecline(sk, time.Now()) {
		t.Error("a DECLINE allowed within the window, over the budget")
	}
	if !r.p.limits.allowDecline(sk, time.Now().Add(declineWindow)) {
		t.Error("no DECLINE allowed a window later")
	}
}
