package dhcpproxy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// The ISP's ACK gives its own T1 and T2 (Kea's example configuration:
// renew-timer 1/4, rebind-timer 1/2 of the lease). ispmux stores them
// (ackOptions keeps 58 and 59) but pastRebind estimated T2 from T1 as if
// T1 were half the lease: T2 = end - (end-T1)/4 = 48.75 s of 60 here,
// not the ISP's 30 s. The ISP's own T2 is used now when it gave one.
// ISP-SERVERS.md: "so does a renewal past the ISP's T2"; RFC 2131
// §4.4.5: T1 and T2 are the server's (options 58, 59).
func TestRenewalPastISPGivenT2GoesToEveryServer(t *testing.T) {
	r, second := twoServers(t, false)
	r.bindVia(ispSID, ispSID, func(ack *dhcpv4.DHCPv4) {
		ack.UpdateOption(dhcpv4.OptRenewTimeValue(15 * time.Second))
		ack.UpdateOption(dhcpv4.OptRebindingTimeValue(30 * time.Second))
	})
	base := time.Now()
	r.p.now = func() time.Time { return base.Add(40 * time.Second) } // past the ISP's T2 (30 s), before 7/8-from-T1 (48.75 s)
	ip := netip.MustParseAddr("100.64.0.101")
	r.fromClientUnicast(renewing(t, s1, ip.String()), ip)
	up, _ := r.relayedTo()
	if up[ispSID] == nil {
		t.Fatalf("renewal not relayed (relayed to %v; counters %v)", keys(up), r.p.Counters())
	}
	if up[second] == nil {
		t.Errorf("renewal 10 s past the ISP's T2 (option 59 = 30 s of a 60 s lease) relayed to the lease's server %v only, not to %v", ispSID, second)
	}
}
