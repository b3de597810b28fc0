package engine

import (
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/ispmux/ispmux/internal/binding"
)

// portalAnswerFrame is a TCP segment from the portal (sport) to dst:40000,
// as the portal's namespace sends it over the garden's uplink (port 2,
// VLAN 250).
func portalAnswerFrame(t testing.TB, sport uint16, dst string, seg layers.TCP) []byte {
	ipl := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment,
		SrcIP: net.ParseIP(portal).To4(), DstIP: net.ParseIP(dst).To4()}
	seg.SrcPort, seg.DstPort, seg.Window = layers.TCPPort(sport), 40000, 65160
	_ = seg.SetNetworkLayerForChecksum(ipl)
	return serialize(t, append(ethLayers(gwgMAC, upbMAC, 250, layers.EthernetTypeIPv4), ipl, &seg, gopacket.Payload(nil))...)
}

// TestPortalForBoundSubscribers: sub1 (alpha, 100.64.0.11) and sub3 (beta,
// the same address) open the portal: each reaches it on its VRF's port,
// and each gets only its own answers back, on port 443 or 80.
func TestPortalForBoundSubscribers(t *testing.T) {
	r := gardenRig(t)
	beta3 := gardenSub{sub3, 100, "100.64.0.11"}
	syn := layers.TCP{SYN: true, Seq: 1000}
	for _, c := range []struct {
		s     gardenSub
		vrf   uint8
		dport uint16
	}{{alphaSub1, 0, 443}, {beta3, 1, 443}, {alphaSub1, 0, 80}} {
		f := only(t, r.send(0, tcpFrame(t, c.s, portal, c.dport, syn, nil)), 2)
		ipl := checkIPv4(t, f, gwgMAC, upbMAC, 250, 63)
		tcp := decode(t, f).Layer(layers.LayerTypeTCP).(*layers.TCP)
		want := binding.PortalPort(c.vrf, c.dport == 443)
		if ipl.SrcIP.String() != c.s.ip || ipl.DstIP.String() != portal || uint16(tcp.DstPort) != want || tcp.SrcPort != 40000 || !l4Valid(ipl) {
			t.Errorf("VRF %d to the portal:%d: %v → %v:%d (want port %d), checksum valid %v", c.vrf, c.dport, ipl.SrcIP, ipl.DstIP, tcp.DstPort, want, l4Valid(ipl))
		}

		// The answer, from the VRF's port, goes to that VRF's subscriber.
		ack := layers.TCP{SYN: true, ACK: true, Seq: 9, Ack: 1001}
		back := only(t, r.send(2, portalAnswerFrame(t, want, c.s.ip, ack)), 0)
		ipl = checkIPv4(t, back, c.s.mac, accMAC, c.s.vlan, 63)
		tcp = decode(t, back).Layer(layers.LayerTypeTCP).(*layers.TCP)
		if ipl.SrcIP.String() != portal || uint16(tcp.SrcPort) != c.dport || tcp.DstPort != 40000 || !l4Valid(ipl) {
			t.Errorf("answer to VRF %d: from %v:%d (want %d), checksum valid %v", c.vrf, ipl.SrcIP, tcp.SrcPort, c.dport, l4Valid(ipl))
		}
	}
	// An answer for a VRF where the address is not bound goes nowhere.
	out := r.send(2, portalAnswerFrame(t, binding.PortalPort(7, true), "100.64.0.11", layers.TCP{ACK: true}))
	for p, fs := range out {
		if len(fs) != 0 {
			t.Errorf("answer for an unbound VRF sent on port %d", p)
		}
	}
	// The garden's own subscriber keeps port 443 both ways.
	f := only(t, r.send(0, tcpFrame(t, onboard, portal, 443, syn, nil)), 2)
	if tcp := decode(t, f).Layer(layers.LayerTypeTCP).(*layers.TCP); tcp.DstPort != 443 {
		t.Errorf("onboarding subscriber's port rewritten to %d", tcp.DstPort)
	}
	// Without a garden (no portal) the portal's address is just an address
	// at the ISP.
	if err := r.s.SetGarden(nil); err != nil {
		t.Fatal(err)
	}
	f = only(t, r.send(0, tcpFrame(t, alphaSub1, portal, 443, syn, nil)), 1)
	if tcp := decode(t, f).Layer(layers.LayerTypeTCP).(*layers.TCP); tcp.DstPort != 443 {
		t.Errorf("without a portal the port was rewritten to %d", tcp.DstPort)
	}
}

func TestPortalPathAllocs(t *testing.T) {
	r := gardenRig(t)
	for _, q := range r.q {
		q.Sink = nil
	}
	up := tcpFrame(t, alphaSub1, portal, 443, layers.TCP{SYN: true}, nil)
	down := portalAnswerFrame(t, binding.PortalPort(0, true), "100.64.0.11", layers.TCP{ACK: true})
	before := r.s.Counters()
	allocs := testing.AllocsPerRun(100, func() {
		for range 32 {
			r.q[0].Inject(up)
			r.q[2].Inject(down)
		}
		r.w.RunOnce()
	})
	if allocs != 0 {
		t.Errorf("worker iteration allocates %.1f times", allocs)
	}
	if c := r.s.Counters(); c[0].Up == before[0].Up || c[2].Down == before[2].Down {
		t.Errorf("nothing forwarded: %+v %+v", c[0], c[2])
	}
}
