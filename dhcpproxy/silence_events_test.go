package dhcpproxy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/subscribers"
)

// A stored binding of a circuit no longer configured whose lease ran out
// while ispmux was stopped (a week's maintenance) is ended as expired, as
// every other lease that ran out while stopped: nobody revoked it, and
// the ISP, whose lease ended long ago (the address maybe another
// customer's now), is not sent a RELEASE for it.
func TestUnconfiguredCircuitExpiredLease(t *testing.T) {
	r := newPRig(t)
	now := time.Now()
	m := [6]byte(mac(s1))
	op82 := (&relayInfo{CircuitID: []byte("acc1:5"), RemoteID: mac(s1)}).encode()
	gone := subscribers.Binding{MAC: m, Access: "acc1", VLAN: 5, ISP: "alpha", IP: netip.MustParseAddr("100.64.0.101"),
		Expires: now.Add(-24 * time.Hour), Updated: now.Add(-26 * time.Hour), LeaseTime: 2 * time.Hour, ServerID: ispSID, Option82: op82}
	if err := r.store.CommitBinding(gone); err != nil {
		t.Fatal(err)
	}
	if _, err := r.p.Restore(now); err != nil {
		t.Fatal(err)
	}
	r.p.notes.wait()
	evs, _ := r.store.Events(0, 100)
	for _, e := range evs {
		if e.Access == "acc1" && e.Kind != subscribers.EventExpired {
			t.Errorf("lease that ran out a day ago: %s event (%q), want expired", e.Kind, e.Reason)
		}
	}
	for _, m := range r.sentUp(dhcpv4.MessageTypeRelease) {
		t.Errorf("RELEASE of %v sent to the ISP for a lease that ended a day ago", m.ClientIPAddr)
	}
}

// The REQUEST of a DORA answered by an ISP server without ispmux's
// Option 82 echoed: a rejected event naming the server (this session's
// change) and then, after dhcp.timeout, a timeout event "no answer from
// the ISP to Request" all the same, which is what the change meant to
// end for answers without Option 82 (TestNoOption82EchoIsNoSilence covers
// the DISCOVER only); the exchange counts both a rejected and a timeout
// outcome.
func TestNoOption82EchoToRequestIsNoSilence(t *testing.T) {
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	got := r.serve(kea(t, time.Hour))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("got %v, want the OFFER", got)
	}
	req, _ := dhcpv4.NewRequestFromOffer(got[0])
	r.fromClient(req)
	got = r.serve(func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := kea(t, time.Hour)(m)
		rep.Options.Del(dhcpv4.OptionRelayAgentInformation)
		return rep
	})
	if len(got) != 0 {
		t.Fatalf("subscriber got %v from an answer without Option 82", got)
	}
	wantRejectedNoTimeout(t, r.eventsAfterTimeout(), "the ISP answered the REQUEST, without Option 82")
	for _, s := range r.p.ISPCounters() {
		if s.Outcomes[OutcomeTimeout] != 0 {
			t.Errorf("ISP %s: outcomes rejected %d, timeout %d for one REQUEST answered without Option 82", s.Name, s.Outcomes[OutcomeRejected], s.Outcomes[OutcomeTimeout])
		}
	}
}

// Like an answer without Option 82 (this session's change), the answer of
// a server that does not support VSS (it echoed VSS-Control) is an answer,
// refused with its own rejected event naming the server: the DISCOVER's
// end must not also be a timeout event "no answer from the ISP".
func TestVSSUnsupportedIsNoSilence(t *testing.T) {
	r := newPRig(t)
	r.p.isps["alpha"].VSS = "vpn-a"
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	got := r.serve(kea(t, time.Hour)) // echoes Option 82 verbatim, VSS-Control included
	if len(got) != 0 {
		t.Fatalf("subscriber got %v from a server without VSS", got)
	}
	wantRejectedNoTimeout(t, r.eventsAfterTimeout(), "the ISP's server answered (without VSS support)")
}
