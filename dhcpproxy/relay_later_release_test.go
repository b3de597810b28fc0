package dhcpproxy

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// The kill -9 loop's orphan (s6, udhcpc): right after a restart the ISP's
// next hop is not resolved yet, and a bound subscriber's renewal REQUEST
// waits in relayLater. The subscriber then RELEASEs: its binding ends, its
// transactions are dropped (dropSub, the generation bumped) and the RELEASE
// goes out (at once, or first thing once the next hop is resolved). The
// waiting goroutine sent the REQUEST anyway, after the RELEASE: the ISP
// freed the lease, then granted the address again to the renewal (Kea
// allocates a free address a RENEWING/REBINDING client asks for), and its
// ACK bound nothing (no transaction): the ISP held a lease neither ispmux
// nor the client held. A message that waited must not be sent once the
// subscriber's binding ended after it was accepted.
func TestStartupRequestDoesNotOvertakeRelease(t *testing.T) {
	for _, releaseAfterResolution := range []bool{false, true} {
		name := "release before the next hop is resolved"
		if releaseAfterResolution {
			name = "release right after the next hop is resolved"
		}
		t.Run(name, func(t *testing.T) {
			r := newPRig(t)
			const m = "02:00:00:00:01:01"
			if got := r.dora(m, kea(t, time.Minute), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
				t.Fatalf("setup: got %v, want the ACK", got)
			}
			r.snd.take()
			// As after a restart: the next hop never resolved since start.
			r.p.resolved[r.p.isps["alpha"].Index].Store(false)
			r.tab.mu.Lock()
			r.tab.uplinkDown = true
			r.tab.mu.Unlock()
			ip := netip.MustParseAddr("100.64.0.100")
			// udhcpc's renewal (a 1 min lease is past ispmux's local
			// answers: relayed), parked in relayLater.
			renew, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac(m)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
				dhcpv4.WithClientIP(net.IP(ip.AsSlice())))
			r.fromClientUnicast(renew, ip)
			if c := r.p.Counters(); c["waited_for_next_hop"] != 1 {
				t.Fatalf("renewal did not wait for the next hop: counters %v", c)
			}
			resolve := func() {
				r.tab.mu.Lock()
				r.tab.uplinkDown = false
				r.tab.mu.Unlock()
			}
			if releaseAfterResolution {
				// Resolved; the RELEASE comes before the waiting
				// goroutine's next look (it polls every 20 ms).
				resolve()
			}
			r.fromClientUnicast(releaseOf100(t), ip)
			if !releaseAfterResolution {
				resolve()
			}
			r.p.committing.Wait() // the waiting goroutine is done
			r.p.flushIntents(time.Now())
			var order []dhcpv4.MessageType
			for _, s := range r.snd.take() {
				if s.port == upPort {
					order = append(order, dhcpOf(s.frame).MessageType())
				}
			}
			released := false
			for _, mt := range order {
				switch {
				case mt == dhcpv4.MessageTypeRelease:
					released = true
				case released:
					t.Errorf("to the ISP: %v: the %v that waited for the next hop went out after the subscriber's RELEASE "+
						"(the ISP grants the lease again, nobody holds it); counters %v", order, mt, r.p.Counters())
				}
			}
			if !released {
				t.Errorf("to the ISP: %v, want the RELEASE", order)
			}
		})
	}
}
