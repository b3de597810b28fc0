package engine

import (
	"cmp"
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

// The garden in the test rig: its uplink is VLAN 250 of port 2 ("upb"),
// next hop (and portal) 10.255.0.2. sub4 (untagged) and sub5 (VLAN 100)
// hold onboarding leases.
const (
	gwgMAC = 0x02bb000000fa
	sub5   = 0x020000000105
	portal = "10.255.0.2"
)

func gardenRig(t testing.TB) *rig {
	t.Helper()
	r := newRig(t, 64)
	r.bindAll()
	r.resolve()
	r.c.ConfigureISP(binding.GardenVRF, fib.Uplink{Port: 2, VLAN: 250, MAC: upbMAC, Addr: ip("10.255.0.1"), PrefixLen: 30, Gateway: ip(portal)})
	r.c.resolver.Learn(binding.GardenVRF, ip(portal), gwgMAC, time.Now())
	for _, b := range []Binding{
		{Port: 0, MAC: sub4, ISP: binding.GardenVRF, IP: netip.MustParseAddr("100.64.0.14")},
		{Port: 0, VLAN: 100, MAC: sub5, ISP: binding.GardenVRF, IP: netip.MustParseAddr("100.64.0.15")},
	} {
		if err := r.c.Bind(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.s.SetGarden(&Garden{PortalAddr: ip(portal)}); err != nil {
		t.Fatal(err)
	}
	return r
}

// gardenSub is a subscriber of the rig: MAC, VLAN, address.
type gardenSub struct {
	mac  uint64
	vlan uint16
	ip   string
}

var (
	onboard   = gardenSub{sub4, 0, "100.64.0.14"}
	onboard5  = gardenSub{sub5, 100, "100.64.0.15"}
	alphaSub1 = gardenSub{sub1, 0, "100.64.0.11"}
)

func ipLayer(s gardenSub, dst string, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, Flags: layers.IPv4DontFragment,
		SrcIP: net.ParseIP(s.ip).To4(), DstIP: net.ParseIP(dst).To4()}
}

// dnsFrame is a DNS query msg from s (port 5353) to dst:53.
func dnsFrame(t testing.TB, s gardenSub, dst string, msg []byte) []byte {
	ipl := ipLayer(s, dst, layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: 5353, DstPort: 53}
	_ = udp.SetNetworkLayerForChecksum(ipl)
	return serialize(t, append(ethLayers(s.mac, accMAC, s.vlan, layers.EthernetTypeIPv4), ipl, udp, gopacket.Payload(msg))...)
}

// tcpFrame is a TCP segment from s (port 40000) to dst:dport.
func tcpFrame(t testing.TB, s gardenSub, dst string, dport uint16, seg layers.TCP, payload []byte) []byte {
	ipl := ipLayer(s, dst, layers.IPProtocolTCP)
	seg.SrcPort, seg.DstPort, seg.Window = 40000, layers.TCPPort(dport), 64240
	_ = seg.SetNetworkLayerForChecksum(ipl)
	return serialize(t, append(ethLayers(s.mac, accMAC, s.vlan, layers.EthernetTypeIPv4), ipl, &seg, gopacket.Payload(payload))...)
}

// l4Valid reports whether the UDP or TCP checksum of the IPv4 packet ipl
// verifies.
func l4Valid(ipl *layers.IPv4) bool {
	var ph [12]byte
	copy(ph[0:], ipl.SrcIP.To4())
	copy(ph[4:], ipl.DstIP.To4())
	ph[9] = byte(ipl.Protocol)
	binary.BigEndian.PutUint16(ph[10:], uint16(len(ipl.Payload)))
	return fib.Checksum(ipl.Payload, fib.Checksum(ph[:], 0)) == 0xffff
}

// only checks that out holds exactly one frame, sent on port, and returns it.
func only(t *testing.T, out [datapath.MaxPorts][][]byte, port int) []byte {
	t.Helper()
	for p, fs := range out {
		if want := map[bool]int{true: 1, false: 0}[p == port]; len(fs) != want {
			t.Fatalf("port %d sent %d frames, want %d", p, len(fs), want)
		}
	}
	return out[port][0]
}

func TestGardenDNS(t *testing.T) {
	r := gardenRig(t)
	for _, c := range []struct {
		name string
		s    gardenSub
		dst  string
	}{
		{"untagged, public resolver", onboard, "8.8.8.8"},
		{"tagged, to the gateway", onboard5, "100.64.0.1"},
		{"to the portal", onboard, portal},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := r.s.Counters()[0]
			f := only(t, r.send(0, dnsFrame(t, c.s, c.dst, query(0xbeef, "Connectivity.Example.com", dnsTypeA, nil))), 0)
			ipl := checkIPv4(t, f, c.s.mac, accMAC, c.s.vlan, 64)
			if ipl.SrcIP.String() != c.dst || ipl.DstIP.String() != c.s.ip || ipl.Protocol != layers.IPProtocolUDP || ipl.IHL != 5 {
				t.Errorf("answer %v → %v proto %v ihl %d", ipl.SrcIP, ipl.DstIP, ipl.Protocol, ipl.IHL)
			}
			p := decode(t, f)
			udp := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
			if udp.SrcPort != 53 || udp.DstPort != 5353 || int(udp.Length) != len(ipl.Payload) || !l4Valid(ipl) {
				t.Errorf("UDP %d → %d length %d (of %d), checksum valid %v", udp.SrcPort, udp.DstPort, udp.Length, len(ipl.Payload), l4Valid(ipl))
			}
			d, ok := p.Layer(layers.LayerTypeDNS).(*layers.DNS)
			if !ok {
				t.Fatalf("no DNS in %v", p)
			}
			if d.ID != 0xbeef || !d.QR || !d.AA || !d.RD || d.RA || d.ResponseCode != 0 || len(d.Answers) != 1 ||
				string(d.Questions[0].Name) != "Connectivity.Example.com" {
				t.Fatalf("DNS answer %+v", d)
			}
			if a := d.Answers[0]; a.Type != layers.DNSTypeA || a.TTL != 1 || a.IP.String() != portal {
				t.Errorf("A record %+v", a)
			}
			after := r.s.Counters()[0]
			if after.DNSAnswers != before.DNSAnswers+1 || after.Drops != before.Drops || after.Up != before.Up {
				t.Errorf("counters: DNS answers %d → %d, drops %v → %v", before.DNSAnswers, after.DNSAnswers, before.Drops, after.Drops)
			}
		})
	}

	// AAAA: NODATA; with a list of names, others get NXDOMAIN.
	f := only(t, r.send(0, dnsFrame(t, onboard, "8.8.8.8", query(2, "example.com", 28, optRR(4096, 0, true, nil)))), 0)
	d := decode(t, f).Layer(layers.LayerTypeDNS).(*layers.DNS)
	if d.ResponseCode != 0 || len(d.Answers) != 0 || len(d.Additionals) != 1 {
		t.Errorf("AAAA: %+v", d)
	}
	if err := r.s.SetGarden(&Garden{PortalAddr: ip(portal), Names: []string{"portal.example.net"}}); err != nil {
		t.Fatal(err)
	}
	f = only(t, r.send(0, dnsFrame(t, onboard, "8.8.8.8", query(3, "example.com", dnsTypeA, nil))), 0)
	if d := decode(t, f).Layer(layers.LayerTypeDNS).(*layers.DNS); d.ResponseCode != layers.DNSResponseCodeNXDomain || len(d.Answers) != 0 {
		t.Errorf("unlisted name: %+v", d)
	}
	f = only(t, r.send(0, dnsFrame(t, onboard, "8.8.8.8", query(3, "PORTAL.example.net", dnsTypeA, nil))), 0)
	if d := decode(t, f).Layer(layers.LayerTypeDNS).(*layers.DNS); d.ResponseCode != 0 || len(d.Answers) != 1 {
		t.Errorf("listed name: %+v", d)
	}
	if c := r.s.Counters()[0]; c.DNSAnswers != 6 {
		t.Errorf("DNS answers %d, want 6", c.DNSAnswers)
	}
}

// TestGardenDNSIPOptions: a query with IP options is answered with a plain
// 20-byte header (the options are not echoed), the datagram moved up.
func TestGardenDNSIPOptions(t *testing.T) {
	r := gardenRig(t)
	ipl := ipLayer(onboard, "8.8.8.8", layers.IPProtocolUDP)
	ipl.Options = []layers.IPv4Option{{OptionType: 7, OptionLength: 7, OptionData: make([]byte, 5)}, {OptionType: 0}} // record route
	udp := &layers.UDP{SrcPort: 5353, DstPort: 53}
	_ = udp.SetNetworkLayerForChecksum(ipl)
	in := serialize(t, append(ethLayers(sub4, accMAC, 0, layers.EthernetTypeIPv4), ipl, udp, gopacket.Payload(query(4, "a.example", dnsTypeA, nil)))...)
	f := only(t, r.send(0, in), 0)
	out := checkIPv4(t, f, sub4, accMAC, 0, 64)
	if out.IHL != 5 || len(out.Options) != 0 || !l4Valid(out) {
		t.Errorf("IHL %d options %v, UDP checksum valid %v", out.IHL, out.Options, l4Valid(out))
	}
	if d, ok := decode(t, f).Layer(layers.LayerTypeDNS).(*layers.DNS); !ok || d.ID != 4 || len(d.Answers) != 1 {
		t.Errorf("answer %+v", d)
	}
}

func TestGardenTCP(t *testing.T) {
	r := gardenRig(t)
	syn := layers.TCP{SYN: true, Seq: 1000}
	// The portal, on 80 and 443 (tagged subscriber too): to the garden's uplink.
	for _, c := range []struct {
		s     gardenSub
		dport uint16
	}{{onboard, 443}, {onboard, 80}, {onboard5, 443}} {
		f := only(t, r.send(0, tcpFrame(t, c.s, portal, c.dport, syn, nil)), 2)
		ipl := checkIPv4(t, f, gwgMAC, upbMAC, 250, 63)
		if ipl.SrcIP.String() != c.s.ip || ipl.DstIP.String() != portal {
			t.Errorf("forwarded %v → %v", ipl.SrcIP, ipl.DstIP)
		}
	}
	if c := r.s.Counters()[0]; c.Up != 3 || c.Drops != (classifier.Counters{}) {
		t.Errorf("up %d, drops %v", c.Up, c.Drops)
	}

	// HTTPS, and any other TCP port but 80 (DNS over TCP, SSH, an app's
	// port), elsewhere: a reset from that address (RFC 9293 §3.10.7.1).
	for _, c := range []struct {
		name           string
		s              gardenSub
		seg            layers.TCP
		payload        int
		seq, ack       uint32
		withACK, reset bool
		port           uint16
	}{
		{name: "DNS over TCP", s: onboard, seg: syn, ack: 1001, withACK: true, port: 53},
		{name: "port 8080", s: onboard, seg: syn, ack: 1001, withACK: true, port: 8080},
		{name: "SYN", s: onboard, seg: syn, ack: 1001, withACK: true},
		{name: "SYN tagged", s: onboard5, seg: syn, ack: 1001, withACK: true},
		{name: "ACK with data", s: onboard, seg: layers.TCP{ACK: true, PSH: true, Seq: 5000, Ack: 7777}, payload: 10, seq: 7777},
		{name: "FIN with data", s: onboard, seg: layers.TCP{FIN: true, Seq: 0xffffffff}, payload: 3, ack: 3, withACK: true},
		{name: "SYN wraps", s: onboard, seg: layers.TCP{SYN: true, Seq: 0xffffffff}, ack: 0, withACK: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := r.s.Counters()[0]
			port := cmp.Or(c.port, 443)
			f := only(t, r.send(0, tcpFrame(t, c.s, "93.184.216.34", port, c.seg, make([]byte, c.payload))), 0)
			ipl := checkIPv4(t, f, c.s.mac, accMAC, c.s.vlan, 64)
			if ipl.SrcIP.String() != "93.184.216.34" || ipl.DstIP.String() != c.s.ip || ipl.Length != 40 || !l4Valid(ipl) {
				t.Errorf("reset %v → %v, length %d, TCP checksum valid %v", ipl.SrcIP, ipl.DstIP, ipl.Length, l4Valid(ipl))
			}
			tcp := decode(t, f).Layer(layers.LayerTypeTCP).(*layers.TCP)
			if tcp.SrcPort != layers.TCPPort(port) || tcp.DstPort != 40000 || !tcp.RST || tcp.ACK != c.withACK || tcp.SYN || tcp.FIN || tcp.PSH ||
				tcp.Seq != c.seq || tcp.Ack != c.ack || tcp.DataOffset != 5 || len(tcp.Payload) != 0 {
				t.Errorf("reset %d → %d rst %v ack %v seq %d ack %d, want seq %d ack %d (ACK %v)",
					tcp.SrcPort, tcp.DstPort, tcp.RST, tcp.ACK, tcp.Seq, tcp.Ack, c.seq, c.ack, c.withACK)
			}
			after := r.s.Counters()[0]
			if after.GardenResets != before.GardenResets+1 || after.Drops != before.Drops {
				t.Errorf("resets %d → %d, drops %v → %v", before.GardenResets, after.GardenResets, before.Drops, after.Drops)
			}
		})
	}
}

// TestGardenWalls: what a walled-garden subscriber may not do, and what
// the others keep doing.
func TestGardenWalls(t *testing.T) {
	r := gardenRig(t)
	frag := func(f []byte) []byte {
		f[14+6] |= 0x20 // more fragments
		binary.BigEndian.PutUint16(f[14+10:], 0)
		binary.BigEndian.PutUint16(f[14+10:], ^fib.Checksum(f[14:34], 0))
		return f
	}
	for _, c := range []struct {
		name  string
		frame []byte
	}{
		{"NTP", udpFrame(t, sub4, accMAC, 0, "100.64.0.14", "162.159.200.1", 64, 123, 123)},
		{"ping elsewhere", icmpEcho(t, sub4, accMAC, 0, "100.64.0.14", "8.8.8.8", 8)},
		{"ping the portal", icmpEcho(t, sub4, accMAC, 0, "100.64.0.14", portal, 8)},
		{"HTTP elsewhere, the handshake's last ACK", tcpFrame(t, onboard, "93.184.216.34", 80, layers.TCP{ACK: true, Seq: 1, Ack: 2}, nil)},
		{"HTTP elsewhere, data acknowledging another SYN-ACK", tcpFrame(t, onboard, "93.184.216.34", 80, layers.TCP{ACK: true, PSH: true, Seq: 1, Ack: 2}, []byte("GET / HTTP/1.1\r\n\r\n"))},
		{"HTTP to a broadcast address", tcpFrame(t, onboard, "255.255.255.255", 80, layers.TCP{SYN: true}, nil)},
		{"SSH to the portal", tcpFrame(t, onboard, portal, 22, layers.TCP{SYN: true}, nil)},
		{"reset to 443", tcpFrame(t, onboard, "93.184.216.34", 443, layers.TCP{RST: true, ACK: true, Seq: 1, Ack: 2}, nil)},
		{"bad data offset", func() []byte {
			f := tcpFrame(t, onboard, "93.184.216.34", 443, layers.TCP{SYN: true}, nil)
			f[14+20+12] = 4 << 4
			return f
		}()},
		{"HTTPS to a broadcast address", tcpFrame(t, onboard, "255.255.255.255", 443, layers.TCP{SYN: true}, nil)},
		{"fragmented DNS", frag(dnsFrame(t, onboard, "8.8.8.8", query(1, "a.b", dnsTypeA, nil)))},
		{"fragmented HTTPS to the portal", frag(tcpFrame(t, onboard, portal, 443, layers.TCP{SYN: true}, nil))},
		{"malformed DNS: compression pointer", dnsFrame(t, onboard, "8.8.8.8", dnsMsg(1, 0, 1, 0, 0, 0, []byte{1, 'a', 0xc0, 12}, dnsTypeA, dnsClassIN, nil))},
		{"malformed DNS: QDCOUNT 2", dnsFrame(t, onboard, "8.8.8.8", dnsMsg(1, 0, 2, 0, 0, 0, wireName("a.b"), dnsTypeA, dnsClassIN, append(wireName("c"), 0, 1, 0, 1)))},
		{"malformed DNS: truncated", dnsFrame(t, onboard, "8.8.8.8", query(1, "example.com", dnsTypeA, nil)[:20])},
		{"malformed DNS: label of 64", dnsFrame(t, onboard, "8.8.8.8", query(1, string(make([]byte, 64)), dnsTypeA, nil))},
		{"malformed DNS: a response", dnsFrame(t, onboard, "8.8.8.8", dnsMsg(1, dnsFlagQR, 1, 0, 0, 0, wireName("a.b"), dnsTypeA, dnsClassIN, nil))},
		{"DNS to a broadcast address", dnsFrame(t, onboard, "255.255.255.255", query(1, "a.b", dnsTypeA, nil))},
		{"UDP length beyond the datagram", func() []byte {
			f := dnsFrame(t, onboard, "8.8.8.8", query(1, "a.b", dnsTypeA, nil))
			binary.BigEndian.PutUint16(f[14+20+4:], 200)
			return f
		}()},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := r.dropCount(0, classifier.ReasonWalledGarden)
			out := r.send(0, c.frame)
			for p, fs := range out {
				if len(fs) != 0 {
					t.Errorf("sent %d frame(s) on port %d", len(fs), p)
				}
			}
			if got := r.dropCount(0, classifier.ReasonWalledGarden); got != before+1 {
				t.Errorf("walled_garden drops %d → %d; drops %v", before, got, r.s.Counters()[0].Drops)
			}
		})
	}

	// The gateway: pings answered, anything else not_for_us (as for
	// every subscriber).
	f := only(t, r.send(0, icmpEcho(t, sub4, accMAC, 0, "100.64.0.14", "100.64.0.1", 8)), 0)
	checkEchoReply(t, f, sub4, accMAC, 0, "100.64.0.1", "100.64.0.14")
	// The router a garden lease gives (its pool's first address): the
	// same. Not one of them: walled.
	if err := r.s.SetGarden(&Garden{PortalAddr: ip(portal), Routers: []uint32{ip("100.72.0.1")}}); err != nil {
		t.Fatal(err)
	}
	f = only(t, r.send(0, icmpEcho(t, sub4, accMAC, 0, "100.64.0.14", "100.72.0.1", 8)), 0)
	checkEchoReply(t, f, sub4, accMAC, 0, "100.72.0.1", "100.64.0.14")
	walled := r.dropCount(0, classifier.ReasonWalledGarden)
	r.send(0, icmpEcho(t, sub4, accMAC, 0, "100.64.0.14", "100.72.0.2", 8))
	if n := r.dropCount(0, classifier.ReasonWalledGarden); n != walled+1 {
		t.Errorf("ping to 100.72.0.2: walled_garden %d, want %d", n, walled+1)
	}
	r.send(0, udpFrame(t, sub4, accMAC, 0, "100.64.0.14", "100.64.0.1", 64, 123, 123))
	if n := r.dropCount(0, classifier.ReasonNotForUs); n != 1 {
		t.Errorf("UDP to the gateway: not_for_us %d, want 1", n)
	}
	// Spoofing is checked first.
	r.send(0, udpFrame(t, sub4, accMAC, 0, "100.64.0.99", "8.8.8.8", 64, 5353, 53))
	if n := r.dropCount(0, classifier.ReasonSpoofedSource); n != 1 {
		t.Errorf("spoofed DNS query: spoofed_source %d, want 1", n)
	}

	// A subscriber of a real ISP is not in the garden: its DNS goes to its
	// ISP, HTTPS too.
	f = only(t, r.send(0, dnsFrame(t, alphaSub1, "8.8.8.8", query(1, "example.com", dnsTypeA, nil))), 1)
	checkIPv4(t, f, gwaMAC, upaMAC, 0, 63)
	f = only(t, r.send(0, tcpFrame(t, alphaSub1, "93.184.216.34", 443, layers.TCP{SYN: true}, nil)), 1)
	checkIPv4(t, f, gwaMAC, upaMAC, 0, 63)

	// The portal's answer comes back through the garden's VRF like any
	// ISP's (the rig's port 2 has no garden VLAN: looked up directly).
	if d, ok := r.s.FIB.Lookup(binding.GardenVRF, ip("100.64.0.14")); !ok || d.MAC != sub4 {
		t.Errorf("garden VRF: %+v %v", d, ok)
	}
}

// TestGardenOff: without a garden configured, or with its uplink
// unresolved, a walled-garden subscriber reaches nothing past the gateway.
func TestGardenOff(t *testing.T) {
	r := gardenRig(t)
	r.s.Up.SetGatewayMAC(binding.GardenVRF, 0)
	r.c.ConfigureISP(binding.GardenVRF, fib.Uplink{Port: 2, VLAN: 250, MAC: upbMAC, Addr: ip("10.255.0.1"), PrefixLen: 30, Gateway: ip("10.255.0.3")})
	r.send(0, tcpFrame(t, onboard, portal, 443, layers.TCP{SYN: true}, nil))
	if n := r.dropCount(0, classifier.ReasonNoNextHop); n != 1 {
		t.Errorf("portal unresolved: no_next_hop %d, want 1", n)
	}
	if err := r.s.SetGarden(nil); err != nil {
		t.Fatal(err)
	}
	for _, f := range [][]byte{
		dnsFrame(t, onboard, "8.8.8.8", query(1, "a.b", dnsTypeA, nil)),
		tcpFrame(t, onboard, portal, 443, layers.TCP{SYN: true}, nil),
		tcpFrame(t, onboard, "93.184.216.34", 443, layers.TCP{SYN: true}, nil),
	} {
		if out := r.send(0, f); len(out[0])+len(out[1])+len(out[2]) != 0 {
			t.Errorf("sent something without a garden")
		}
	}
	if n := r.dropCount(0, classifier.ReasonWalledGarden); n != 3 {
		t.Errorf("walled_garden %d, want 3", n)
	}
	for _, g := range []*Garden{{}, {PortalAddr: 1, Names: []string{"a..b"}}} {
		if err := r.s.SetGarden(g); err == nil {
			t.Errorf("SetGarden(%+v) accepted", g)
		}
	}
}

// TestGardenAllocs: answering DNS and resetting HTTPS allocate nothing.
func TestGardenAllocs(t *testing.T) {
	r := gardenRig(t)
	if err := r.s.SetGarden(&Garden{PortalAddr: ip(portal), Names: []string{"a.example", "example.com"}}); err != nil {
		t.Fatal(err)
	}
	for _, q := range r.q {
		q.Sink = nil
	}
	isn := r.s.garden.Load().httpISN(ip("100.64.0.14"), ip("93.184.216.34"), 40000, 80)
	for name, f := range map[string][]byte{
		"dns":          dnsFrame(t, onboard, "8.8.8.8", query(1, "Example.com", dnsTypeA, optRR(1232, 0, false, nil))),
		"reset":        tcpFrame(t, onboard, "93.184.216.34", 443, layers.TCP{SYN: true, Seq: 1}, nil),
		"http syn":     tcpFrame(t, onboard, "93.184.216.34", 80, layers.TCP{SYN: true, Seq: 1}, nil),
		"http request": tcpFrame(t, onboard, "93.184.216.34", 80, layers.TCP{ACK: true, PSH: true, Seq: 2, Ack: isn + 1}, []byte("GET / HTTP/1.1\r\n\r\n")),
	} {
		allocs := testing.AllocsPerRun(100, func() {
			for range 64 {
				r.q[0].Inject(f)
			}
			r.w.RunOnce()
		})
		if allocs != 0 {
			t.Errorf("%s: worker iteration allocates %.1f times", name, allocs)
		}
	}
	if c := r.s.Counters()[0]; c.DNSAnswers == 0 || c.GardenResets == 0 || c.GardenRedirects == 0 {
		t.Errorf("nothing answered: %+v", c)
	}
}

// BenchmarkGardenDNS: one worker answering DNS queries of walled-garden
// subscribers in place (decode, MAC table, parse, answer, checksums,
// transmit), generator included.
func BenchmarkGardenDNS(b *testing.B) {
	r := gardenRig(b)
	if err := r.s.SetGarden(&Garden{PortalAddr: ip(portal), Names: []string{"captive.apple.com", "connectivitycheck.gstatic.com", "example.com"}}); err != nil {
		b.Fatal(err)
	}
	f := dnsFrame(b, onboard, "8.8.8.8", query(1, "example.com", dnsTypeA, optRR(1232, 0, false, nil)))
	acc := r.q[0]
	acc.Source = func(buf []byte) int { return copy(buf, f) }
	acc.Sink = nil
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		done += r.w.RunOnce()
	}
	b.StopTimer()
	if c := r.s.Counters()[0]; c.DNSAnswers < uint64(b.N) {
		b.Fatalf("answered %d of %d (drops %v)", c.DNSAnswers, b.N, c.Drops)
	}
}

// FuzzGardenProcess feeds arbitrary frames from the access port through a
// rig with walled-garden subscribers: no panic, no frame leaked, and what
// goes back to the access port decodes, is from our MAC and is to a bound
// subscriber.
func FuzzGardenProcess(f *testing.F) {
	r := gardenRig(f)
	f.Add(dnsFrame(f, onboard, "8.8.8.8", query(1, "example.com", dnsTypeA, optRR(1232, 0, true, nil))))
	f.Add(dnsFrame(f, onboard5, "100.64.0.1", query(1, "example.com", 28, nil)))
	f.Add(tcpFrame(f, onboard, "93.184.216.34", 443, layers.TCP{SYN: true, Seq: 9}, []byte("x")))
	f.Add(tcpFrame(f, onboard, portal, 443, layers.TCP{SYN: true}, nil))
	bound := map[uint64]bool{sub1: true, sub2: true, sub3: true, sub4: true, sub5: true}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) > 2048 {
			return
		}
		r.t = t
		for _, fr := range r.send(0, frame)[0] {
			var p classifier.Packet
			if p.Decode(fr) != classifier.ReasonNone || p.Src != accMAC || p.Kind == classifier.KindIPv4 && !bound[p.Dst] {
				t.Fatalf("bad frame to subscribers: %x", fr)
			}
		}
		for i, q := range r.q {
			if q.FreeFrames() != 1024 {
				t.Fatalf("port %d leaked frames: %d free", i, q.FreeFrames())
			}
		}
	})
}
