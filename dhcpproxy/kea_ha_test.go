package dhcpproxy

import (
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// An ISP with a Kea HA pair (hot-standby): s1's lease was last extended by
// the standby (partner-down); the primary is back and the standby silent
// again (hot-standby: it answers nothing). s1 renews as ispmux's answers
// tell it; its lease's server stays silent, and the renewal ispmux relays
// just before the ISP's T2 goes to that server only. Its timeout ends past
// T2 with less than a second of the ISP's lease left: no answer from the
// binding, no REBINDING ever sent, and the binding expires while the
// primary would have ACKed any renewal it was sent. Timings are those the
// e2e run (TestKeaHAHotStandby, Kea 2.2 pair, 30 s leases, dhclient)
// recorded: relays 15.8 s and 25.2 s after the ACK, dhcp.timeout 4 s.
// RFC 2131 §4.4.5: a client not answered by T2 rebinds (to every server);
// docs/ISP-SERVERS.md: "ispmux does it for it, and a lease whose server is
// gone is extended by its failover partner".
func TestRenewalSilentLeaseServerNeverRebound(t *testing.T) {
	r, second := twoServers(t, false)
	r.bindVia(second, second, func(ack *dhcpv4.DHCPv4) {
		ack.UpdateOption(dhcpv4.OptIPAddressLeaseTime(30 * time.Second))
		ack.UpdateOption(dhcpv4.OptRenewTimeValue(15 * time.Second))
		ack.UpdateOption(dhcpv4.OptRebindingTimeValue(26 * time.Second))
	})
	r.p.setLimits(func(l *Limits) { l.Timeout = 4 * time.Second })
	b, err := r.store.Binding("acc0", 0, [6]byte(mac(s1)))
	if err != nil {
		t.Fatal(err)
	}
	base := b.Expires.Add(-30 * time.Second)
	ip := b.IP
	reachedPrimary := false
	renew := func(at time.Duration) {
		t.Helper()
		r.p.now = func() time.Time { return base.Add(at) }
		r.fromClientUnicast(renewing(t, s1, ip.String()), ip)
		up, _ := r.relayedTo()
		if up[second] == nil {
			t.Fatalf("renewal at %v not relayed to the lease's server", at)
		}
		if m := up[ispSID]; m != nil {
			reachedPrimary = true
			// The primary holds the lease (HA lease updates): it ACKs.
			ack := serverReply(m, dhcpv4.MessageTypeAck, ispSID, ispSID)
			ack.YourIPAddr = ip.AsSlice()
			// (a long lease: ispmux stamps an ACK with the wall clock)
			ack.UpdateOption(dhcpv4.OptIPAddressLeaseTime(time.Hour))
			r.fromServerAt(ispSID, ack)
		}
	}
	tick := func(at time.Duration) {
		r.p.now = func() time.Time { return base.Add(at) }
		r.p.expire(base.Add(at))
		r.p.notes.wait()
	}
	renew(15800 * time.Millisecond) // past T1 (15 s): to the standby, silent
	tick(19900 * time.Millisecond)  // timeout: answered from the binding (10 s)
	if !reachedPrimary {
		renew(25200 * time.Millisecond) // 5 s later (its T1), 0.8 s before T2
		tick(29300 * time.Millisecond)  // timeout: 0.7 s left, no answer
	}
	tick(30100 * time.Millisecond)
	if !r.tab.isBound(s1MAC) {
		t.Errorf("s1's binding ended at the ISP's expiry: no renewal of it ever went to %v, which would have extended it (reached: %v); counters %v",
			ispSID, reachedPrimary, r.p.Counters())
	}
}

// Kea HA's failure detection (max-unacked-clients > 0, Kea's default 10):
// a standby whose partner stopped answering heartbeats takes over only
// once it sees clients whose secs field (RFC 2131 §2: "seconds elapsed
// since client began address acquisition or renewal process") exceeds
// max-ack-delay (default 10 s). A client talking to Kea itself rebinds at
// T2 with secs = T2 - T1. ispmux answers its subscribers' renewals itself
// and rebinds for them, but relays the subscriber's own secs (a few
// seconds at most, ispmux answered its previous renewal): the standby
// never counts the client, never takes over, and every binding of the
// crashed server expires (TestKeaHAUnackedDetection, e2e: three dhclient
// subscribers, max-unacked-clients 1, all three "expired").
func TestRebindCarriesRenewalElapsedSecs(t *testing.T) {
	r, second := twoServers(t, false)
	r.bindVia(ispSID, ispSID, func(ack *dhcpv4.DHCPv4) {
		ack.UpdateOption(dhcpv4.OptIPAddressLeaseTime(time.Hour))
		ack.UpdateOption(dhcpv4.OptRenewTimeValue(30 * time.Minute))
		ack.UpdateOption(dhcpv4.OptRebindingTimeValue(52*time.Minute + 30*time.Second))
	})
	b, err := r.store.Binding("acc0", 0, [6]byte(mac(s1)))
	if err != nil {
		t.Fatal(err)
	}
	base := b.Expires.Add(-time.Hour)
	r.p.now = func() time.Time { return base.Add(55 * time.Minute) } // past T2: 25 min into ispmux's renewal
	req := renewing(t, s1, b.IP.String())
	req.NumSeconds = 2 // the subscriber's own renewal started 2 s ago
	r.fromClientUnicast(req, b.IP)
	up, _ := r.relayedTo()
	m := up[second]
	if m == nil {
		t.Fatalf("REBINDING not relayed to %v: %v", second, keys(up))
	}
	if m.NumSeconds < 10 {
		t.Errorf("REBINDING relayed 25 min past the ISP's T1 with secs %d (the subscriber's): a Kea HA standby never counts the client as unacked", m.NumSeconds)
	}
}
