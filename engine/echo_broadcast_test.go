package engine

import "testing"

// An echo request to our uplink address from the uplink subnet's
// directed broadcast (192.0.2.255 on 192.0.2.2/24) was answered onto the
// ISP's segment: RFC 1122 §3.2.1.3 (g) names a (subnet-directed)
// broadcast source as one to discard silently, like 255.255.255.255.
func TestNoEchoReplyToSubnetBroadcastSource(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	if out := r.send(1, echoTo(t, "198.51.100.10", "192.0.2.2")); len(out[1]) != 1 {
		t.Fatalf("a ping from a unicast source was not answered")
	}
	if out := r.send(1, echoTo(t, "192.0.2.255", "192.0.2.2")); len(out[1]) != 0 {
		t.Errorf("echo request from the uplink subnet's broadcast address answered")
	}
}
