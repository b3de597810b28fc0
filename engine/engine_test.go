package engine

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
)

// The test rig, all in memory:
//
//	port 0 "acc"  access, untagged and VLAN 100     (our MAC 02:aa:00:00:00:00)
//	port 1 "upa"  uplink of ISP 0 "alpha", untagged  (our MAC 02:aa:00:00:00:01, 192.0.2.2/24, gw 192.0.2.1)
//	port 2 "upb"  uplink of ISP 1 "beta", VLAN 201   (our MAC 02:aa:00:00:00:02, 192.0.2.2/24, gw 192.0.2.1)
const (
	accMAC = 0x02aa00000000
	upaMAC = 0x02aa00000001
	upbMAC = 0x02aa00000002
	gwaMAC = 0x02bb00000001
	gwbMAC = 0x02bb00000002
	sub1   = 0x020000000101 // alpha 100.64.0.11
	sub2   = 0x020000000102 // beta 100.64.0.12
	sub3   = 0x020000000103 // beta 100.64.0.11 (VLAN 100): same address as sub1
	sub4   = 0x020000000104 // registered nowhere
)

type capture struct {
	frames [datapath.MaxPorts][][]byte
}

type rig struct {
	t     testing.TB
	s     *State
	c     *Control
	w     *datapath.Worker
	q     []*datapath.MemQueue
	cap   *capture
	inj   *fakeInjector
	proc  *Processor
	punts int
}

type fakeInjector struct{ frames [][]byte }

func (f *fakeInjector) Inject(port uint8, frame []byte) bool {
	f.frames = append(f.frames, append([]byte{port}, frame...))
	return true
}

func newRig(t testing.TB, capacity int) *rig {
	t.Helper()
	r := rigOf(t, []PortConfig{
		{Name: "acc", MAC: accMAC, AccessVLANs: []uint16{0, 100},
			AccessAddrs: map[uint16]uint32{0: ip("100.64.0.1"), 100: ip("100.64.0.1")}},
		{Name: "upa", MAC: upaMAC, Uplinks: map[uint16]uint8{0: 0}},
		{Name: "upb", MAC: upbMAC, Uplinks: map[uint16]uint8{201: 1, 250: binding.GardenVRF}}, // VLAN 250: the garden (garden_test.go)
	}, capacity)
	r.c.ConfigureISP(0, fib.Uplink{Port: 1, MAC: upaMAC, Addr: ip("192.0.2.2"), PrefixLen: 24, Gateway: ip("192.0.2.1")})
	r.c.ConfigureISP(1, fib.Uplink{Port: 2, VLAN: 201, MAC: upbMAC, Addr: ip("192.0.2.2"), PrefixLen: 24, Gateway: ip("192.0.2.1")})
	r.addWorker(3)
	return r
}

// addWorker gives r a queue on each of its n ports, a processor and a
// worker over them.
func (r *rig) addWorker(n int) {
	t := r.t
	t.Helper()
	qs := make([]datapath.Queue, n)
	for i := range qs {
		q := datapath.NewMemQueue(1024, 2048)
		port := i
		q.Sink = func(f []byte) { r.cap.frames[port] = append(r.cap.frames[port], append([]byte(nil), f...)) }
		r.q = append(r.q, q)
		qs[i] = q
	}
	r.proc = r.s.NewProcessor()
	var err error
	r.w, err = datapath.NewWorker(0, qs, r.proc, 64, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
}

// rigOf returns a rig of the state of ports (capacity subscribers) and
// its control plane, without queues or a worker: newRig adds those.
func rigOf(t testing.TB, ports []PortConfig, capacity int) *rig {
	t.Helper()
	s, err := NewState(ports, capacity, 42)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, s: s, cap: &capture{}, inj: &fakeInjector{}}
	r.c = NewControl(s, r.inj, nil)
	return r
}

func (r *rig) bindAll() {
	r.t.Helper()
	for _, b := range []Binding{
		{Port: 0, MAC: sub1, ISP: 0, IP: netip.MustParseAddr("100.64.0.11")},
		{Port: 0, MAC: sub2, ISP: 1, IP: netip.MustParseAddr("100.64.0.12")},
		{Port: 0, VLAN: 100, MAC: sub3, ISP: 1, IP: netip.MustParseAddr("100.64.0.11")},
	} {
		if err := r.c.Bind(b); err != nil {
			r.t.Fatal(err)
		}
	}
}

// resolve learns both gateways as the control plane would from ARP replies.
func (r *rig) resolve() {
	r.learn(1, 0, gwaMAC)
	r.learn(2, 201, gwbMAC)
}

func (r *rig) learn(port uint8, vlan uint16, mac uint64) {
	f := arpFrame(r.t, mac, upMAC(port), vlan, layers.ARPReply, mac, "192.0.2.1", upMAC(port), "192.0.2.2")
	p := &Punted{Port: port}
	p.n = copy(p.buf[:], f)
	r.c.handlePunt(p)
}

func upMAC(port uint8) uint64 { return accMAC + uint64(port) }

// send injects frames on port and runs the worker once; it returns what
// every port transmitted.
func (r *rig) send(port int, frames ...[]byte) [datapath.MaxPorts][][]byte {
	r.t.Helper()
	r.cap.frames = [datapath.MaxPorts][][]byte{}
	for _, f := range frames {
		if !r.q[port].Inject(f) {
			r.t.Fatal("inject failed")
		}
	}
	r.w.RunOnce()
	for p := r.s.Punts.Next(); p != nil; p = r.s.Punts.Next() {
		r.punts++
		r.c.handlePunt(p)
		r.s.Punts.Release(p)
	}
	return r.cap.frames
}

func (r *rig) dropCount(port int, reason classifier.Reason) uint64 {
	return r.s.Counters()[port].Drops[reason]
}

func ip(s string) uint32 { return IP4(netip.MustParseAddr(s)) }

func hw(m uint64) net.HardwareAddr {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], m)
	return net.HardwareAddr(b[2:])
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// ethLayers returns Ethernet (+ 802.1Q when vlan != 0) layers for etherType.
func ethLayers(src, dst uint64, vlan uint16, et layers.EthernetType) []gopacket.SerializableLayer {
	if vlan == 0 {
		return []gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: hw(src), DstMAC: hw(dst), EthernetType: et}}
	}
	return []gopacket.SerializableLayer{
		&layers.Ethernet{SrcMAC: hw(src), DstMAC: hw(dst), EthernetType: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: vlan, Type: et},
	}
}

func udpFrame(t testing.TB, src, dst uint64, vlan uint16, sip, dip string, ttl uint8, sport, dport uint16) []byte {
	ipl := &layers.IPv4{Version: 4, TTL: ttl, Protocol: layers.IPProtocolUDP,
		SrcIP: net.ParseIP(sip).To4(), DstIP: net.ParseIP(dip).To4()}
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	_ = udp.SetNetworkLayerForChecksum(ipl)
	ls := append(ethLayers(src, dst, vlan, layers.EthernetTypeIPv4), ipl, udp, gopacket.Payload(make([]byte, 18)))
	return serialize(t, ls...)
}

func arpFrame(t testing.TB, src, dst uint64, vlan uint16, op uint16, sha uint64, spa string, tha uint64, tpa string) []byte {
	a := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: op, SourceHwAddress: hw(sha), SourceProtAddress: net.ParseIP(spa).To4(),
		DstHwAddress: hw(tha), DstProtAddress: net.ParseIP(tpa).To4()}
	return serialize(t, append(ethLayers(src, dst, vlan, layers.EthernetTypeARP), a)...)
}

func decode(t testing.TB, f []byte) gopacket.Packet {
	t.Helper()
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("transmitted frame does not decode: %v", el.Error())
	}
	return p
}

// checkIPv4 verifies the forwarded frame's L2 header, TTL and checksum.
func checkIPv4(t *testing.T, f []byte, dst, src uint64, vlan uint16, ttl uint8) *layers.IPv4 {
	t.Helper()
	p := decode(t, f)
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if got := MAC48([6]byte(eth.DstMAC)); got != dst {
		t.Errorf("dst MAC %s, want %s", eth.DstMAC, hw(dst))
	}
	if got := MAC48([6]byte(eth.SrcMAC)); got != src {
		t.Errorf("src MAC %s, want %s", eth.SrcMAC, hw(src))
	}
	if d := p.Layer(layers.LayerTypeDot1Q); (d != nil) != (vlan != 0) || (d != nil && d.(*layers.Dot1Q).VLANIdentifier != vlan) {
		t.Errorf("802.1Q layer %v, want VLAN %d", d, vlan)
	}
	ipl := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ipl.TTL != ttl {
		t.Errorf("TTL %d, want %d", ipl.TTL, ttl)
	}
	hdr := ipl.Contents
	var sum uint32
	for i := 0; i < len(hdr); i += 2 {
		sum += uint32(hdr[i])<<8 | uint32(hdr[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	if sum != 0xffff {
		t.Errorf("IPv4 header checksum invalid after rewrite (%#x)", sum)
	}
	return ipl
}

func TestUpstreamAndDownstream(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()

	out := r.send(0, udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "198.51.100.10", 64, 4000, 9))
	if len(out[1]) != 1 || len(out[2]) != 0 || len(out[0]) != 0 {
		t.Fatalf("sub1 upstream: tx per port %d/%d/%d, want only upa", len(out[0]), len(out[1]), len(out[2]))
	}
	checkIPv4(t, out[1][0], gwaMAC, upaMAC, 0, 63)

	// sub3 is on VLAN 100, ISP beta whose uplink is VLAN 201: the tag is
	// rewritten.
	out = r.send(0, udpFrame(t, sub3, accMAC, 100, "100.64.0.11", "198.51.100.10", 64, 4000, 9))
	if len(out[2]) != 1 {
		t.Fatalf("sub3 upstream: nothing on upb (drops %v)", r.s.Counters()[0].Drops)
	}
	checkIPv4(t, out[2][0], gwbMAC, upbMAC, 201, 63)

	// Downstream: the same address at two ISPs reaches two subscribers.
	out = r.send(1, udpFrame(t, gwaMAC, upaMAC, 0, "198.51.100.10", "100.64.0.11", 60, 9, 4000))
	if len(out[0]) != 1 {
		t.Fatalf("alpha → 100.64.0.11: nothing on acc (drops %v)", r.s.Counters()[1].Drops)
	}
	checkIPv4(t, out[0][0], sub1, accMAC, 0, 59)
	out = r.send(2, udpFrame(t, gwbMAC, upbMAC, 201, "198.51.100.10", "100.64.0.11", 60, 9, 4000))
	if len(out[0]) != 1 {
		t.Fatalf("beta → 100.64.0.11: nothing on acc (drops %v)", r.s.Counters()[2].Drops)
	}
	checkIPv4(t, out[0][0], sub3, accMAC, 100, 59)

	c := r.s.Counters()
	if c[0].Up != 2 || c[1].Down != 1 || c[2].Down != 1 {
		t.Errorf("counters up %d down %d/%d, want 2, 1, 1", c[0].Up, c[1].Down, c[2].Down)
	}
	for i, q := range r.q {
		if q.FreeFrames() != 1024 {
			t.Errorf("port %d leaked frames: %d free of 1024", i, q.FreeFrames())
		}
	}
}

func TestDropReasons(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	cases := []struct {
		name   string
		port   int
		frame  []byte
		reason classifier.Reason
	}{
		{"no next hop yet", 0, udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "198.51.100.10", 64, 1, 2), classifier.ReasonNoNextHop},
		{"unknown MAC", 0, udpFrame(t, sub4, accMAC, 0, "100.64.0.14", "198.51.100.10", 64, 1, 2), classifier.ReasonUnknownMAC},
		{"MAC bound on another VLAN", 0, udpFrame(t, sub1, accMAC, 100, "100.64.0.11", "198.51.100.10", 64, 1, 2), classifier.ReasonUnknownMAC},
		{"spoofed source", 0, udpFrame(t, sub1, accMAC, 0, "100.64.0.12", "198.51.100.10", 64, 1, 2), classifier.ReasonSpoofedSource},
		{"to another subscriber", 0, udpFrame(t, sub1, sub2, 0, "100.64.0.11", "100.64.0.12", 64, 1, 2), classifier.ReasonSubscriberToSubscriber},
		{"broadcast", 0, udpFrame(t, sub1, broadcastMAC, 0, "100.64.0.11", "100.64.0.255", 64, 1, 2), classifier.ReasonL2Broadcast},
		{"unknown VLAN", 0, udpFrame(t, sub1, accMAC, 7, "100.64.0.11", "198.51.100.10", 64, 1, 2), classifier.ReasonUnknownInterface},
		{"no route down", 1, udpFrame(t, gwaMAC, upaMAC, 0, "198.51.100.10", "100.64.0.12", 64, 1, 2), classifier.ReasonNoRoute},
		{"not our MAC", 1, udpFrame(t, gwaMAC, sub1, 0, "198.51.100.10", "100.64.0.11", 64, 1, 2), classifier.ReasonNotForUs},
		{"uplink untagged on a tagged ISP", 2, udpFrame(t, gwbMAC, upbMAC, 0, "198.51.100.10", "100.64.0.11", 64, 1, 2), classifier.ReasonUnknownInterface},
		{"runt", 0, make([]byte, 10), classifier.ReasonMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := r.dropCount(c.port, c.reason)
			out := r.send(c.port, c.frame)
			for p, f := range out {
				if len(f) > 0 {
					t.Errorf("frame transmitted on port %d", p)
				}
			}
			if got := r.dropCount(c.port, c.reason); got != before+1 {
				t.Errorf("%v drops %d → %d; all: %v", c.reason, before, got, r.s.Counters()[c.port].Drops)
			}
		})
		if c.name == "no next hop yet" {
			r.resolve()
		}
	}
	ttl := udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "198.51.100.10", 1, 1, 2)
	if out := r.send(0, ttl); len(out[1]) != 0 || r.dropCount(0, classifier.ReasonTTLExpired) != 1 {
		t.Errorf("TTL 1 frame forwarded or not counted")
	}
}

func TestARP(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	// A subscriber asks for its gateway (any address but its own).
	out := r.send(0, arpFrame(t, sub1, broadcastMAC, 0, layers.ARPRequest, sub1, "100.64.0.11", 0, "100.64.0.1"))
	if len(out[0]) != 1 {
		t.Fatalf("no ARP reply to the subscriber")
	}
	a := decode(t, out[0][0]).Layer(layers.LayerTypeARP).(*layers.ARP)
	if a.Operation != layers.ARPReply || MAC48([6]byte(a.SourceHwAddress)) != accMAC ||
		net.IP(a.SourceProtAddress).String() != "100.64.0.1" || MAC48([6]byte(a.DstHwAddress)) != sub1 {
		t.Errorf("bad ARP reply %+v", a)
	}
	// Tagged subscriber gets a tagged reply.
	out = r.send(0, arpFrame(t, sub3, broadcastMAC, 100, layers.ARPRequest, sub3, "100.64.0.11", 0, "100.64.0.1"))
	if len(out[0]) != 1 || decode(t, out[0][0]).Layer(layers.LayerTypeDot1Q) == nil {
		t.Errorf("tagged subscriber: no tagged ARP reply")
	}
	// Probes (sender 0.0.0.0) and requests for the own address: silence.
	for _, f := range [][]byte{
		arpFrame(t, sub1, broadcastMAC, 0, layers.ARPRequest, sub1, "0.0.0.0", 0, "100.64.0.11"),
		arpFrame(t, sub1, broadcastMAC, 0, layers.ARPRequest, sub1, "100.64.0.11", 0, "100.64.0.11"),
	} {
		if out := r.send(0, f); len(out[0]) != 0 {
			t.Errorf("answered an ARP probe/announcement")
		}
	}
	// A bound subscriber asking from another address than its binding's
	// (its address changed, ispmux's binding did not): its gateway, and
	// only its gateway, is answered, so that it can unicast its RENEW.
	spoofed := r.dropCount(0, classifier.ReasonSpoofedSource)
	if out := r.send(0, arpFrame(t, sub1, broadcastMAC, 0, layers.ARPRequest, sub1, "100.64.0.99", 0, "100.64.0.1")); len(out[0]) != 1 {
		t.Errorf("a bound subscriber asking from another address got no answer for its gateway")
	}
	if out := r.send(0, arpFrame(t, sub1, broadcastMAC, 0, layers.ARPRequest, sub1, "100.64.0.99", 0, "100.64.0.77")); len(out[0]) != 0 ||
		r.dropCount(0, classifier.ReasonSpoofedSource) != spoofed+1 {
		t.Errorf("a bound subscriber asking from another address for another host: answered, or not spoofed_source")
	}
	// Unknown subscriber: its gateway is answered within the port's
	// sample (a device whose binding ispmux revoked unicasts its RENEW,
	// which the proxy NAKs), past it dropped unknown_mac; any other
	// address gets no answer.
	if out := r.send(0, arpFrame(t, sub4, broadcastMAC, 0, layers.ARPRequest, sub4, "100.64.0.14", 0, "100.64.0.99")); len(out[0]) != 0 {
		t.Errorf("answered ARP from an unknown MAC for another address than the gateway")
	}
	answered := 0
	unknown := r.dropCount(0, classifier.ReasonUnknownMAC)
	for range unknownARPBurst + 10 {
		answered += len(r.send(0, arpFrame(t, sub4, broadcastMAC, 0, layers.ARPRequest, sub4, "100.64.0.14", 0, "100.64.0.1"))[0])
	}
	if answered < unknownARPBurst || answered > unknownARPBurst+1 {
		t.Errorf("an unknown MAC's %d requests for its gateway: %d answered, want the sample's %d", unknownARPBurst+10, answered, unknownARPBurst)
	}
	if d := r.dropCount(0, classifier.ReasonUnknownMAC) - unknown; d != uint64(unknownARPBurst+10-answered) {
		t.Errorf("unknown_mac +%d, want the %d past the sample", d, unknownARPBurst+10-answered)
	}
	// Registered but unbound (ispmux lost its bindings; the client still
	// holds its lease and must unicast its RENEW): its gateway, and only
	// its gateway, is answered.
	if err := r.c.SetAdmitted([]uint64{sub4}); err != nil {
		t.Fatal(err)
	}
	if out := r.send(0, arpFrame(t, sub4, broadcastMAC, 0, layers.ARPRequest, sub4, "100.64.0.14", 0, "100.64.0.1")); len(out[0]) != 1 {
		t.Errorf("a registered, unbound subscriber got no answer for its gateway")
	}
	if out := r.send(0, arpFrame(t, sub4, broadcastMAC, 0, layers.ARPRequest, sub4, "100.64.0.14", 0, "100.64.0.99")); len(out[0]) != 0 {
		t.Errorf("a registered, unbound subscriber got an answer for another address")
	}
	// ISP router asks for our address and for a bound subscriber.
	for _, tpa := range []string{"192.0.2.2", "100.64.0.11"} {
		out = r.send(1, arpFrame(t, gwaMAC, broadcastMAC, 0, layers.ARPRequest, gwaMAC, "192.0.2.1", 0, tpa))
		if len(out[1]) != 1 {
			t.Fatalf("no ARP reply on the uplink for %s", tpa)
		}
		a := decode(t, out[1][0]).Layer(layers.LayerTypeARP).(*layers.ARP)
		if MAC48([6]byte(a.SourceHwAddress)) != upaMAC || net.IP(a.SourceProtAddress).String() != tpa {
			t.Errorf("bad uplink ARP reply for %s: %+v", tpa, a)
		}
	}
	// An address not bound at alpha (100.64.0.12 is beta's): silence.
	if out := r.send(1, arpFrame(t, gwaMAC, broadcastMAC, 0, layers.ARPRequest, gwaMAC, "192.0.2.1", 0, "100.64.0.12")); len(out[1]) != 0 {
		t.Errorf("proxy-ARPed for another ISP's subscriber")
	}
}

func TestResolverThroughPunts(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.c.resolve(time.Now())
	if len(r.inj.frames) != 2 {
		t.Fatalf("ARP requests injected: %d, want one per ISP", len(r.inj.frames))
	}
	req := r.inj.frames[0]
	if req[0] != 1 {
		t.Errorf("first request sent on port %d, want 1", req[0])
	}
	a := decode(t, req[1:]).Layer(layers.LayerTypeARP).(*layers.ARP)
	if net.IP(a.DstProtAddress).String() != "192.0.2.1" || net.IP(a.SourceProtAddress).String() != "192.0.2.2" {
		t.Errorf("bad ARP request %+v", a)
	}
	// The router's reply arrives on the uplink and is punted.
	r.send(1, arpFrame(t, gwaMAC, upaMAC, 0, layers.ARPReply, gwaMAC, "192.0.2.1", upaMAC, "192.0.2.2"))
	if u := r.s.Up.Load().Get(0); !u.Resolved || u.GatewayMAC != gwaMAC {
		t.Fatalf("gateway not learned from a punted reply: %+v", u)
	}
	// A reply from someone else claiming the gateway on the wrong ISP's
	// uplink does not resolve beta.
	r.send(1, arpFrame(t, gwbMAC, upaMAC, 0, layers.ARPReply, gwbMAC, "192.0.2.9", upaMAC, "192.0.2.2"))
	if u := r.s.Up.Load().Get(1); u.Resolved {
		t.Errorf("beta resolved from a reply on alpha's uplink")
	}
}

func TestDHCPIsPunted(t *testing.T) {
	r := newRig(t, 64)
	// An unbound subscriber's DISCOVER (broadcast) goes to the control plane.
	f := udpFrame(t, sub4, broadcastMAC, 0, "0.0.0.0", "255.255.255.255", 64, 68, 67)
	got := 0
	r.c.OnPunt = func(p *Punted) { got++ }
	r.send(0, f)
	if got != 1 {
		t.Errorf("DHCP frames punted: %d, want 1", got)
	}
}

// TestUnregisteredDHCPSampled: with the registry loaded, DHCP from a
// registered MAC always reaches the control plane; DHCP from unregistered
// MACs (a flood of made-up ones, on one circuit) only as a small sample,
// its circuit's share of the port's (unregistered_dhcp_circuit past it;
// the port's own cap: TestUnregisteredPortSampleStillCaps), the rest
// dropped and counted in the worker.
func TestUnregisteredDHCPSampled(t *testing.T) {
	r := newRig(t, 64)
	if err := r.c.SetAdmitted([]uint64{sub4}); err != nil {
		t.Fatal(err)
	}
	got := map[uint64]int{}
	r.c.OnPunt = func(p *Punted) {
		f := p.Frame()
		got[uint64(f[6])<<40|uint64(f[7])<<32|uint64(f[8])<<24|uint64(f[9])<<16|uint64(f[10])<<8|uint64(f[11])]++
	}
	var flood [][]byte
	for i := range 200 {
		flood = append(flood, udpFrame(t, 0x026600000000|uint64(i), broadcastMAC, 0, "0.0.0.0", "255.255.255.255", 64, 68, 67))
	}
	for i := 0; i < len(flood); i += 50 {
		r.send(0, flood[i:i+50]...)
	}
	r.send(0, udpFrame(t, sub4, broadcastMAC, 0, "0.0.0.0", "255.255.255.255", 64, 68, 67))
	if got[sub4] != 1 {
		t.Errorf("the registered subscriber's DISCOVER punted %d times, want 1", got[sub4])
	}
	sampled := len(got) - 1
	if sampled < unregCircuitBurst || sampled > unregCircuitBurst+5 {
		t.Errorf("%d unregistered MACs reached the control plane, want about %d (the circuit's share of the sample)", sampled, unregCircuitBurst)
	}
	if d := r.s.Counters()[0].Drops[classifier.ReasonUnregisteredDHCPCircuit]; d != uint64(200-sampled) {
		t.Errorf("unregistered_dhcp_circuit drops %d, want %d", d, 200-sampled)
	}
	// Deregistered: sub4 is sampled like anyone else now.
	if err := r.c.SetAdmitted(nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.s.Admitted.Lookup(sub4); ok {
		t.Error("sub4 still admitted")
	}
}

func TestUnbind(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	if !r.c.Unbind(0, 0, sub1) {
		t.Fatal("unbind reported no binding")
	}
	if out := r.send(0, udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "198.51.100.10", 64, 1, 2)); len(out[1]) != 0 {
		t.Error("unbound subscriber still forwarded upstream")
	}
	if out := r.send(1, udpFrame(t, gwaMAC, upaMAC, 0, "198.51.100.10", "100.64.0.11", 64, 1, 2)); len(out[0]) != 0 {
		t.Error("unbound subscriber still reachable downstream")
	}
	// The address is free again at alpha, and still bound at beta.
	if err := r.c.Bind(Binding{Port: 0, MAC: sub4, ISP: 0, IP: netip.MustParseAddr("100.64.0.11")}); err != nil {
		t.Errorf("rebinding a freed address: %v", err)
	}
	if err := r.c.Bind(Binding{Port: 0, MAC: sub4 + 1, ISP: 1, IP: netip.MustParseAddr("100.64.0.12")}); err == nil {
		t.Error("bound an address already bound at the same ISP")
	}
}

// TestProcessAllocs proves the hot path allocates nothing: a worker
// iteration over a batch of upstream and downstream frames.
func TestProcessAllocs(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	up := udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "198.51.100.10", 64, 1, 2)
	down := udpFrame(t, gwaMAC, upaMAC, 0, "198.51.100.10", "100.64.0.11", 64, 1, 2)
	for _, q := range r.q {
		q.Sink = nil
	}
	allocs := testing.AllocsPerRun(100, func() {
		for range 32 {
			r.q[0].Inject(up)
			r.q[1].Inject(down)
		}
		r.w.RunOnce()
	})
	// Inject is the test's generator, not the datapath: it does not
	// allocate either once the queues have grown.
	if allocs != 0 {
		t.Errorf("worker iteration allocates %.1f times", allocs)
	}
}

// TestPuntFairness: a port whose punt queue is full does not keep another
// port's frames from the control plane, and the control plane takes the
// ports in turn.
func TestPuntFairness(t *testing.T) {
	q := NewPuntQueue(2, 4)
	frame := make([]byte, 60)
	for range 10 {
		q.put(0, frame) // floods: only 4 fit
	}
	if !q.put(1, frame) {
		t.Fatal("port 1's frame refused while port 0 floods")
	}
	var order []uint8
	for p := q.Next(); p != nil; p = q.Next() {
		order = append(order, p.Port)
		q.Release(p)
	}
	if len(order) != 5 || order[0] != 0 || order[1] != 1 {
		t.Errorf("served %v, want 5 frames with port 1's second", order)
	}
	if q.put(0, make([]byte, MaxPuntFrame+1)) {
		t.Error("oversized frame accepted")
	}
}

// TestVLANPushPop: a tagged subscriber of an untagged uplink and back (the
// header changes length: 18 ↔ 14 bytes), across ports and in place.
func TestVLANPushPop(t *testing.T) {
	r := newRig(t, 64)
	r.resolve()
	const sub5 = 0x020000000105
	if err := r.c.Bind(Binding{Port: 0, VLAN: 100, MAC: sub5, ISP: 0, IP: netip.MustParseAddr("100.64.0.15")}); err != nil {
		t.Fatal(err)
	}
	in := udpFrame(t, sub5, accMAC, 100, "100.64.0.15", "198.51.100.10", 64, 1, 2)
	out := r.send(0, in)
	if len(out[1]) != 1 {
		t.Fatalf("tagged upstream: nothing on upa (drops %v)", r.s.Counters()[0].Drops)
	}
	got := checkIPv4(t, out[1][0], gwaMAC, upaMAC, 0, 63)
	if len(out[1][0]) != len(in)-4 || len(got.Payload) != 26 {
		t.Errorf("pop: %d bytes from %d, payload %d", len(out[1][0]), len(in), len(got.Payload))
	}
	down := udpFrame(t, gwaMAC, upaMAC, 0, "198.51.100.10", "100.64.0.15", 64, 2, 1)
	out = r.send(1, down)
	if len(out[0]) != 1 {
		t.Fatalf("downstream to a tagged subscriber: nothing on acc (drops %v)", r.s.Counters()[1].Drops)
	}
	checkIPv4(t, out[0][0], sub5, accMAC, 100, 63)
	if len(out[0][0]) != len(down)+4 {
		t.Errorf("push: %d bytes from %d", len(out[0][0]), len(down))
	}
}

func icmpEcho(t testing.TB, src, dst uint64, vlan uint16, sip, dip string, typ uint8) []byte {
	ipl := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4,
		SrcIP: net.ParseIP(sip).To4(), DstIP: net.ParseIP(dip).To4()}
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: 7, Seq: 9}
	ls := append(ethLayers(src, dst, vlan, layers.EthernetTypeIPv4), ipl, ic, gopacket.Payload([]byte("ispmux-ping-payload-0123456789")))
	return serialize(t, ls...)
}

// checkEchoReply verifies an echo reply from us (addresses swapped, both
// checksums valid, payload kept).
func checkEchoReply(t *testing.T, f []byte, dstMAC, srcMAC uint64, vlan uint16, src, dst string) {
	t.Helper()
	ipl := checkIPv4(t, f, dstMAC, srcMAC, vlan, 64)
	if ipl.SrcIP.String() != src || ipl.DstIP.String() != dst {
		t.Errorf("reply %v → %v, want %s → %s", ipl.SrcIP, ipl.DstIP, src, dst)
	}
	p := decode(t, f)
	ic, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if !ok || ic.TypeCode.Type() != layers.ICMPv4TypeEchoReply || ic.Id != 7 || ic.Seq != 9 {
		t.Fatalf("not our echo reply: %v", p)
	}
	if string(ic.Payload) != "ispmux-ping-payload-0123456789" {
		t.Errorf("payload %q", ic.Payload)
	}
	b := ipl.Payload // the ICMP message
	if s := fib.Checksum(b, 0); s != 0xffff {
		t.Errorf("ICMP checksum invalid (%#x)", s)
	}
}

func TestPingOurAddresses(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	// A subscriber pings its gateway (untagged and tagged).
	out := r.send(0, icmpEcho(t, sub1, accMAC, 0, "100.64.0.11", "100.64.0.1", 8))
	if len(out[0]) != 1 || len(out[1]) != 0 {
		t.Fatalf("gateway ping: %d on acc, %d on upa; drops %v", len(out[0]), len(out[1]), r.s.Counters()[0].Drops)
	}
	checkEchoReply(t, out[0][0], sub1, accMAC, 0, "100.64.0.1", "100.64.0.11")
	out = r.send(0, icmpEcho(t, sub3, accMAC, 100, "100.64.0.11", "100.64.0.1", 8))
	if len(out[0]) != 1 {
		t.Fatal("tagged gateway ping not answered")
	}
	checkEchoReply(t, out[0][0], sub3, accMAC, 100, "100.64.0.1", "100.64.0.11")
	// The ISP pings our uplink address.
	out = r.send(1, icmpEcho(t, gwaMAC, upaMAC, 0, "192.0.2.1", "192.0.2.2", 8))
	if len(out[1]) != 1 {
		t.Fatal("uplink ping not answered")
	}
	checkEchoReply(t, out[1][0], gwaMAC, upaMAC, 0, "192.0.2.2", "192.0.2.1")
	if c := r.s.Counters(); c[0].EchoReplies != 2 || c[1].EchoReplies != 1 {
		t.Errorf("echo counters %d/%d", c[0].EchoReplies, c[1].EchoReplies)
	}
	// No answer: an unknown MAC, a spoofed source, or another ICMP type.
	before := r.dropCount(0, classifier.ReasonNotForUs)
	for _, f := range [][]byte{
		icmpEcho(t, sub4, accMAC, 0, "100.64.0.14", "100.64.0.1", 8),
		icmpEcho(t, sub1, accMAC, 0, "100.64.0.99", "100.64.0.1", 8),
		icmpEcho(t, sub1, accMAC, 0, "100.64.0.11", "100.64.0.1", 13),
	} {
		if out := r.send(0, f); len(out[0])+len(out[1]) != 0 {
			t.Error("answered or forwarded a frame that must be dropped")
		}
	}
	if r.dropCount(0, classifier.ReasonNotForUs) != before+1 {
		t.Errorf("timestamp request to the gateway not counted not_for_us")
	}
}

func TestTimeExceeded(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	in := udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "198.51.100.10", 1, 4000, 33434)
	out := r.send(0, in)
	if len(out[1]) != 0 || len(out[0]) != 1 {
		t.Fatalf("TTL 1 upstream: %d forwarded, %d back", len(out[1]), len(out[0]))
	}
	check := func(f []byte, dst, src uint64, from, to string, orig []byte) {
		t.Helper()
		ipl := checkIPv4(t, f, dst, src, 0, 64)
		if ipl.SrcIP.String() != from || ipl.DstIP.String() != to || ipl.Protocol != layers.IPProtocolICMPv4 {
			t.Errorf("ICMP %v → %v proto %v", ipl.SrcIP, ipl.DstIP, ipl.Protocol)
		}
		ic := ipl.Payload
		if ic[0] != 11 || ic[1] != 0 {
			t.Errorf("ICMP type/code %d/%d", ic[0], ic[1])
		}
		if s := fib.Checksum(ic, 0); s != 0xffff {
			t.Errorf("ICMP checksum invalid (%#x)", s)
		}
		// The quote: the original IP header (TTL 1 as received) and 8 bytes.
		if got := ic[8:]; string(got) != string(orig[14:14+28]) {
			t.Errorf("quote %x, want %x", got, orig[14:14+28])
		}
	}
	check(out[0][0], sub1, accMAC, "100.64.0.1", "100.64.0.11", in)

	// Downstream: from the ISP side, answered from our uplink address.
	down := udpFrame(t, gwaMAC, upaMAC, 0, "198.51.100.10", "100.64.0.11", 1, 9, 4000)
	out = r.send(1, down)
	if len(out[0]) != 0 || len(out[1]) != 1 {
		t.Fatalf("TTL 1 downstream: %d forwarded, %d back", len(out[0]), len(out[1]))
	}
	check(out[1][0], gwaMAC, upaMAC, "192.0.2.2", "198.51.100.10", down)

	// No error about an ICMP error.
	icmpErr := icmpEcho(t, sub1, accMAC, 0, "100.64.0.11", "198.51.100.10", 3)
	icmpErr[14+8] = 1 // TTL 1
	icmpErr[14+10], icmpErr[14+11] = 0, 0
	binary.BigEndian.PutUint16(icmpErr[14+10:], ^fib.Checksum(icmpErr[14:34], 0))
	if out := r.send(0, icmpErr); len(out[0])+len(out[1]) != 0 {
		t.Error("answered an ICMP error with an ICMP error")
	}

	// Rate limited: a burst of icmpSubBurst per subscriber (one already
	// spent by sub1), then its share's refill rate (5/s: no token here);
	// the port's budget (icmpErrBurst) is icmp_share_test.go's.
	var flood [][]byte
	for range 60 {
		flood = append(flood, in)
	}
	got := len(r.send(0, flood...)[0])
	if c := r.s.Counters()[0]; got < icmpSubBurst/2-1 || got > icmpSubBurst || c.ICMPErrors != uint64(got)+1 {
		t.Errorf("rate limit: %d ICMP errors for 60 expired frames (counter %d), want about %d", got, c.ICMPErrors, icmpSubBurst-1)
	}
}

// TestTooBig: a packet larger than the egress port's MTU is dropped and
// counted; with DF set the sender gets ICMP "fragmentation needed" naming
// the MTU (path MTU discovery), from the gateway address.
func TestTooBig(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	r.c.SetMTU(1, 1400) // alpha's uplink
	big := func(df bool) []byte {
		ipl := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: net.ParseIP("100.64.0.11").To4(), DstIP: net.ParseIP("198.51.100.10").To4()}
		if df {
			ipl.Flags = layers.IPv4DontFragment
		}
		udp := &layers.UDP{SrcPort: 1, DstPort: 2}
		_ = udp.SetNetworkLayerForChecksum(ipl)
		return serialize(t, append(ethLayers(sub1, accMAC, 0, layers.EthernetTypeIPv4), ipl, udp, gopacket.Payload(make([]byte, 1472)))...)
	}
	out := r.send(0, big(true))
	if len(out[1]) != 0 || len(out[0]) != 1 {
		t.Fatalf("DF packet over the MTU: %d frames to the ISP, %d back, want 0 and 1", len(out[1]), len(out[0]))
	}
	p := decode(t, out[0][0])
	ic, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if !ok || ic.TypeCode != layers.CreateICMPv4TypeCode(3, 4) || ic.Seq != 1400 || ip.SrcIP.String() != "100.64.0.1" || ip.DstIP.String() != "100.64.0.11" {
		t.Errorf("reply %v: want ICMP 3/4 with MTU 1400 from 100.64.0.1 to 100.64.0.11", p)
	}
	if out := r.send(0, big(false)); len(out[1]) != 0 || len(out[0]) != 0 {
		t.Errorf("non-DF packet over the MTU: %d frames to the ISP, %d back, want none", len(out[1]), len(out[0]))
	}
	if d := r.s.Counters()[0].Drops[classifier.ReasonTooBig]; d != 2 {
		t.Errorf("too_big drops %d, want 2", d)
	}
	// At the MTU it goes through.
	r.c.SetMTU(1, 1500)
	if out := r.send(0, big(true)); len(out[1]) != 1 {
		t.Errorf("a packet at the MTU was not forwarded")
	}
}

// TestICMPUnreachableToUplinkIsPunted: a destination unreachable addressed
// to our uplink address (about a DHCP message we relayed) goes to the
// control plane; other ICMP to it does not.
func TestICMPUnreachableToUplinkIsPunted(t *testing.T) {
	r := newRig(t, 64)
	r.resolve()
	got := 0
	r.c.OnPunt = func(p *Punted) { got++ }
	icmpTo := func(typ uint8) []byte {
		ipl := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4,
			SrcIP: net.ParseIP("192.0.2.1").To4(), DstIP: net.ParseIP("192.0.2.2").To4()}
		body := make([]byte, 36)
		body[0], body[1] = typ, 3
		return serialize(t, append(ethLayers(gwaMAC, upaMAC, 0, layers.EthernetTypeIPv4), ipl, gopacket.Payload(body))...)
	}
	r.send(1, icmpTo(3))
	if got != 1 {
		t.Errorf("destination unreachable punted %d times, want 1", got)
	}
	r.send(1, icmpTo(5)) // a redirect: not ours to handle
	if got != 1 {
		t.Errorf("other ICMP punted")
	}
}

// TestARPProbeReplyPunted: a bound subscriber's ARP reply to our MAC, for
// its bound address, to its circuit's gateway address (the answer to the
// DHCP proxy's probe of a claimed binding, dhcpproxy/probes.go) reaches
// the control plane's punt handler, the frame as received; any other ARP
// reply from a subscriber is still dropped (arp_ignored, or unknown_mac
// unbound), and nothing is sent back. Before, every reply was dropped.
func TestARPProbeReplyPunted(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	var got [][]byte
	r.c.OnPunt = func(p *Punted) { got = append(got, append([]byte(nil), p.Frame()...)) }
	for _, c := range []struct {
		what string
		f    []byte
	}{
		{"untagged", arpFrame(t, sub1, accMAC, 0, layers.ARPReply, sub1, "100.64.0.11", accMAC, "100.64.0.1")},
		{"VLAN 100", arpFrame(t, sub3, accMAC, 100, layers.ARPReply, sub3, "100.64.0.11", accMAC, "100.64.0.1")},
	} {
		got = nil
		out := r.send(0, c.f)
		if len(got) != 1 || string(got[0]) != string(c.f[:len(got[0])]) || len(got[0]) < 14+fib.ARPLen {
			t.Errorf("%s: punted %x, want the reply %x", c.what, got, c.f)
		}
		if len(out[0]) != 0 {
			t.Errorf("%s: answered a reply: %x", c.what, out[0])
		}
	}
	ignored := r.dropCount(0, classifier.ReasonARPIgnored)
	for _, c := range []struct {
		what string
		f    []byte
		why  classifier.Reason
	}{
		{"broadcast (gratuitous) reply", arpFrame(t, sub1, broadcastMAC, 0, layers.ARPReply, sub1, "100.64.0.11", broadcastMAC, "100.64.0.11"), classifier.ReasonARPIgnored},
		{"reply for another address", arpFrame(t, sub1, accMAC, 0, layers.ARPReply, sub1, "100.64.0.12", accMAC, "100.64.0.1"), classifier.ReasonARPIgnored},
		{"reply to another address", arpFrame(t, sub1, accMAC, 0, layers.ARPReply, sub1, "100.64.0.11", accMAC, "100.64.0.99"), classifier.ReasonARPIgnored},
		{"reply to another MAC in the ARP header", arpFrame(t, sub1, accMAC, 0, layers.ARPReply, sub1, "100.64.0.11", sub2, "100.64.0.1"), classifier.ReasonARPIgnored},
		{"sender MAC not the source", arpFrame(t, sub1, accMAC, 0, layers.ARPReply, sub2, "100.64.0.11", accMAC, "100.64.0.1"), classifier.ReasonSpoofedSource},
		{"unbound MAC", arpFrame(t, sub4, accMAC, 0, layers.ARPReply, sub4, "100.64.0.14", accMAC, "100.64.0.1"), classifier.ReasonUnknownMAC},
	} {
		got = nil
		before := r.dropCount(0, c.why)
		if out := r.send(0, c.f); len(got) != 0 || len(out[0]) != 0 || r.dropCount(0, c.why) != before+1 {
			t.Errorf("%s: punted %d, sent back %d, %s drops %d→%d; want dropped as %s", c.what, len(got), len(out[0]),
				c.why, before, r.dropCount(0, c.why), c.why)
		}
	}
	if n := r.dropCount(0, classifier.ReasonARPIgnored); n != ignored+4 {
		t.Errorf("arp_ignored %d, want %d", n, ignored+4)
	}
}

// TestARPProbeReplyPuntRate: a bound subscriber flooding such replies
// reaches the control plane within the port's ARP punt budget only (the
// rest dropped as arp_ignored): it cannot fill the punt queue that
// carries its circuit's DHCP.
func TestARPProbeReplyPuntRate(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	got := 0
	r.c.OnPunt = func(p *Punted) { got++ }
	f := arpFrame(t, sub1, accMAC, 0, layers.ARPReply, sub1, "100.64.0.11", accMAC, "100.64.0.1")
	for range 10 {
		var fs [][]byte
		for range 50 {
			fs = append(fs, f)
		}
		r.send(0, fs...)
	}
	if got < arpPuntBurst || got > arpPuntBurst+10 {
		t.Errorf("%d of 500 replies punted, want about %d (the burst)", got, arpPuntBurst)
	}
	if n := r.dropCount(0, classifier.ReasonARPIgnored); n != uint64(500-got) {
		t.Errorf("arp_ignored %d, want %d", n, 500-got)
	}
}

// TestARPProbeReplyAllocs: punting a probe's reply allocates nothing in
// the worker.
func TestARPProbeReplyAllocs(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	f := arpFrame(t, sub1, accMAC, 0, layers.ARPReply, sub1, "100.64.0.11", accMAC, "100.64.0.1")
	for _, q := range r.q {
		q.Sink = nil
	}
	allocs := testing.AllocsPerRun(100, func() {
		r.q[0].Inject(f)
		r.w.RunOnce()
		for p := r.s.Punts.Next(); p != nil; p = r.s.Punts.Next() {
			r.s.Punts.Release(p)
		}
	})
	if allocs != 0 {
		t.Errorf("worker iteration punting an ARP reply allocates %.1f times", allocs)
	}
	if c := r.s.Counters()[0]; c.Punts == 0 {
		t.Error("no reply punted")
	}
}

// TestDHCPPuntAllocs: a subscriber's DHCP, punted within its budget and
// dropped past it (dhcp_flood), allocates nothing in the worker.
func TestDHCPPuntAllocs(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	f := udpFrame(t, sub1, broadcastMAC, 0, "0.0.0.0", "255.255.255.255", 64, 68, 67)
	for _, q := range r.q {
		q.Sink = nil
	}
	allocs := testing.AllocsPerRun(100, func() {
		for range 8 {
			r.q[0].Inject(f)
		}
		r.w.RunOnce()
		for p := r.s.Punts.Next(); p != nil; p = r.s.Punts.Next() {
			r.s.Punts.Release(p)
		}
	})
	if allocs != 0 {
		t.Errorf("worker iteration punting DHCP allocates %.1f times", allocs)
	}
	if r.s.Counters()[0].Punts == 0 || r.dropCount(0, classifier.ReasonDHCPFlood) == 0 {
		t.Errorf("punted %d, dhcp_flood %d: want both paths taken", r.s.Counters()[0].Punts, r.dropCount(0, classifier.ReasonDHCPFlood))
	}
}

// TestDHCPPuntBudgetPerSubscriber: a subscriber flooding DHCP (sub2, bound
// on the access port, 600 DISCOVERs while the proxy reads nothing) does not
// keep its neighbour's DISCOVER (sub1, same port) from the proxy: the
// flood is held to sub2's budget (dhcp_flood), not let fill the port's
// punt queue. Before, the 600 filled the queue's 512 buffers and sub1's
// DISCOVER was dropped as punt_queue_full, as every other subscriber's on
// the port would have been for as long as the flood lasted.
func TestDHCPPuntBudgetPerSubscriber(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	for r.proc.dhcpSlot(classifier.Key(0, 0, sub1)) == r.proc.dhcpSlot(classifier.Key(0, 0, sub2)) {
		r.proc.arpSeed++ // the two share no first bucket (once in 4096 draws they do)
	}
	discover := func(mac uint64) []byte {
		return udpFrame(t, mac, broadcastMAC, 0, "0.0.0.0", "255.255.255.255", 64, 68, 67)
	}
	// The worker only: nobody reads the punt queue (rig.send would).
	inject := func(f []byte, n int) {
		for range n {
			if !r.q[0].Inject(f) {
				t.Fatal("inject failed")
			}
		}
		r.w.RunOnce()
	}
	flood := discover(sub2)
	for range 10 {
		inject(flood, 60)
	}
	inject(discover(sub1), 1)
	if n := r.dropCount(0, classifier.ReasonPuntQueueFull); n != 0 {
		t.Errorf("%d DHCP frames dropped as punt_queue_full: the flood filled the port's queue", n)
	}
	if n := r.dropCount(0, classifier.ReasonDHCPFlood); n < 600-dhcpPuntBurst-5 || n > 600-dhcpPuntBurst {
		t.Errorf("%d of the flood's 600 dropped as dhcp_flood, want about %d (beyond its burst)", n, 600-dhcpPuntBurst)
	}
	var got []uint64
	for p := r.s.Punts.Next(); p != nil; p = r.s.Punts.Next() {
		var pkt classifier.Packet
		pkt.Decode(p.Frame())
		got = append(got, pkt.Src)
		r.s.Punts.Release(p)
	}
	if len(got) == 0 || got[len(got)-1] != sub1 {
		t.Errorf("%d frames punted, the last from %x: want sub1's DISCOVER punted after the flood's", len(got), got[max(len(got)-1, 0):])
	}
}

// TestDHCPPuntBudgetSharedBucket: a subscriber whose budget bucket a
// flooding neighbour's hashes to as well still gets its DHCP to the proxy.
// sub2 floods DISCOVERs; sub1 is hashed to sub2's bucket (a seed is looked
// for that does it: with a worker's 4096 buckets, one subscriber in 4096
// shares a given subscriber's, 24 of 100,000 on one worker). Before, the
// budget was that one bucket: the flood spent it, and sub1's DISCOVER was
// dropped (dhcp_flood), as every DISCOVER and renewal of those neighbours
// for as long as the flood lasted. Now each subscriber has two buckets
// (two keyed hashes) and spends the fuller: a flood drains its own two,
// and a neighbour sharing one of them goes through the other.
func TestDHCPPuntBudgetSharedBucket(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	r.proc.arpSeed = 1 // a fixed start: the seed found is the same each run
	for r.proc.dhcpSlot(classifier.Key(0, 0, sub1)) != r.proc.dhcpSlot(classifier.Key(0, 0, sub2)) {
		r.proc.arpSeed++
	}
	discover := func(mac uint64) []byte {
		return udpFrame(t, mac, broadcastMAC, 0, "0.0.0.0", "255.255.255.255", 64, 68, 67)
	}
	inject := func(f []byte, n int) {
		for range n {
			if !r.q[0].Inject(f) {
				t.Fatal("inject failed")
			}
		}
		r.w.RunOnce()
	}
	flood := discover(sub2)
	for range 10 {
		inject(flood, 60)
	}
	flooded := r.dropCount(0, classifier.ReasonDHCPFlood)
	if flooded < 600-dhcpPuntBurst-5 || flooded > 600-dhcpPuntBurst {
		t.Errorf("%d of the flood's 600 dropped as dhcp_flood, want about %d (beyond its burst)", flooded, 600-dhcpPuntBurst)
	}
	inject(discover(sub1), 1)
	if n := r.dropCount(0, classifier.ReasonDHCPFlood); n != flooded {
		t.Errorf("sub1's DISCOVER dropped as dhcp_flood: the flood of sub2, hashed to its bucket, spent its budget")
	}
	var last uint64
	for p := r.s.Punts.Next(); p != nil; p = r.s.Punts.Next() {
		var pkt classifier.Packet
		pkt.Decode(p.Frame())
		last = pkt.Src
		r.s.Punts.Release(p)
	}
	if last != sub1 {
		t.Errorf("the last frame punted is %x's, want sub1's DISCOVER", last)
	}
}

// unregFlooder and unregNewcomer are two unregistered MACs (unregRig).
const unregFlooder, unregNewcomer = 0x026600000001, 0x026600000002

// unregRig is a bound rig where only sub1 is registered (SetAdmitted),
// its DHCP budget set to rate and burst unless rate is 0, the budget
// buckets of unregFlooder and unregNewcomer apart, and the source MACs of
// the frames punted appended to the slice returned.
func unregRig(t *testing.T, rate, burst float64) (*rig, *[]uint64) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	if rate != 0 {
		r.c.SetDHCPBudget(rate, burst)
	}
	if err := r.c.SetAdmitted([]uint64{sub1}); err != nil {
		t.Fatal(err)
	}
	key := func(mac uint64) uint64 { return classifier.Key(0, 0, mac) }
	for r.proc.dhcpSlot(key(unregFlooder)) == r.proc.dhcpSlot(key(unregNewcomer)) ||
		r.proc.dhcpSlot2(key(unregFlooder)) == r.proc.dhcpSlot2(key(unregNewcomer)) {
		r.proc.arpSeed++
	}
	got := new([]uint64)
	r.c.OnPunt = func(p *Punted) {
		var pkt classifier.Packet
		pkt.Decode(p.Frame())
		*got = append(*got, pkt.Src)
	}
	return r, got
}

// sendRepeated sends frame f on the access port in batches batches of n.
func (r *rig) sendRepeated(f []byte, batches, n int) {
	fs := make([][]byte, n)
	for i := range fs {
		fs[i] = f
	}
	for range batches {
		r.send(0, fs...)
	}
}

// TestUnregisteredFloodKeepsSample: one unregistered device repeating
// DISCOVERs (a broken CPE, 200 in a few batches) does not spend its port's
// sample of unregistered MACs' DHCP: a new device's DISCOVER after it
// still reaches the proxy (to be onboarded). The flood's messages past
// its own budget (unregCost each) are dhcp_flood. Before, the flood's
// first 20 took the port's whole sample and the new device's DISCOVER was
// dropped (unregistered_dhcp) for as long as it lasted.
func TestUnregisteredFloodKeepsSample(t *testing.T) {
	r, punted := unregRig(t, 0, 0)
	const flooder, newcomer = unregFlooder, unregNewcomer
	discover := func(mac uint64) []byte {
		return udpFrame(t, mac, broadcastMAC, 0, "0.0.0.0", "255.255.255.255", 64, 68, 67)
	}
	f := discover(flooder)
	r.sendRepeated(f, 4, 50)
	r.send(0, discover(newcomer))
	got := *punted
	if len(got) == 0 || got[len(got)-1] != newcomer {
		t.Errorf("%d punted, the last from %x; want the new device's DISCOVER punted (drops: unregistered_dhcp %d, dhcp_flood %d)",
			len(got), got[max(len(got)-1, 0):], r.dropCount(0, classifier.ReasonUnregisteredDHCP), r.dropCount(0, classifier.ReasonDHCPFlood))
	}
	if n := len(got) - 1; n > dhcpPuntBurst/unregCost+2 {
		t.Errorf("%d of the flooder's 200 punted, want about its own burst (%d)", n, dhcpPuntBurst/unregCost)
	}
}

// TestMadeUpMACFloodKeepsBudgets: a flood of made-up MACs (40,000
// unregistered DISCOVERs, each from its own MAC, past the port's sample)
// leaves the registered subscribers' DHCP budgets whole: sub1's 32
// DISCOVERs after it all reach the proxy. Only the messages the sample
// passes spend their MAC's budget (unregCost each). Before, every
// unregistered message spent unregCost from the buckets it hashed to,
// dropped by the sample or not: the flood drained every bucket of the
// worker below unregCost, and a registered subscriber, whose buckets are
// the same, had a burst of a few messages instead of dhcpPuntBurst.
func TestMadeUpMACFloodKeepsBudgets(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	r.proc.arpSeed = 1 // a fixed draw: the same buckets each run
	if err := r.c.SetAdmitted([]uint64{sub1}); err != nil {
		t.Fatal(err)
	}
	var fromSub1 int
	r.c.OnPunt = func(p *Punted) {
		var pkt classifier.Packet
		pkt.Decode(p.Frame())
		if pkt.Src == sub1 {
			fromSub1++
		}
	}
	discover := func(mac uint64) []byte {
		return udpFrame(t, mac, broadcastMAC, 0, "0.0.0.0", "255.255.255.255", 64, 68, 67)
	}
	const flood, batch = 40000, 50
	for i := 0; i < flood; i += batch {
		fs := make([][]byte, batch)
		for j := range fs {
			fs[j] = discover(0x026600000000 + uint64(i+j))
		}
		r.send(0, fs...)
	}
	if n := r.dropCount(0, classifier.ReasonUnregisteredDHCP) + r.dropCount(0, classifier.ReasonUnregisteredDHCPCircuit) +
		r.dropCount(0, classifier.ReasonDHCPFlood); n < flood-1000 {
		t.Fatalf("%d of the flood's %d dropped, want all but the port's sample", n, flood)
	}
	fs := make([][]byte, 32)
	for i := range fs {
		fs[i] = discover(sub1)
	}
	r.send(0, fs...)
	if fromSub1 != len(fs) {
		t.Errorf("%d of sub1's %d DISCOVERs punted after the made-up MACs' flood, want all (its burst is %d)", fromSub1, len(fs), dhcpPuntBurst)
	}
}

// TestUnregisteredCostFollowsBudget: with the budget raised (the lab's
// mac_rate 1000, mac_burst 10000 make it 2000/s and 20000), one
// unregistered device repeating DISCOVERs still gets about 8 through, and
// a new device's DISCOVER after it is punted. With a fixed cost of 8, it
// got 20 at once (the port's whole sample) and the newcomer was dropped.
func TestUnregisteredCostFollowsBudget(t *testing.T) {
	r, punted := unregRig(t, 2000, 20000)
	const flooder, newcomer = unregFlooder, unregNewcomer
	f := udpFrame(t, flooder, broadcastMAC, 0, "0.0.0.0", "255.255.255.255", 64, 68, 67)
	r.sendRepeated(f, 4, 50)
	r.send(0, udpFrame(t, newcomer, broadcastMAC, 0, "0.0.0.0", "255.255.255.255", 64, 68, 67))
	got := *punted
	if len(got) == 0 || got[len(got)-1] != newcomer {
		t.Errorf("%d punted, the last from %x; want the new device's DISCOVER punted", len(got), got[max(len(got)-1, 0):])
	}
	if n := len(got) - 1; n > 10 {
		t.Errorf("%d of the unregistered flooder's 200 punted with the budget raised, want about 8", n)
	}
}

// TestUnregisteredCostRateOnly: with only [dhcp] mac_rate raised (1000,
// mac_burst left at 8: the budget 2000/s and a burst of 64), one
// unregistered device repeating DISCOVERs for two seconds still gets about
// 4 a second through, and a new device's DISCOVER after it is punted.
// With the cost capped at a bucket (32 tokens), it got 59 of the port's
// sample of 60 in those two seconds (62 a second but for the sample).
func TestUnregisteredCostRateOnly(t *testing.T) {
	r, punted := unregRig(t, 2000, 16)
	const flooder, newcomer = unregFlooder, unregNewcomer
	// advance moves the worker's DHCP buckets and samples d into the
	// past, as if d had passed since each was last refilled.
	advance := func(d time.Duration) {
		for i := range r.proc.dhcpLast {
			if r.proc.dhcpLast[i] != 0 {
				r.proc.dhcpLast[i] -= int64(d)
			}
		}
		for i := range r.proc.unregLast {
			if r.proc.unregLast[i] != 0 {
				r.proc.unregLast[i] -= int64(d)
			}
		}
	}
	f := udpFrame(t, flooder, broadcastMAC, 0, "0.0.0.0", "255.255.255.255", 64, 68, 67)
	const steps, step = 80, 25 * time.Millisecond // two seconds
	for range steps {
		r.send(0, f, f, f, f, f, f, f, f, f, f)
		advance(step)
	}
	r.send(0, udpFrame(t, newcomer, broadcastMAC, 0, "0.0.0.0", "255.255.255.255", 64, 68, 67))
	got := *punted
	if len(got) == 0 || got[len(got)-1] != newcomer {
		t.Errorf("%d punted, the last from %x; want the new device's DISCOVER punted (drops: unregistered_dhcp %d, dhcp_flood %d)",
			len(got), got[max(len(got)-1, 0):], r.dropCount(0, classifier.ReasonUnregisteredDHCP), r.dropCount(0, classifier.ReasonDHCPFlood))
	}
	if n := len(got) - 1; n > 2*4+8 {
		t.Errorf("%d of the unregistered flooder's %d punted in 2 s with mac_rate raised, want about 4/s and a burst of 8", n, steps*10)
	}
}

// TestDHCPBudgetSet: Control.SetDHCPBudget raises each subscriber's DHCP
// budget (the appliance keeps it at twice the proxy's [dhcp] mac_rate and
// mac_burst, so a box configured for clients that send more meets the
// proxy's limit, not the datapath's), and never lowers it below the
// defaults.
func TestDHCPBudgetSet(t *testing.T) {
	for _, c := range []struct {
		rate, burst float64
		dropped     bool
	}{
		{0, 0, true},        // not set: the defaults
		{1, 1, true},        // below the defaults: the defaults
		{2000, 4000, false}, // raised: 300 in a burst pass
	} {
		r := newRig(t, 64)
		r.bindAll()
		r.resolve()
		if c.rate != 0 {
			r.c.SetDHCPBudget(c.rate, c.burst)
		}
		f := udpFrame(t, sub2, broadcastMAC, 0, "0.0.0.0", "255.255.255.255", 64, 68, 67)
		for range 5 {
			fs := make([][]byte, 60)
			for i := range fs {
				fs[i] = f
			}
			r.send(0, fs...)
		}
		n := r.dropCount(0, classifier.ReasonDHCPFlood)
		if c.dropped && (n < 300-dhcpPuntBurst-5 || n > 300-dhcpPuntBurst/2) || !c.dropped && n != 0 {
			t.Errorf("budget set to %v/s, burst %v: %d of 300 dropped as dhcp_flood", c.rate, c.burst, n)
		}
	}
}

// TestARPProbeReplyBudgetPerSubscriber: the reply budget is each
// subscriber's own. sub3 (bound on VLAN 100 of the access port) flooding
// replies for its own address, in the same batch as sub1's single answer
// on VLAN 0 (a probe of sub1's binding, claimed from another circuit),
// does not keep sub1's answer from the proxy; sub2 on sub1's own circuit
// neither. Before, the budget was the port's: sub3's flood spent it and
// sub1's answer was dropped (arp_ignored), so the proxy took sub1 for
// gone and let the claim (possibly a forger of sub1's MAC) take its live
// binding over.
func TestARPProbeReplyBudgetPerSubscriber(t *testing.T) {
	for _, c := range []struct {
		what string
		f    []byte
	}{
		{"sub3 on another circuit of the port", arpFrame(t, sub3, accMAC, 100, layers.ARPReply, sub3, "100.64.0.11", accMAC, "100.64.0.1")},
		{"sub2 on sub1's circuit", arpFrame(t, sub2, accMAC, 0, layers.ARPReply, sub2, "100.64.0.12", accMAC, "100.64.0.1")},
	} {
		t.Run(c.what, func(t *testing.T) {
			r := newRig(t, 64)
			r.bindAll()
			r.resolve()
			// The budgets' key drawn so that the three share no bucket
			// (they do once in about 500 draws).
			slot := func(vlan uint16, mac uint64) uint64 { return r.proc.arpSlot(classifier.Key(0, vlan, mac)) }
			for slot(0, sub1) == slot(0, sub2) || slot(0, sub1) == slot(100, sub3) {
				r.proc.arpSeed++
			}
			var got []uint64
			r.c.OnPunt = func(p *Punted) {
				var pkt classifier.Packet
				pkt.Decode(p.Frame())
				got = append(got, pkt.Src)
			}
			answer := arpFrame(t, sub1, accMAC, 0, layers.ARPReply, sub1, "100.64.0.11", accMAC, "100.64.0.1")
			var fs [][]byte
			for range 60 {
				fs = append(fs, c.f)
			}
			r.send(0, append(fs, answer)...)
			if len(got) == 0 || got[len(got)-1] != sub1 {
				t.Errorf("punted %d replies, the last from %x; want sub1's answer punted after the flood's (drops %v)",
					len(got), got[max(len(got)-1, 0):], r.dropCount(0, classifier.ReasonARPIgnored))
			}
			if flood := len(got) - 1; flood > arpPuntBurst {
				t.Errorf("%d of the flood's 60 replies punted, want at most its own budget (%d)", flood, arpPuntBurst)
			}
		})
	}
}
