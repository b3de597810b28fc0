package engine

import (
	"testing"

	"github.com/ispmux/ispmux/classifier"
)

// TestNoICMPErrorAboutBroadcastOrMulticast: RFC 1812 §4.3.2.7 and
// RFC 1122 §3.2.2: no ICMP error about a datagram destined to an IP
// broadcast or multicast address. A bound subscriber's TTL-1 packet to
// 255.255.255.255 or 224.0.0.251 (sent to our MAC) must not be answered
// with a Time Exceeded.
func TestNoICMPErrorAboutBroadcastOrMulticast(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	for _, dst := range []string{"255.255.255.255", "224.0.0.251", "239.1.2.3"} {
		out := r.send(0, udpFrame(t, sub1, accMAC, 0, "100.64.0.11", dst, 1, 5353, 5353))
		if len(out[0]) != 0 {
			t.Errorf("TTL 1 to %s: ICMP error sent back to the subscriber", dst)
		}
	}
}

// TestNoICMPErrorToNonUniqueSource: RFC 1812 §4.3.2.7 and RFC 1122
// §3.2.2: no ICMP error about a datagram whose source does not define a
// single host (zero, broadcast, multicast, loopback, class E). From the
// ISP side the source is anything the Internet sends.
func TestNoICMPErrorToNonUniqueSource(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	for _, src := range []string{"0.0.0.0", "255.255.255.255", "224.0.0.5", "127.0.0.1", "240.0.0.1"} {
		out := r.send(1, udpFrame(t, gwaMAC, upaMAC, 0, src, "100.64.0.11", 1, 9, 4000))
		if len(out[1]) != 0 {
			ipl := checkIPv4(t, out[1][0], gwaMAC, upaMAC, 0, 64)
			t.Errorf("TTL 1 from %s: ICMP error sent to %v", src, ipl.DstIP)
		}
	}
}

// TestNotUnicastNotForwarded: RFC 1812 §5.3.5.1: a router MUST NOT
// forward a limited broadcast (255.255.255.255); RFC 5771 §4: 224.0.0.0/24
// is link-local; ispmux routes no multicast. Each is dropped as
// not_unicast (before, forwarded to the ISP's router).
func TestNotUnicastNotForwarded(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	for i, dst := range []string{"255.255.255.255", "224.0.0.251", "239.1.2.3", "0.1.2.3", "127.0.0.1", "240.0.0.1"} {
		out := r.send(0, udpFrame(t, sub1, accMAC, 0, "100.64.0.11", dst, 64, 5353, 5353))
		if len(out[1]) != 0 || len(out[0]) != 0 {
			t.Errorf("subscriber packet to %s forwarded or answered", dst)
		}
		if got := r.dropCount(0, classifier.ReasonNotUnicast); got != uint64(i+1) {
			t.Errorf("to %s: not_unicast %d, want %d", dst, got, i+1)
		}
	}
}
