package engine

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/internal/binding"
)

// choke is an egress queue whose TX ring takes at most room frames per
// call; with down set its Service reports the port in error.
type choke struct {
	*datapath.MemQueue
	room int
	down bool
}

func (q *choke) Transmit(descs []datapath.Desc) int {
	return q.MemQueue.Transmit(descs[:min(len(descs), q.room)])
}

func (q *choke) Service() error {
	if q.down {
		return errors.New("down")
	}
	return nil
}

// choked gives the rig's worker a choke as port 1 (alpha's uplink).
func (r *rig) choked() *choke {
	r.t.Helper()
	c := &choke{MemQueue: r.q[1], room: 1 << 30}
	w, err := datapath.NewWorker(0, []datapath.Queue{r.q[0], c, r.q[2]}, r.proc, 64, time.Millisecond)
	if err != nil {
		r.t.Fatal(err)
	}
	r.w = w
	return c
}

// TestEveryDropReason drives every drop reason of the enum through a worker
// and the engine, each from a fresh rig (bound, gateways resolved, unless
// the case says otherwise), and checks that the case's frame is counted
// under its reason on its ingress port. A reason without a case fails the
// test: every reason in the enum is produced somewhere, or removed.
func TestEveryDropReason(t *testing.T) {
	up := func(t testing.TB) []byte {
		return udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "198.51.100.10", 64, 4000, 9)
	}
	dhcp := func(t testing.TB, mac uint64) []byte {
		return udpFrame(t, mac, broadcastMAC, 0, "0.0.0.0", "255.255.255.255", 64, 68, 67)
	}
	type tc struct {
		port  int
		setup func(r *rig)
		frame func(t testing.TB) []byte
		// frameN, if set, is the i-th frame sent instead of frame's.
		frameN func(t testing.TB, i int) []byte
		times  int // frames sent (default 1); at least one must be dropped
		// unresolved: the ISP gateways' MACs are not learned.
		unresolved bool
	}
	cases := map[classifier.Reason]tc{
		classifier.ReasonMalformed: {frame: func(testing.TB) []byte { return make([]byte, 10) }},
		classifier.ReasonBadChecksum: {frame: func(t testing.TB) []byte {
			f := up(t)
			f[14+10] ^= 0x5a
			return f
		}},
		classifier.ReasonUnsupportedEtherType: {frame: func(t testing.TB) []byte {
			return serialize(t, append(ethLayers(sub1, accMAC, 0, layers.EthernetTypeIPv6), gopacket.Payload(make([]byte, 46)))...)
		}},
		classifier.ReasonBadSourceMAC: {frame: func(t testing.TB) []byte {
			return udpFrame(t, broadcastMAC, accMAC, 0, "100.64.0.11", "198.51.100.10", 64, 1, 2)
		}},
		classifier.ReasonUnknownInterface: {frame: func(t testing.TB) []byte {
			return udpFrame(t, sub1, accMAC, 7, "100.64.0.11", "198.51.100.10", 64, 1, 2)
		}},
		classifier.ReasonUnknownMAC: {frame: func(t testing.TB) []byte {
			return udpFrame(t, sub4, accMAC, 0, "100.64.0.14", "198.51.100.10", 64, 1, 2)
		}},
		classifier.ReasonSpoofedSource: {frame: func(t testing.TB) []byte {
			return udpFrame(t, sub1, accMAC, 0, "100.64.0.12", "198.51.100.10", 64, 1, 2)
		}},
		classifier.ReasonSubscriberToSubscriber: {frame: func(t testing.TB) []byte {
			return udpFrame(t, sub1, sub2, 0, "100.64.0.11", "100.64.0.12", 64, 1, 2)
		}},
		classifier.ReasonL2Broadcast: {frame: func(t testing.TB) []byte {
			return udpFrame(t, sub1, broadcastMAC, 0, "100.64.0.11", "100.64.0.255", 64, 1, 2)
		}},
		classifier.ReasonNotUnicast: {frame: func(t testing.TB) []byte {
			return udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "255.255.255.255", 64, 1, 2)
		}},
		classifier.ReasonNotForUs: {port: 1, frame: func(t testing.TB) []byte {
			return udpFrame(t, gwaMAC, sub1, 0, "198.51.100.10", "100.64.0.11", 64, 1, 2)
		}},
		classifier.ReasonTTLExpired: {frame: func(t testing.TB) []byte {
			return udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "198.51.100.10", 1, 1, 2)
		}},
		classifier.ReasonNoNextHop: {unresolved: true, frame: up},
		classifier.ReasonNoRoute: {port: 1, frame: func(t testing.TB) []byte {
			return udpFrame(t, gwaMAC, upaMAC, 0, "198.51.100.10", "100.64.0.99", 64, 1, 2)
		}},
		classifier.ReasonARPIgnored: {frame: func(t testing.TB) []byte {
			// A gratuitous reply (a reply to our MAC is punted when it
			// answers the proxy's probe: TestARPProbeReplyPunted).
			return arpFrame(t, sub1, broadcastMAC, 0, layers.ARPReply, sub1, "100.64.0.11", broadcastMAC, "100.64.0.11")
		}},
		// More DHCP than the punt queue holds, in one worker iteration per
		// batch with nobody draining it: an ISP's server answering our
		// giaddr (a subscriber's flood is held to its budget first).
		classifier.ReasonPuntQueueFull: {port: 1, times: puntPerPort + 64, frame: func(t testing.TB) []byte {
			return udpFrame(t, gwaMAC, upaMAC, 0, "192.0.2.1", "192.0.2.2", 64, 67, 67)
		}},
		// One subscriber's DHCP beyond its budget.
		classifier.ReasonDHCPFlood: {times: dhcpPuntBurst + 10, frame: func(t testing.TB) []byte { return dhcp(t, sub1) }},
		// The egress (alpha's uplink) UMEM has no free frame for the copy.
		classifier.ReasonNoTxFrame: {frame: up, setup: func(r *rig) {
			for {
				if _, ok := r.q[1].Alloc(); !ok {
					return
				}
			}
		}},
		classifier.ReasonTxFull: {frame: up, setup: func(r *rig) { r.choked().room = 0 }},
		classifier.ReasonPortError: {frame: up, setup: func(r *rig) {
			c := r.choked()
			c.room, c.down = 0, true
			r.w.RunOnce() // Service reports the port in error
		}},
		// Beyond the per-port sample of unregistered MACs' DHCP: made-up
		// MACs, one message each, within their circuit's share, the
		// port's sample spent (by the port's other circuits).
		classifier.ReasonUnregisteredDHCP: {times: unregCircuitBurst / 2, setup: func(r *rig) {
			if err := r.c.SetAdmitted([]uint64{sub1}); err != nil {
				r.t.Fatal(err)
			}
			r.proc.unregTokens[0], r.proc.unregLast[0] = 0, nanotime()+1
		}, frameN: func(t testing.TB, i int) []byte { return dhcp(t, 0x026600000000|uint64(i)) }},
		// Beyond one circuit's share of that sample: made-up MACs on
		// one circuit.
		classifier.ReasonUnregisteredDHCPCircuit: {times: unregCircuitBurst + 10, setup: func(r *rig) {
			if err := r.c.SetAdmitted([]uint64{sub1}); err != nil {
				r.t.Fatal(err)
			}
		}, frameN: func(t testing.TB, i int) []byte { return dhcp(t, 0x026600000000|uint64(i)) }},
		classifier.ReasonTooBig: {setup: func(r *rig) { r.c.SetMTU(1, 1400) }, frame: func(t testing.TB) []byte {
			ipl := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
				SrcIP: net.ParseIP("100.64.0.11").To4(), DstIP: net.ParseIP("198.51.100.10").To4()}
			udp := &layers.UDP{SrcPort: 1, DstPort: 2}
			_ = udp.SetNetworkLayerForChecksum(ipl)
			return serialize(t, append(ethLayers(sub1, accMAC, 0, layers.EthernetTypeIPv4), ipl, udp, gopacket.Payload(make([]byte, 1472)))...)
		}},
		// A loose source route (LSRR) through 192.0.2.99.
		classifier.ReasonIPOptions: {frame: func(t testing.TB) []byte {
			ipl := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
				SrcIP: net.ParseIP("100.64.0.11").To4(), DstIP: net.ParseIP("198.51.100.10").To4(),
				Options: []layers.IPv4Option{{OptionType: 131, OptionLength: 7, OptionData: []byte{4, 192, 0, 2, 99}}}}
			udp := &layers.UDP{SrcPort: 1, DstPort: 2}
			_ = udp.SetNetworkLayerForChecksum(ipl)
			return serialize(t, append(ethLayers(sub1, accMAC, 0, layers.EthernetTypeIPv4), ipl, udp, gopacket.Payload(make([]byte, 8)))...)
		}},
		// A bound subscriber's DHCP to its ISP's server around the
		// relay: from an ephemeral port, so not the proxy's (a
		// security trial forged Option 82 at Kea this way).
		classifier.ReasonDHCPBypass: {frame: func(t testing.TB) []byte {
			return udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "192.0.2.1", 64, 1234, 67)
		}},
		// A walled-garden (onboarding) subscriber's NTP.
		classifier.ReasonWalledGarden: {setup: func(r *rig) {
			if err := r.c.Bind(Binding{Port: 0, MAC: sub4, ISP: binding.GardenVRF, IP: netip.MustParseAddr("100.64.0.14")}); err != nil {
				r.t.Fatal(err)
			}
		}, frame: func(t testing.TB) []byte {
			return udpFrame(t, sub4, accMAC, 0, "100.64.0.14", "162.159.200.1", 64, 123, 123)
		}},
	}
	for r := classifier.ReasonNone + 1; r < classifier.NumReasons; r++ {
		c, ok := cases[r]
		if !ok {
			t.Errorf("drop reason %s: no case produces it (produce it where its condition happens, or remove it)", r)
			continue
		}
		t.Run(r.String(), func(t *testing.T) {
			rg := newRig(t, 64)
			rg.bindAll()
			if !c.unresolved {
				rg.resolve()
			}
			if c.setup != nil {
				c.setup(rg)
			}
			frame := func(int) []byte { return c.frame(t) }
			if c.frameN != nil {
				frame = func(i int) []byte { return c.frameN(t, i) }
			}
			n := max(c.times, 1)
			for sent := 0; sent < n; {
				k := min(n-sent, 64)
				for i := range k {
					if !rg.q[c.port].Inject(frame(sent + i)) {
						t.Fatal("inject failed")
					}
				}
				rg.w.RunOnce() // no punt drained: the punt queue fills
				sent += k
			}
			got := rg.s.Counters()[c.port].Drops
			if got[r] == 0 {
				t.Errorf("%d frame(s) on port %d: no %s drop; drops %v", n, c.port, r, got)
			}
			// Only the one reason (a TTL expiry's ICMP answer and a too-big
			// frame's are sent, not dropped).
			for o, v := range got {
				if v != 0 && classifier.Reason(o) != r {
					t.Errorf("also counted %s (%d)", classifier.Reason(o), v)
				}
			}
		})
	}
}
