package dhcpproxy

import (
	"github.com/ispmux/ispmux/subscribers"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// At start-up (the ISP's next hop not resolved yet since start, e.g. right
// after a restart with the bindings restored), a RENEWING REQUEST waits in
// relayLater, which relayed it to every server of the ISP: the lease-server
// routing of RFC 2131 §4.4.5 (docs/ISP-SERVERS.md) was skipped. The
// server is chosen before the wait now.
func TestStartupRenewalToLeaseServerOnly(t *testing.T) {
	r, second := twoServersBound(t)
	// As after a restart: the next hop never resolved since start.
	r.p.resolved[r.p.isps["alpha"].Index].Store(false)
	r.tab.mu.Lock()
	r.tab.uplinkDown = true
	r.tab.mu.Unlock()
	ip := netip.MustParseAddr("100.64.0.101")
	r.fromClientUnicast(renewing(t, s1, ip.String()), ip)
	time.Sleep(50 * time.Millisecond)
	r.tab.mu.Lock()
	r.tab.uplinkDown = false
	r.tab.mu.Unlock()
	r.p.committing.Wait()
	up, _ := r.relayedTo()
	if up[ispSID] == nil {
		t.Fatalf("renewal not relayed to the lease's server (relayed to %v; counters %v)", up, r.p.Counters())
	}
	if up[second] != nil {
		t.Errorf("renewal of a lease granted by %v also relayed to %v (start-up path, relayLater)", ispSID, second)
	}
}

// A NAK to a DISCOVER was dropped (nak_not_request) but still took the
// transaction: the OFFER of the ISP's other server, which followed, was
// dropped (no_transaction) and the subscriber got nothing. The
// transaction stays now.
func TestNakToDiscoverKeepsTransaction(t *testing.T) {
	r, second := twoServers(t, false)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	up, _ := r.relayedTo()
	if len(up) != 2 {
		t.Fatalf("DISCOVER relayed to %d", len(up))
	}
	r.fromServerAt(second, serverReply(up[second], dhcpv4.MessageTypeNak, second, second))
	r.fromServerAt(ispSID, serverReply(up[ispSID], dhcpv4.MessageTypeOffer, ispSID, ispSID))
	_, toClient := r.relayedTo()
	if len(toClient) != 1 || toClient[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Errorf("subscriber got %v after a NAK to its DISCOVER and the other server's OFFER, want the OFFER (counters %v)", toClient, r.p.Counters())
	}
}

var _ = net.IP{}

// A full MAC table is no conflict (119d7ce): counted and logged apart, but
// the lease's onboarding-ended event (and OnboardingStats.Ends) still said
// "conflict", documented as "held by another subscriber". It is no_room.
func TestOnboardingTableFullEventReason(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	const m = "02:77:00:00:00:09"
	r.tab.full = true
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(m))))
	offer := r.one(dhcpv4.MessageTypeOffer)
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	r.fromClient(req)
	r.p.committing.Wait()
	evs := r.eventsOf(subscribers.EventOnboardingEnded)
	t.Logf("events %+v ends %v", evs, r.p.OnboardingStats().Ends)
	for _, e := range evs {
		if e.Reason == subscribers.OnboardingEndConflict {
			t.Errorf("onboarding lease refused by a full MAC table recorded as ended by %q (%q)", e.Reason, "held by another subscriber")
		}
	}
	if n := r.p.OnboardingStats().Ends[subscribers.OnboardingEndConflict]; n != 0 {
		t.Errorf("OnboardingStats.Ends[conflict] = %d after a full table", n)
	}
}

// TestOverrideRenewalToGrantingServer: with server-id override (RFC 5107)
// every server names our address as its identifier, so the lease's
// server-id cannot say which server granted it, and a RENEWING REQUEST
// went to every server (the override branch, only = chosen(t), is empty
// for a renewal): one without the lease could NAK it. The binding keeps
// the granting server's address (Binding.Relay, the ACK's source), and the
// renewal goes there only. The lease here is the second server's.
func TestOverrideRenewalToGrantingServer(t *testing.T) {
	r, second := twoServers(t, true)
	r.bindThrough(second)
	ip := netip.MustParseAddr("100.64.0.103") // serverReply: 100.64.0.(100 + the server's last octet)
	r.fromClientUnicast(renewing(t, s1, ip.String()), ip)
	up, _ := r.relayedTo()
	if up[second] == nil {
		t.Fatalf("renewal not relayed to the granting server %v (relayed to %v; counters %v)", second, up, r.p.Counters())
	}
	if up[ispSID] != nil {
		t.Errorf("with server-id override, the renewal of a lease granted by %v also went to %v", second, ispSID)
	}
}
