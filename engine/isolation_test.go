package engine

import (
	"encoding/binary"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/fib"
)

// TestGatewayARPRequestCountedAsPunt: the ISP router's ARP request
// is copied to the control plane (the resolver learns from it, as from its
// replies), so ispmux_port_punted_frames_total, "frames copied to the
// control plane (DHCP, ARP from ISP routers)" (docs/OPERATIONS.md), counts
// it like the router's reply. It did not (the best-effort copy's result
// was ignored).
func TestGatewayARPRequestCountedAsPunt(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	// A reply from the router: punted, counted.
	r.send(1, arpFrame(t, gwaMAC, upaMAC, 0, layers.ARPReply, gwaMAC, "192.0.2.1", upaMAC, "192.0.2.2"))
	if got := r.s.Counters()[1].Punts; got != 1 {
		t.Fatalf("router's ARP reply: punts %d, want 1", got)
	}
	before := r.punts
	// A request from the router for our address: punted (and answered).
	out := r.send(1, arpFrame(t, gwaMAC, broadcastMAC, 0, layers.ARPRequest, gwaMAC, "192.0.2.1", 0, "192.0.2.2"))
	if len(out[1]) != 1 {
		t.Fatalf("router's ARP request not answered")
	}
	if r.punts != before+1 {
		t.Fatalf("router's ARP request reached the control plane %d times, want 1", r.punts-before)
	}
	if got := r.s.Counters()[1].Punts; got != 2 {
		t.Errorf("punted_frames_total on the uplink = %d after the router's reply and request, both copied to the control plane; want 2", got)
	}
}

// TestOversizedPuntIsNotQueueFull: with frame_size = 4096 (jumbo
// frames, docs/DEPLOY.md), a DHCP DISCOVER in a frame longer than
// MaxPuntFrame (here a 300-byte message followed by trailing bytes, which
// Decode accepts as Ethernet padding) was lost, and counted as
// punt_queue_full — the reason docs/OPERATIONS.md documents as "the control
// plane is not keeping up: DHCP is being lost", expected 0. Any subscriber
// could raise that alarm at will while the queue was empty. The datagram
// (L3+TotalLen bytes, 342 here) is punted now; one still too big for the
// punt queue is too_big.
func TestOversizedPuntIsNotQueueFull(t *testing.T) {
	r := newRig(t, 64)
	got := 0
	r.c.OnPunt = func(p *Punted) { got++ }
	f := udpFrame(t, sub4, broadcastMAC, 0, "0.0.0.0", "255.255.255.255", 64, 68, 67)
	f = append(f, make([]byte, 2100-len(f))...) // trailing bytes past the IPv4 total length
	b := &datapath.Batch{Port: 0, Frames: [][]byte{f}, Out: make([]datapath.Verdict, 1)}
	r.proc.Process(b)
	r.proc.Flush()
	for p := r.s.Punts.Next(); p != nil; p = r.s.Punts.Next() {
		r.c.handlePunt(p)
		r.s.Punts.Release(p)
	}
	if n := r.dropCount(0, classifier.ReasonPuntQueueFull); n != 0 {
		t.Errorf("punt_queue_full = %d with an empty punt queue (a %d-byte frame holding a %d-byte DHCP datagram)", n, len(f), binary.BigEndian.Uint16(f[16:18]))
	}
	if got != 1 {
		t.Errorf("DHCP DISCOVER punted %d times, want 1", got)
	}
}

// FuzzIsolation is FuzzProcess with a stricter oracle, the brief's
// promises: whatever a frame is, what the engine sends to the access port
// in answer to a subscriber goes back to that sender only (its MAC and
// VLAN), what it sends there for an ISP goes to the subscriber that holds
// the destination address in that ISP's VRF (overlapping plans: alpha's
// 100.64.0.11 is sub1 untagged, beta's is sub3 on VLAN 100), and a
// subscriber's IPv4 leaves only by its own ISP's uplink, from its address.
func FuzzIsolation(f *testing.F) {
	r := newRig(f, 64)
	r.bindAll()
	r.resolve()
	f.Add(uint8(0), udpFrame(f, sub1, accMAC, 0, "100.64.0.11", "198.51.100.10", 64, 1, 2))
	f.Add(uint8(0), udpFrame(f, sub3, accMAC, 100, "100.64.0.11", "198.51.100.10", 1, 1, 2))
	f.Add(uint8(1), udpFrame(f, gwaMAC, upaMAC, 0, "198.51.100.10", "100.64.0.11", 64, 1, 2))
	f.Add(uint8(2), udpFrame(f, gwbMAC, upbMAC, 201, "198.51.100.10", "100.64.0.11", 64, 1, 2))
	f.Add(uint8(2), udpFrame(f, gwbMAC, upbMAC, 201, "198.51.100.10", "100.64.0.12", 1, 1, 2))
	f.Add(uint8(0), arpFrame(f, sub1, broadcastMAC, 0, 1, sub1, "100.64.0.11", 0, "100.64.0.1"))
	f.Add(uint8(0), arpFrame(f, sub3, broadcastMAC, 100, 1, sub3, "100.64.0.11", 0, "100.64.0.12"))
	f.Add(uint8(1), arpFrame(f, gwaMAC, broadcastMAC, 0, 1, gwaMAC, "192.0.2.1", 0, "100.64.0.11"))
	type sub struct {
		vlan uint16
		isp  int // egress port of its ISP
		ip   uint32
	}
	subs := map[uint64]sub{sub1: {0, 1, ip("100.64.0.11")}, sub2: {0, 2, ip("100.64.0.12")}, sub3: {100, 2, ip("100.64.0.11")}}
	// VRF per uplink port: address → (MAC, VLAN).
	vrf := map[int]map[uint32]uint64{1: {ip("100.64.0.11"): sub1}, 2: {ip("100.64.0.12"): sub2, ip("100.64.0.11"): sub3}}
	f.Fuzz(func(t *testing.T, port uint8, frame []byte) {
		if len(frame) > 2048 {
			return
		}
		in := int(port % 3)
		var ip classifier.Packet
		inOK := ip.Decode(frame) == classifier.ReasonNone
		r.t = t
		out := r.send(in, frame)
		for _, fr := range out[0] {
			var p classifier.Packet
			if p.Decode(fr) != classifier.ReasonNone {
				t.Fatalf("undecodable frame to the access port: %x", fr)
			}
			if in == 0 {
				if !inOK || p.Dst != ip.Src || p.VLAN != ip.VLAN {
					t.Fatalf("answer to %012x VLAN %d went to %012x VLAN %d: %x", ip.Src, ip.VLAN, p.Dst, p.VLAN, fr)
				}
				continue
			}
			if p.Kind != classifier.KindIPv4 {
				t.Fatalf("non-IPv4 from an ISP to the access port: %x", fr)
			}
			want, ok := vrf[in][p.DstIP]
			if !ok || p.Dst != want || p.VLAN != subs[want].vlan {
				t.Fatalf("ISP on port %d: IPv4 to %08x sent to %012x VLAN %d, want %012x VLAN %d", in, p.DstIP, p.Dst, p.VLAN, want, subs[want].vlan)
			}
		}
		if in == 0 && inOK && ip.Kind == classifier.KindIPv4 {
			s, ok := subs[ip.Src]
			for e := 1; e <= 2; e++ {
				for _, fr := range out[e] {
					var p classifier.Packet
					if p.Decode(fr) != classifier.ReasonNone {
						t.Fatalf("undecodable frame to an uplink: %x", fr)
					}
					if !ok || e != s.isp || p.SrcIP != s.ip || (ip.VLAN != s.vlan) {
						t.Fatalf("frame from %012x VLAN %d (IP %08x) left by port %d from %08x", ip.Src, ip.VLAN, ip.SrcIP, e, p.SrcIP)
					}
				}
			}
		}
	})
}

// echoTo is an ICMP echo request from src to dst on alpha's uplink.
func echoTo(t testing.TB, src, dst string) []byte {
	fr := udpFrame(t, gwaMAC, upaMAC, 0, src, dst, 64, 0, 0)
	ip := fr[14:]
	ip[9] = 1
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], ^fib.Checksum(ip[:20], 0))
	ic := ip[20:]
	ic[0], ic[1], ic[2], ic[3] = 8, 0, 0, 0
	binary.BigEndian.PutUint16(ic[2:], ^fib.Checksum(ic, 0))
	return fr
}

// TestNoEchoReplyToMartianSource: an echo request to our uplink
// address from a source that is no single host (255.255.255.255,
// multicast, 0.0.0.0, 127/8, class E) was answered, with an echo reply
// addressed to that broadcast/multicast/loopback address put on the ISP's
// segment. RFC 1122 §3.2.1.3 (g): such a source is invalid and the datagram
// MUST be silently discarded; the engine itself refused to answer these
// sources with ICMP errors (icmpError, unicastAddr: "an address we may
// answer from") but answered their pings. Now: not_for_us, nothing sent.
func TestNoEchoReplyToMartianSource(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	if out := r.send(1, echoTo(t, "198.51.100.10", "192.0.2.2")); len(out[1]) != 1 {
		t.Fatalf("a ping from a unicast source was not answered")
	}
	for _, src := range []string{"255.255.255.255", "224.0.0.1", "0.0.0.0", "127.0.0.1", "240.0.0.1"} {
		if out := r.send(1, echoTo(t, src, "192.0.2.2")); len(out[1]) != 0 {
			t.Errorf("echo request from %s answered (reply to %s on the ISP's segment)", src, src)
		}
	}
}
