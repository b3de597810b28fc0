package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"
)

func TestPercentileAndDORA(t *testing.T) {
	if percentile(nil, 50) != nil {
		t.Error("percentile of nothing is not nil")
	}
	v := []float64{}
	for i := 100; i >= 1; i-- { // 1..100, unsorted
		v = append(v, float64(i))
	}
	for p, want := range map[float64]float64{50: 50, 99: 99, 100: 100, 1: 1, 0: 1} {
		if got := percentile(v, p); got == nil || *got != want {
			t.Errorf("p%g = %v, want %g", p, got, want)
		}
	}
	if got := percentile([]float64{7.25}, 99); *got != 7.25 {
		t.Errorf("single value p99 = %v", *got)
	}
	if got := doraPerS(5000, 10); got != 500 {
		t.Errorf("doraPerS = %v", got)
	}
	if got := doraPerS(10, 0); got != 0 {
		t.Errorf("doraPerS without time = %v", got)
	}
	lo, avg, hi := minAvgMax([]float64{1, 2, 6})
	if *lo != 1 || *avg != 3 || *hi != 6 {
		t.Errorf("minAvgMax = %v %v %v", *lo, *avg, *hi)
	}
}

func TestFillFromGen(t *testing.T) {
	g := &GenResult{Clients: 4, Rate: 100, WindowS: 2, FirstStartUs: 1000, LastAckUs: 2_501_000, Skipped: 3,
		Results: []ClientResult{
			{MAC: "a", Exchanges: []Exchange{{OfferUs: 1000, AckUs: 2000, OK: true}, {OfferUs: 3000, AckUs: 4000, OK: true}}},
			{MAC: "b", Exchanges: []Exchange{{OfferUs: 5000, AckUs: 0, Fail: FailNoAck}}},                  // failed at the end
			{MAC: "c", Exchanges: []Exchange{{Fail: FailNoOffer}, {OfferUs: 2000, AckUs: 6000, OK: true}}}, // recovered
			{MAC: "d", Exchanges: []Exchange{}}, // never started
		}}
	var c DHCPCase
	fillFromGen(&c, g)
	if c.Exchanges != 5 || c.Completed != 3 || c.Failed != 2 {
		t.Errorf("exchanges %d completed %d failed %d", c.Exchanges, c.Completed, c.Failed)
	}
	if c.ClientsStarted != 3 || c.ClientsWithoutACK != 1 || c.FailPct != 33.33 || c.ExchangeFailPct != 40 {
		t.Errorf("clients %d without ACK %d fail %v %% exchanges %v %%", c.ClientsStarted, c.ClientsWithoutACK, c.FailPct, c.ExchangeFailPct)
	}
	if c.FailReasons[FailNoAck] != 1 || c.FailReasons[FailNoOffer] != 1 {
		t.Errorf("reasons %v", c.FailReasons)
	}
	// Wall: the last ACK came 2.5 s after the first start, after the 2 s
	// window.
	if c.WallS != 2.5 || c.DORAPerS != 1.2 {
		t.Errorf("wall %v s, %v DORA/s", c.WallS, c.DORAPerS)
	}
	if *c.OfferP50Ms != 2 || *c.OfferP99Ms != 5 || *c.AckP50Ms != 4 || *c.AckP99Ms != 6 {
		t.Errorf("offer p50 %v p99 %v ack p50 %v p99 %v", *c.OfferP50Ms, *c.OfferP99Ms, *c.AckP50Ms, *c.AckP99Ms)
	}
	if c.Skipped != 3 {
		t.Errorf("skipped %d", c.Skipped)
	}
}

func TestParsePerfdhcp(t *testing.T) {
	b, err := os.ReadFile("testdata/perfdhcp-500.txt")
	if err != nil {
		t.Fatal(err)
	}
	s, err := parsePerfdhcp(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if s.Rate < 499 || s.Rate > 501 || s.ExpectedRate != 500 {
		t.Errorf("rate %v expected %v", s.Rate, s.ExpectedRate)
	}
	if s.DO.Sent != s.DO.Received || s.DO.Sent < 2400 || s.RA.Drops != 0 || s.RA.AvgDelayMs <= 0 || s.RA.MaxDelayMs < s.RA.MinDelayMs {
		t.Errorf("stats %+v", s)
	}
	var c DHCPCase
	fillFromPerfdhcp(&c, s, 5)
	if c.Completed != s.RA.Received || c.Failed != 0 || c.DORAPerS != round(s.Rate, 1) || c.AckAvgMs == nil || c.AckP99Ms != nil {
		t.Errorf("case %+v", c)
	}

	// A run with drops (exit 3).
	b, err = os.ReadFile("testdata/perfdhcp-drops.txt")
	if err != nil {
		t.Fatal(err)
	}
	s, err = parsePerfdhcp(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if s.DO.Drops == 0 || s.DO.Sent != s.DO.Received+s.DO.Drops || s.RA.Sent != s.DO.Received {
		t.Errorf("drops run %+v", s)
	}
	fillFromPerfdhcp(&c, s, 3)
	if c.Exchanges != s.DO.Sent || c.Completed != s.RA.Received || c.ExchangeFailPct <= 1 || c.FailReasons[FailNoOffer] != s.DO.Drops {
		t.Errorf("drops case %+v", c)
	}

	for _, bad := range []string{"", "Rate: x 4-way\n***Statistics for: DISCOVER-OFFER***\n***Statistics for: REQUEST-ACK***\n",
		"***Statistics for: DISCOVER-OFFER***\nsent packets: 3\n"} {
		if _, err := parsePerfdhcp(bad); err == nil {
			t.Errorf("parsePerfdhcp(%q): no error", bad)
		}
	}
}

func TestGenMAC(t *testing.T) {
	for _, i := range []int{0, 1, 999, 59999} {
		m := genMAC(i)
		if m[0] != 0x02 || m[1] != 0x20 {
			t.Errorf("genMAC(%d) = %s", i, m)
		}
		if got := genIndex(m, 60000); got != i {
			t.Errorf("genIndex(%s) = %d, want %d", m, got, i)
		}
	}
	if genMAC(0).String() != "02:20:00:00:00:01" {
		t.Errorf("first MAC %s", genMAC(0))
	}
	if genIndex(genMAC(10), 10) != -1 || genIndex(net.HardwareAddr{2, 0, 0, 0, 0, 1}, 10) != -1 {
		t.Error("genIndex accepts a foreign MAC")
	}
}

// TestClientFrames checks the generator's frames with gopacket (checksums
// included) and the DHCP content of DISCOVER and REQUEST.
func TestClientFrames(t *testing.T) {
	mac := genMAC(41)
	xid := dhcpv4.TransactionID{1, 2, 3, 4}
	for _, f := range [][]byte{discoverFrame(mac, xid), requestFrame(mac, xid, net.IPv4(100, 64, 1, 7), net.IPv4(100, 64, 0, 1))} {
		p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		if el := p.ErrorLayer(); el != nil {
			t.Fatalf("decode: %v", el.Error())
		}
		eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		udp := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if eth.DstMAC.String() != "ff:ff:ff:ff:ff:ff" || eth.SrcMAC.String() != mac.String() {
			t.Errorf("eth %s → %s", eth.SrcMAC, eth.DstMAC)
		}
		if !ip.SrcIP.Equal(net.IPv4zero) || !ip.DstIP.Equal(net.IPv4bcast) || ip.TTL != 64 || int(ip.Length) != len(f)-14 {
			t.Errorf("ip %s → %s ttl %d len %d", ip.SrcIP, ip.DstIP, ip.TTL, ip.Length)
		}
		if udp.SrcPort != 68 || udp.DstPort != 67 {
			t.Errorf("udp %d → %d", udp.SrcPort, udp.DstPort)
		}
		// Checksums: recompute with gopacket and compare.
		ipc, udpc := ip.Checksum, udp.Checksum
		buf := gopacket.NewSerializeBuffer()
		ip2, udp2 := *ip, *udp
		if err := udp2.SetNetworkLayerForChecksum(&ip2); err != nil {
			t.Fatal(err)
		}
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true},
			eth, &ip2, &udp2, gopacket.Payload(udp.Payload)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), f) {
			t.Errorf("frame differs from gopacket's (ip csum %#x, udp csum %#x)", ipc, udpc)
		}
		m, err := dhcpv4.FromBytes(udp.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if m.OpCode != dhcpv4.OpcodeBootRequest || m.TransactionID != xid || m.ClientHWAddr.String() != mac.String() || m.IsBroadcast() {
			t.Errorf("dhcp %s", m.Summary())
		}
		switch m.MessageType() {
		case dhcpv4.MessageTypeDiscover:
		case dhcpv4.MessageTypeRequest:
			if !m.RequestedIPAddress().Equal(net.IPv4(100, 64, 1, 7)) || !m.ServerIdentifier().Equal(net.IPv4(100, 64, 0, 1)) {
				t.Errorf("request options 50/54: %s", m.Summary())
			}
		default:
			t.Errorf("message type %s", m.MessageType())
		}
	}
}

// replyFrame builds a server's reply as ispmux or dhcrelay sends it:
// unicast to chaddr and yiaddr, from the gateway.
func replyFrame(t *testing.T, mt dhcpv4.MessageType, mac net.HardwareAddr, xid dhcpv4.TransactionID, yiaddr net.IP) []byte {
	t.Helper()
	m, err := dhcpv4.New(dhcpv4.WithReply(&dhcpv4.DHCPv4{OpCode: dhcpv4.OpcodeBootRequest, HWType: 1, ClientHWAddr: mac, TransactionID: xid}),
		dhcpv4.WithMessageType(mt), dhcpv4.WithYourIP(yiaddr),
		dhcpv4.WithServerIP(net.IPv4(100, 64, 0, 1)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(100, 64, 0, 1))),
		dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0xa0, 1}, DstMAC: mac, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(100, 64, 0, 1).To4(), DstIP: yiaddr.To4()}
	udp := &layers.UDP{SrcPort: 67, DstPort: 68}
	_ = udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}, eth, ip, udp, gopacket.Payload(m.ToBytes())); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestParseReply(t *testing.T) {
	mac := genMAC(3)
	xid := dhcpv4.TransactionID{9, 9, 9, 9}
	f := replyFrame(t, dhcpv4.MessageTypeOffer, mac, xid, net.IPv4(100, 64, 1, 4))
	m, err := parseReply(f)
	if err != nil {
		t.Fatal(err)
	}
	if m.MessageType() != dhcpv4.MessageTypeOffer || m.TransactionID != xid || !m.YourIPAddr.Equal(net.IPv4(100, 64, 1, 4)) {
		t.Errorf("parsed %s", m.Summary())
	}
	// A client's own frame is not a reply.
	if _, err := parseReply(discoverFrame(mac, xid)); err == nil {
		t.Error("DISCOVER parsed as a reply")
	}
	for _, bad := range [][]byte{nil, f[:30], append(append([]byte{}, f[:12]...), 0x86, 0xdd)} {
		if _, err := parseReply(bad); err == nil {
			t.Errorf("parseReply(% x): no error", bad)
		}
	}
}

var errAgain error = unix.EAGAIN

// TestGeneratorDORA runs the generator against a fake server: every
// DISCOVER is answered with an OFFER, every REQUEST with an ACK, except
// client 2's, which gets no OFFER (its exchanges fail after retries).
func TestGeneratorDORA(t *testing.T) {
	o := &genOptions{clients: 4, rate: 200, duration: 100 * time.Millisecond, timeout: 20 * time.Millisecond, retries: 1}
	frames := make(chan []byte, 1000)
	g := newGenerator(o, func(f []byte) error {
		frames <- append([]byte(nil), f...)
		return nil
	})
	recv := func(buf []byte) (int, error) {
		select {
		case f := <-frames:
			m, err := dhcpv4.FromBytes(f[42:])
			if err != nil {
				return 0, err
			}
			if genIndex(m.ClientHWAddr, 4) == 2 {
				return 0, errAgain
			}
			mt := dhcpv4.MessageTypeOffer
			if m.MessageType() == dhcpv4.MessageTypeRequest {
				mt = dhcpv4.MessageTypeAck
			}
			return copy(buf, replyFrame(t, mt, m.ClientHWAddr, m.TransactionID, net.IPv4(100, 64, 1, 9))), nil
		case <-time.After(5 * time.Millisecond):
			return 0, errAgain
		}
	}
	res := g.run(context.Background(), recv)
	var c DHCPCase
	fillFromGen(&c, res)
	if c.Exchanges < 10 || c.Completed == 0 || c.ClientsWithoutACK != 1 || c.FailReasons[FailNoOffer] == 0 {
		t.Errorf("case %+v", c)
	}
	for _, e := range res.Results[2].Exchanges {
		if e.OK || e.Discovers != 2 || e.Fail != FailNoOffer {
			t.Errorf("client 2 exchange %+v, want 2 DISCOVERs and no_offer", e)
		}
	}
	if res.Results[0].Address != "100.64.1.9" {
		t.Errorf("client 0 address %q", res.Results[0].Address)
	}
	js, err := json.Marshal(res)
	if err != nil || !bytes.Contains(js, []byte(`"offer_us"`)) {
		t.Errorf("JSON %v %s", err, js)
	}
}

func TestParseDHCPAndConfig(t *testing.T) {
	o, err := parseDHCP(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.clients != 4000 || len(o.rates) != 3 || o.topRate() != 2000 || o.duration != 10*time.Second || o.runs != 5 ||
		!o.search || o.outage != 10000 || o.timeout != 4*time.Second || o.id != "benchdh" || o.out != "bench-out" {
		t.Errorf("defaults %+v", o)
	}
	o, err = parseDHCP([]string{"--rate", "300", "--search=false"}, &bytes.Buffer{})
	if err != nil || len(o.rates) != 1 || o.rates[0] != 300 || o.maxRate() != 300 {
		t.Errorf("--rate 300: %+v %v", o, err)
	}
	for _, bad := range [][]string{{"--clients", "0"}, {"--rates", "0"}, {"--rates", "x"}, {"--duration", "1500ms"}, {"x"},
		{"--runs", "0"}, {"--search-min", "10", "--search-max", "5"}, {"--rates", "", "--search=false", "--outage", "0"}} {
		if _, err := parseDHCP(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("parseDHCP(%q): no error", bad)
		}
	}
	lim := dhcpLimits(1000, 8000, 2)
	if !strings.Contains(lim, "mac_rate = 48\n") || !strings.Contains(lim, "max_pending = 32000\n") {
		t.Errorf("limits:\n%s", lim)
	}
}

func TestDHCPResultOutputs(t *testing.T) {
	o, err := parseDHCP([]string{"--rates", "100,2000", "--runs", "3", "--outage", "100"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	r := newDHCPResult(o, nil)
	for run := 1; run <= 3; run++ {
		f := float64(run)
		r.Cases = append(r.Cases,
			DHCPCase{Name: CaseDHCPISPmux, Phase: PhaseRate, Run: run, OfferedRate: 100, AckP99Ms: ptr(2 * f), OfferP99Ms: ptr(f), CPUUsPerDORA: ptr(300)},
			DHCPCase{Name: CaseDHCPISPmux, Phase: PhaseRate, Run: run, OfferedRate: 2000, AckP99Ms: ptr(8 + f), OfferP99Ms: ptr(4), CPUUsPerDORA: ptr(100 + 10*f),
				Legs: &DHCPLegs{OfferThroughP99Ms: ptr(f), AckThroughP99Ms: ptr(3 * f), OfferServerP99Ms: ptr(2.5), AckWireP99Ms: ptr(4 * f)}},
			DHCPCase{Name: CaseDHCPRelay, Phase: PhaseRate, Run: run, OfferedRate: 2000, AckP99Ms: ptr(1), CPUUsPerDORA: ptr(80),
				Legs: &DHCPLegs{OfferThroughP99Ms: ptr(0.5)}},
			// search: ispmux passes 1000, 2000, fails 4000, passes 2828 (run 2 fails it)
			DHCPCase{Name: CaseDHCPISPmux, Phase: PhaseSearch, Run: run, OfferedRate: 1000},
			DHCPCase{Name: CaseDHCPISPmux, Phase: PhaseSearch, Run: run, OfferedRate: 2000},
			DHCPCase{Name: CaseDHCPISPmux, Phase: PhaseSearch, Run: run, OfferedRate: 4000, LossPct: 7, Saturated: "kea 99%"},
			DHCPCase{Name: CaseDHCPISPmux, Phase: PhaseSearch, Run: run, OfferedRate: 2828, LossPct: map[bool]float64{true: 3}[run == 2], Saturated: "ispmux 95%"},
			DHCPCase{Name: CaseDHCPRelay, Phase: PhaseSearch, Run: run, OfferedRate: 1000, LossPct: 0.5},
			DHCPCase{Name: CaseDHCPISPmux, Phase: PhaseOutage, Run: run, Subscribers: 100, Bound: 100, BoundS: ptr(1 + f)},
			DHCPCase{Name: CaseDHCPRelay, Phase: PhaseOutage, Run: run, Subscribers: 100, Bound: 100, BoundS: ptr(2)},
		)
		r.Durable = append(r.Durable, DurableCheck{Run: run, ClientsACKed: 50, Durable: 50})
	}
	r.Cases = append(r.Cases, DHCPCase{Name: CaseDHCPKeaDirect, Phase: PhaseDirect, Error: "boom"})
	r.finish()
	if r.P99Ms["2000"] != 10 || r.P99Ms["100"] != 4 || r.OfferP99Ms["2000"] != 4 || r.RelayP99Ms["2000"] != 1 {
		t.Errorf("p99 maps %v %v %v", r.P99Ms, r.OfferP99Ms, r.RelayP99Ms)
	}
	if r.OfferThroughP99Ms["2000"] != 2 || r.AckThroughP99Ms["2000"] != 6 || r.ServerOfferP99Ms["2000"] != 2.5 ||
		r.RelayOfferThroughP99Ms["2000"] != 0.5 || r.RelayAckThroughP99Ms != nil || len(r.OfferThroughP99Ms) != 1 {
		t.Errorf("legs maps %v %v %v %v %v", r.OfferThroughP99Ms, r.AckThroughP99Ms, r.ServerOfferP99Ms, r.RelayOfferThroughP99Ms, r.RelayAckThroughP99Ms)
	}
	if r.WireAckP99Ms["2000"] != 8 || r.WireOfferP99Ms != nil || r.RelayWireAckP99Ms != nil {
		t.Errorf("wire maps %v %v %v", r.WireAckP99Ms, r.WireOfferP99Ms, r.RelayWireAckP99Ms)
	}
	if *r.ISPmuxCPUUsPerDORA != 120 || *r.RelayCPUUsPerDORA != 80 || *r.CPURatio != 1.5 || r.CPURate != 2000 {
		t.Errorf("cpu %v %v %v", *r.ISPmuxCPUUsPerDORA, *r.RelayCPUUsPerDORA, *r.CPURatio)
	}
	st := r.Summary["ispmux.2000.cpu_us_per_dora"]
	if st.Min != 110 || st.Max != 130 || st.N != 3 {
		t.Errorf("summary %+v", st)
	}
	if *r.ISPmuxCapacity != 2828 || *r.RelayCapacity != 1000 || !strings.HasPrefix(r.ISPmuxSaturated, "kea (2 of 3") ||
		!strings.HasPrefix(r.RelaySaturated, "none") {
		t.Errorf("capacity %v %v, saturated %q %q", *r.ISPmuxCapacity, *r.RelayCapacity, r.ISPmuxSaturated, r.RelaySaturated)
	}
	if *r.OutageISPmuxS != 3 || *r.OutageRelayS != 2 || !r.EveryBindingDurable {
		t.Errorf("outage %v %v durable %v", *r.OutageISPmuxS, *r.OutageRelayS, r.EveryBindingDurable)
	}
	met := map[string]bool{}
	for _, tg := range r.Targets {
		met[tg.What] = tg.Met
	}
	if !met["ispmux REQUEST → ACK p99 at 2000/s, ms"] || !met["ispmux DISCOVER → OFFER p99 at 2000/s, ms"] ||
		!met["ispmux ÷ dhcrelay CPU per DORA at 2000/s, every binding durable"] || met["outage recovery, 100 subscribers: ispmux ÷ dhcrelay time to 99.9 % bound"] {
		t.Errorf("targets %+v", r.Targets)
	}
	dir := t.TempDir()
	if err := writeDHCPOutputs(dir, r); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "dhcp.md"))
	svg, _ := os.ReadFile(filepath.Join(dir, "dhcp.svg"))
	js, _ := os.ReadFile(filepath.Join(dir, "dhcp.json"))
	if !strings.Contains(string(md), "| 2000 | ispmux | 4.00 | 4.00 [4.00–4.00]") && !strings.Contains(string(md), "| 2000 | ispmux |") ||
		!strings.Contains(string(md), "boom") || !strings.Contains(string(svg), "120 µs") ||
		!strings.Contains(string(md), "| 2000 | ispmux | - | 2.00 [1.00–3.00] | 2.50 [2.50–2.50] | - | 6.00 [3.00–9.00] | - |") {
		t.Errorf("md:\n%s\nsvg:\n%s", md, svg)
	}
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ispmux_cpu_us_per_dora", "relay_cpu_us_per_dora", "p99_ms", "ispmux_capacity_per_s", "relay_capacity_per_s",
		"outage_subscribers", "outage_ispmux_s", "outage_relay_s"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	if p, _ := m["p99_ms"].(map[string]any); p["100"] != 4.0 {
		t.Errorf("p99_ms %v", m["p99_ms"])
	}
	var tbl bytes.Buffer
	if err := r.WriteTable(&tbl); err != nil || !strings.Contains(tbl.String(), "kea_direct direct run 0: boom") {
		t.Errorf("table %v:\n%s", err, tbl.String())
	}
}

// TestDHCPLab runs the whole benchmark, small. It needs root; CI runs it
// as root.
func TestDHCPLab(t *testing.T) {
	dir, exe, labID := newBenchLab(t, "bd") // network namespaces, XDP, AF_PACKET: root, and not in -short
	outDir := filepath.Join(dir, "out")
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	err := Main(ctx, []string{"dhcp", "--clients", "50", "--rates", "100", "--duration", "2s", "--runs", "1",
		"--search-min", "200", "--search-max", "200", "--search-duration", "1s", "--outage", "200", "--outage-defaults=false",
		"--json", "--id", labID, "--out", outDir, "--exe", exe}, &stdout, &stderr)
	t.Logf("benchmark took %v; stderr:\n%s", time.Since(start), stderr.String())
	if err != nil {
		t.Fatalf("bench dhcp: %v\nstdout:\n%s", err, stdout.String())
	}
	var m map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &m); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout.String())
	}
	for _, k := range []string{"ispmux_cpu_us_per_dora", "relay_cpu_us_per_dora", "p99_ms", "ispmux_capacity_per_s",
		"relay_capacity_per_s", "outage_subscribers", "outage_ispmux_s", "outage_relay_s", "kea_direct_dora_per_s", "cases"} {
		if v, ok := m[k]; !ok || v == nil {
			t.Errorf("JSON lacks %q (or it is null)", k)
		}
	}
	cases, _ := m["cases"].([]any)
	// kea_direct; per system: one rate, one search step, the outage.
	if len(cases) != 7 {
		t.Fatalf("%d cases, want 7", len(cases))
	}
	for _, c := range cases {
		c := c.(map[string]any)
		if v, _ := c["completed"].(float64); !(v > 0) || c["error"] != nil {
			t.Errorf("case %v %v: completed %v, error %v", c["name"], c["phase"], c["completed"], c["error"])
		}
	}
	// --legs (the default): the fixed rate's exchanges timed at both
	// interfaces, with the kernel's timestamps, none lost; a relay's part
	// of an exchange is less than the whole at the client's wire, and that
	// no more than the whole the generator measured.
	for _, c := range cases {
		c := c.(map[string]any)
		if c["phase"] != PhaseRate {
			continue
		}
		l, _ := c["legs"].(map[string]any)
		offers, _ := l["offers"].(float64)
		acks, _ := l["acks"].(float64)
		done, _ := c["completed"].(float64)
		through, _ := l["offer_through_p50_ms"].(float64)
		wire, _ := l["offer_wire_p50_ms"].(float64)
		whole, _ := c["offer_p50_ms"].(float64)
		if offers < done || acks < done || l["capture_drops"] != 0.0 || l["no_timestamp"] != 0.0 || l["unmatched"] != 0.0 || !(through > 0 && through <= wire && wire <= whole) {
			t.Errorf("case %v: legs %v (completed %v, OFFER p50 %v ms)", c["name"], l, done, whole)
		}
	}
	for _, k := range []string{"offer_through_p99_ms", "wire_p99_ms"} {
		if _, ok := m[k].(map[string]any); !ok {
			t.Errorf("JSON lacks %s", k)
		}
	}
	// --idle-poll (the default): the PM QoS request was held.
	if v, _ := m["idle_poll"].(bool); !v {
		t.Errorf("idle_poll %v", m["idle_poll"])
	}
	if v, _ := m["every_binding_durable"].(bool); !v {
		t.Errorf("not every ACKed binding durable in ispmux's store: %v", m["durable"])
	}
	for _, f := range []string{"dhcp.json", "dhcp.md", "dhcp.svg"} {
		if fi, err := os.Stat(filepath.Join(outDir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	checkLabGone(t, labID)
}
