package engine

import (
	"testing"

	"github.com/ispmux/ispmux/classifier"
)

// A bound subscriber's UDP to or from a DHCP port that is not a client's
// message to the proxy is dropped (dhcp_bypass), in both directions, by
// the lane and the general way alike: before, a subscriber sent DHCP from
// an ephemeral port to its ISP's server with its own giaddr and Option 82
// (another customer's subscriber-id), and the server's answer to that
// giaddr (67 → 67) came back to it: leases under other customers, a
// neighbour's lease released (a security trial). DHCP itself still goes
// to the proxy: a client's 68 → 67, a server's 67 → 68 to a subscriber.
func TestDHCPBypassDropped(t *testing.T) {
	for _, lane := range []bool{true, false} {
		laneOn = lane
		r := newRig(t, 16)
		r.bindAll()
		r.resolve()
		for _, c := range []struct {
			what     string
			port     int
			f        []byte
			dropped  bool
			wantPunt bool
		}{
			{"to the ISP's server from an ephemeral port", 0, udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "192.0.2.1", 64, 1234, 67), true, false},
			// To port 67 from a DHCP port: the proxy's to judge (it
			// refuses a relay's message from a subscriber).
			{"a relay's 67 → 67", 0, udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "192.0.2.1", 64, 67, 67), false, true},
			{"as a server, from port 67", 0, udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "198.51.100.10", 64, 67, 40000), true, false},
			{"to a client port", 0, udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "198.51.100.10", 64, 40000, 68), true, false},
			{"the server's answer to the subscriber's giaddr", 1, udpFrame(t, gwaMAC, upaMAC, 0, "192.0.2.1", "100.64.0.11", 64, 67, 67), true, false},
			{"from port 68 downstream", 1, udpFrame(t, gwaMAC, upaMAC, 0, "198.51.100.10", "100.64.0.11", 64, 68, 5000), true, false},
			{"a client's DHCP (the proxy's)", 0, udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "192.0.2.1", 64, 68, 67), false, true},
			{"a server's DHCP to a subscriber (the proxy's)", 1, udpFrame(t, gwaMAC, upaMAC, 0, "192.0.2.1", "100.64.0.11", 64, 67, 68), false, true},
			{"ordinary UDP", 0, udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "198.51.100.10", 64, 40000, 53), false, false},
		} {
			before, punts := r.dropCount(c.port, classifier.ReasonDHCPBypass), r.punts
			out := r.send(c.port, c.f)
			dropped := r.dropCount(c.port, classifier.ReasonDHCPBypass) - before
			sent := 0
			for _, fs := range out {
				sent += len(fs)
			}
			switch {
			case c.dropped && (dropped != 1 || sent != 0):
				t.Errorf("lane %v, %s: dhcp_bypass +%d, %d frames sent; want dropped", lane, c.what, dropped, sent)
			case !c.dropped && dropped != 0:
				t.Errorf("lane %v, %s: counted dhcp_bypass", lane, c.what)
			case c.wantPunt && r.punts != punts+1:
				t.Errorf("lane %v, %s: not punted to the proxy", lane, c.what)
			case !c.dropped && !c.wantPunt && sent != 1:
				t.Errorf("lane %v, %s: %d frames forwarded, want 1", lane, c.what, sent)
			}
		}
	}
	laneOn = true
}

// A subscriber's frame with our own MAC as its source is forged:
// bad_source_mac, not unknown_mac (a security trial), whatever it carries.
func TestOwnMACAsSourceIsBad(t *testing.T) {
	r := newRig(t, 16)
	r.bindAll()
	r.resolve()
	for _, f := range [][]byte{
		udpFrame(t, accMAC, accMAC, 0, "100.64.0.11", "198.51.100.10", 64, 40000, 53),
		udpFrame(t, accMAC, broadcastMAC, 0, "0.0.0.0", "255.255.255.255", 64, 68, 67),
	} {
		before, unknown := r.dropCount(0, classifier.ReasonBadSourceMAC), r.dropCount(0, classifier.ReasonUnknownMAC)
		if out := r.send(0, f); len(out[0])+len(out[1])+len(out[2]) != 0 {
			t.Errorf("a frame from our own MAC was answered or forwarded")
		}
		if r.dropCount(0, classifier.ReasonBadSourceMAC) != before+1 || r.dropCount(0, classifier.ReasonUnknownMAC) != unknown {
			t.Errorf("a frame from our own MAC: bad_source_mac %d → %d, unknown_mac %d → %d", before, r.dropCount(0, classifier.ReasonBadSourceMAC),
				unknown, r.dropCount(0, classifier.ReasonUnknownMAC))
		}
	}
}
