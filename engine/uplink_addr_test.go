package engine

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"
)

// An ISP's DHCP server (buggy or hostile) ACKs a subscriber the ISP
// router's own address (its next hop, fib.Uplink.Gateway). dhcpproxy's
// unusable() knows only our addresses and the ISP's DHCP servers, and the
// engine's CheckBind/Bind accept it: the binding is installed, and from
// then on ispmux proxy-ARPs for the router's address on the uplink, so any
// other host of the ISP's segment asking for its gateway (the ISP's DHCP
// server, say) could learn ispmux's MAC for it. Both refuse it now, and
// our own uplink address too.
func TestBindAtISPRouterAddressRefused(t *testing.T) {
	r := newRig(t, 64)
	r.resolve()
	b := Binding{Port: 0, MAC: sub1, ISP: 0, IP: netip.MustParseAddr("192.0.2.1")} // alpha's gateway
	if err := r.c.CheckBind(b); err == nil {
		if err := r.c.Bind(b); err == nil {
			t.Errorf("a subscriber was bound at ISP alpha's router address 192.0.2.1")
		}
	}
	// Another host of alpha's uplink segment asks for the router.
	const other = 0x02cc00000009
	out := r.send(1, arpFrame(t, other, broadcastMAC, 0, layers.ARPRequest, other, "192.0.2.9", 0, "192.0.2.1"))
	if len(out[1]) != 0 {
		t.Errorf("ispmux answered an ARP request for the ISP router's address 192.0.2.1 on the uplink")
	}
}
