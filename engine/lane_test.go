package engine

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/fib"
)

// laneSeed is a frame received on a port of the garden rig.
type laneSeed struct {
	port  uint8
	frame []byte
}

// laneSeeds are frames of every kind the lane must decide or leave to the
// general way, on the garden rig (gardenRig: bound subscribers of two ISPs,
// onboarding subscribers, the portal).
func laneSeeds(t testing.TB) []laneSeed {
	up := func(src uint64, vlan uint16, sip, dip string, ttl uint8, sport, dport uint16) laneSeed {
		return laneSeed{0, udpFrame(t, src, accMAC, vlan, sip, dip, ttl, sport, dport)}
	}
	s := []laneSeed{
		up(sub1, 0, "100.64.0.11", "198.51.100.10", 64, 1024, 9),  // forwarded to alpha
		up(sub2, 0, "100.64.0.12", "198.51.100.10", 64, 1024, 9),  // to beta (VLAN 201)
		up(sub3, 100, "100.64.0.11", "198.51.100.7", 64, 1024, 9), // tagged access
		up(sub1, 0, "100.64.0.99", "198.51.100.10", 64, 1024, 9),  // spoofed source
		up(sub4, 0, "100.64.0.14", "198.51.100.10", 64, 1024, 9),  // walled garden
		up(sub1, 0, "100.64.0.11", "198.51.100.10", 1, 1024, 9),   // TTL expires
		up(sub1, 0, "100.64.0.11", "100.64.0.1", 64, 1024, 9),     // to the gateway
		up(sub1, 0, "100.64.0.11", "255.255.255.255", 64, 1024, 9),
		up(sub1, 0, "100.64.0.11", "198.51.100.10", 64, 68, 67), // DHCP
		up(sub1, 0, "100.64.0.11", "198.51.100.10", 64, 67, 68),
		up(0x020000000199, 0, "100.64.0.11", "198.51.100.10", 64, 1024, 9),  // unknown MAC
		{0, tcpFrame(t, alphaSub1, portal, 80, layers.TCP{SYN: true}, nil)}, // to the portal
		{0, tcpFrame(t, alphaSub1, portal, 22, layers.TCP{SYN: true}, nil)},
		{0, tcpFrame(t, alphaSub1, "198.51.100.10", 443, layers.TCP{ACK: true}, []byte("hello"))},
		{0, icmpEcho(t, sub1, accMAC, 0, "100.64.0.11", "198.51.100.10", 8)},
		{0, icmpEcho(t, sub1, accMAC, 0, "100.64.0.11", "100.64.0.1", 8)},
		{1, udpFrame(t, gwaMAC, upaMAC, 0, "198.51.100.10", "100.64.0.11", 64, 9, 1024)},   // to sub1
		{2, udpFrame(t, gwbMAC, upbMAC, 201, "198.51.100.10", "100.64.0.11", 64, 9, 1024)}, // to sub3
		{2, udpFrame(t, gwbMAC, upbMAC, 201, "198.51.100.10", "100.64.0.12", 64, 9, 1024)}, // to sub2
		{1, udpFrame(t, gwaMAC, upaMAC, 0, "198.51.100.10", "100.64.0.12", 64, 9, 1024)},   // not alpha's
		{1, udpFrame(t, gwaMAC, upaMAC, 0, "198.51.100.10", "100.64.0.11", 1, 9, 1024)},
		{1, udpFrame(t, gwaMAC, upaMAC, 0, "192.0.2.1", "192.0.2.2", 64, 67, 67)}, // relay reply
		{1, udpFrame(t, gwaMAC, upaMAC, 0, "192.0.2.1", "100.64.0.11", 64, 67, 68)},
		{1, icmpEcho(t, gwaMAC, upaMAC, 0, "192.0.2.1", "192.0.2.2", 8)},
		{2, udpFrame(t, gwgMAC, upbMAC, 250, portal, "100.64.0.14", 64, 53, 5353)}, // from the garden
	}
	// A fragment, IPv4 options, a bad checksum, a total length past the
	// frame, a second tag, truncated frames.
	frag := bytes.Clone(s[0].frame)
	binary.BigEndian.PutUint16(frag[20:22], 0x2000)
	fixIPChecksum(frag, 14)
	s = append(s, laneSeed{0, frag})
	opts := append(bytes.Clone(s[0].frame[:34]), 1, 1, 1, 0) // NOPs, EOL
	opts = append(opts, s[0].frame[34:]...)
	opts[14] = 0x46
	binary.BigEndian.PutUint16(opts[16:18], binary.BigEndian.Uint16(opts[16:18])+4)
	fixIPChecksum(opts, 14)
	s = append(s, laneSeed{0, opts})
	badSum := bytes.Clone(s[0].frame)
	badSum[24] ^= 0xff
	s = append(s, laneSeed{0, badSum})
	long := bytes.Clone(s[16].frame) // a total length past the frame
	binary.BigEndian.PutUint16(long[16:18], uint16(len(long)-14+1))
	fixIPChecksum(long, 14)
	s = append(s, laneSeed{1, long})
	qinq := append(bytes.Clone(s[2].frame[:16]), 0x81, 0x00, 0x00, 0x64)
	s = append(s, laneSeed{0, append(qinq, s[2].frame[16:]...)})
	// Shorter than laneMinFrame: laneKeys must still clear what an
	// earlier batch left in the frame's slot (primeLane).
	s = append(s, laneSeed{0, bytes.Clone(s[0].frame[:laneMinFrame-1])}, laneSeed{1, bytes.Clone(s[16].frame[:20])})
	// To a bound subscriber from an ISP, each with one DHCP port (the
	// general way drops them: classifier.TouchesDHCPPort), and a TCP
	// segment too short for its header (Decode refuses it).
	for _, ports := range [][2]uint16{{67, 9}, {68, 9}, {9, 67}, {9, 68}} {
		s = append(s, laneSeed{1, udpFrame(t, gwaMAC, upaMAC, 0, "198.51.100.10", "100.64.0.11", 64, ports[0], ports[1])})
	}
	short := bytes.Clone(s[16].frame)
	short[23] = classifier.ProtoTCP
	binary.BigEndian.PutUint16(short[16:18], 36)
	fixIPChecksum(short, 14)
	s = append(s, laneSeed{1, short})
	return s
}

// fixIPChecksum recomputes the checksum of the IPv4 header at l3 in f.
func fixIPChecksum(f []byte, l3 int) {
	h := f[l3 : l3+int(f[l3]&0xf)*4]
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:], ^fib.Checksum(h, 0))
}

// laneRun is what one processor made of a batch: verdicts, the frames as
// left (the general way edits some in place), counters, punted frames.
type laneRun struct {
	out    []datapath.Verdict
	frames [][]byte
	drops  [datapath.MaxPorts]classifier.Counters
	counts [9][datapath.MaxPorts]uint64
	punted [][]byte
}

// runLane runs frames, received on port, through a processor of r's state
// with the lane on or off: with the lane, one that has decided other
// batches before (primeLane), so that a frame that sees their keys, roles
// or lookups differs from the general way's, a new processor's.
func runLane(t testing.TB, r *rig, on bool, port uint8, frames [][]byte) laneRun {
	defer func(was bool) { laneOn = was }(laneOn)
	p := r.s.NewProcessor()
	if on {
		primeLane(t, r, p)
	}
	laneOn = on
	p.arpSeed = 1
	b := datapath.Batch{Port: port, Out: make([]datapath.Verdict, len(frames))}
	for _, f := range frames {
		b.Frames = append(b.Frames, append(make([]byte, 0, 2048), f...))
	}
	p.Process(&b)
	run := laneRun{out: b.Out, frames: b.Frames, drops: p.drops,
		counts: [9][datapath.MaxPorts]uint64{p.upN, p.downN, p.arpN, p.punN, p.echoN, p.icmpN, p.dnsN, p.rstN, p.httpN}}
	for q := r.s.Punts.Next(); q != nil; q = r.s.Punts.Next() {
		run.punted = append(run.punted, bytes.Clone(q.Frame()))
		r.s.Punts.Release(q)
	}
	return run
}

// primers are, per rig, the batches primeLane runs: laneSeeds the lane
// decides (no punt, no budget spent) on the rig's ports, by port.
var primers sync.Map // *rig → [][]laneSeed

// primeLane runs batches through p with the lane on, as a worker's
// processor has before the batch under test: eight frames from ISPs
// (slots 0–7: roles, FIB keys and lookups found), then four from
// subscribers (slots 0–3: MAC lookups found, roleLaneDone; slots 4–7 keep
// the first batch's), then forgets their counters.
func primeLane(t testing.TB, r *rig, p *Processor) {
	v, ok := primers.Load(r)
	if !ok {
		byPort := make([][]laneSeed, 3)
		laneOn = true
		for _, s := range laneSeeds(t) {
			if int(s.port) < len(r.s.ports) && laneDecides(r, s.port, s.frame) {
				byPort[s.port] = append(byPort[s.port], s)
			}
		}
		v, _ = primers.LoadOrStore(r, byPort)
	}
	byPort := v.([][]laneSeed)
	laneOn = true
	for _, pb := range []struct {
		port uint8
		n    int
	}{{1, 8}, {2, 8}, {0, 4}} {
		seeds := byPort[pb.port]
		if len(seeds) == 0 {
			continue
		}
		b := datapath.Batch{Port: pb.port, Out: make([]datapath.Verdict, pb.n)}
		for i := range pb.n {
			b.Frames = append(b.Frames, append(make([]byte, 0, 2048), seeds[i%len(seeds)].frame...))
		}
		p.Process(&b)
	}
	for q := r.s.Punts.Next(); q != nil; q = r.s.Punts.Next() {
		r.s.Punts.Release(q)
	}
	p.drops, p.dirty, p.touched = [datapath.MaxPorts]classifier.Counters{}, [datapath.MaxPorts]uint32{}, 0
	p.upN, p.downN, p.arpN, p.punN = [datapath.MaxPorts]uint64{}, [datapath.MaxPorts]uint64{}, [datapath.MaxPorts]uint64{}, [datapath.MaxPorts]uint64{}
	p.echoN, p.icmpN, p.dnsN, p.rstN, p.httpN = [datapath.MaxPorts]uint64{}, [datapath.MaxPorts]uint64{}, [datapath.MaxPorts]uint64{}, [datapath.MaxPorts]uint64{}, [datapath.MaxPorts]uint64{}
}

// checkLaneAgrees runs frames both ways and fails on any difference.
func checkLaneAgrees(t *testing.T, r *rig, port uint8, frames [][]byte) laneRun {
	t.Helper()
	lane, general := runLane(t, r, true, port, frames), runLane(t, r, false, port, frames)
	for i := range frames {
		if lane.out[i] != general.out[i] {
			t.Fatalf("frame %d (%x): lane verdict %+v, general %+v", i, frames[i], lane.out[i], general.out[i])
		}
		if !bytes.Equal(lane.frames[i][:cap(lane.frames[i])], general.frames[i][:cap(general.frames[i])]) {
			t.Fatalf("frame %d (%x): the two ways left different frames", i, frames[i])
		}
	}
	if lane.drops != general.drops || lane.counts != general.counts {
		t.Fatalf("counters differ: lane %v %v, general %v %v", lane.drops, lane.counts, general.drops, general.counts)
	}
	if len(lane.punted) != len(general.punted) {
		t.Fatalf("lane punted %d, general %d", len(lane.punted), len(general.punted))
	}
	for i := range lane.punted {
		if !bytes.Equal(lane.punted[i], general.punted[i]) {
			t.Fatalf("punt %d differs", i)
		}
	}
	return lane
}

// TestLaneAgrees runs every seed through the lane and the general way, one
// frame a batch and all of a port's frames in one batch (lane and general
// frames mixed), with and without an egress MTU, and checks that the lane
// decides the plain frames it is for: FuzzLane would pass with a lane that
// declined everything.
func TestLaneAgrees(t *testing.T) {
	r := gardenRig(t)
	seeds := laneSeeds(t)
	for _, mtu := range []int{0, 40} {
		r.c.SetMTU(1, mtu)
		byPort := map[uint8][][]byte{}
		for _, s := range seeds {
			checkLaneAgrees(t, r, s.port, [][]byte{s.frame})
			byPort[s.port] = append(byPort[s.port], s.frame)
		}
		for port, frames := range byPort {
			checkLaneAgrees(t, r, port, frames)
		}
	}
	r.c.SetMTU(1, 0)
	for _, i := range []int{0, 1, 2, 13, 14, 16, 17, 18} { // up and down, tagged, TCP, ICMP
		s := seeds[i]
		role, out, ok := laneDecision(r, s.port, s.frame)
		if role == roleNone {
			t.Errorf("seed %d: laneKeys passed over %x", i, s.frame)
			continue
		}
		if !ok || out.Action != datapath.Forward {
			t.Errorf("seed %d: the lane left %x to the general way", i, s.frame)
		}
	}
}

// laneDecision runs frame f, received on port, through a processor of r's
// state (for its table lookups, the punts it made dropped), then through
// the lane alone: it returns the role laneKeys gave it, the lane's verdict,
// and whether the lane (laneUps, laneDowns) decided it.
func laneDecision(r *rig, port uint8, f []byte) (role uint8, out datapath.Verdict, ok bool) {
	p := r.s.NewProcessor()
	fr := append(make([]byte, 0, 2048), f...)
	b := datapath.Batch{Port: port, Frames: [][]byte{fr}, Out: make([]datapath.Verdict, 1)}
	p.Process(&b)
	for q := r.s.Punts.Next(); q != nil; q = r.s.Punts.Next() {
		r.s.Punts.Release(q)
	}
	// laneUps or laneDowns ran in Process, which kept its verdict for a
	// frame it decided; laneKeys again for the role it gave.
	decided := p.role[0] == roleLaneDone
	p.laneKeys(&r.s.ports[port], port, [][]byte{f})
	if role = p.role[0]; (role == roleLaneUp || role == roleLaneDown) && decided {
		ok, out = true, b.Out[0]
	}
	return role, out, ok
}

// laneDecides reports whether the lane decides frame f received on port,
// in r's current state (laneDecision).
func laneDecides(r *rig, port uint8, f []byte) bool {
	_, _, ok := laneDecision(r, port, f)
	return ok
}

// FuzzLane checks that the lane and the general way agree on any frame on
// any port, with and without an egress MTU. Its seeds are laneSeeds and
// the suspects of lane_struct_test.go.
func FuzzLane(f *testing.F) {
	r := gardenRig(f)
	for _, s := range append(laneSeeds(f), laneSuspects(f)...) {
		f.Add(s.port, uint16(0), s.frame)
		f.Add(s.port, uint16(60), s.frame)
	}
	f.Fuzz(func(t *testing.T, port uint8, mtu uint16, frame []byte) {
		if len(frame) > 2048 {
			return
		}
		// Half the inputs get a right IPv4 header checksum, so that the
		// header's other fields are compared past the checksum.
		if mtu&1 != 0 && len(frame) >= 38 {
			l3 := 14
			if binary.BigEndian.Uint16(frame[12:14]) == classifier.EtherTypeVLAN {
				l3 = 18
			}
			if ihl := int(frame[l3]&0xf) * 4; ihl >= 20 && l3+ihl <= len(frame) {
				frame = bytes.Clone(frame)
				fixIPChecksum(frame, l3)
			}
		}
		r.c.SetMTU(0, int(mtu))
		r.c.SetMTU(1, int(mtu))
		r.c.SetMTU(2, int(mtu))
		checkLaneAgrees(t, r, port%3, [][]byte{frame})
	})
}

// TestLaneIPv4Checksum checks laneIPv4's header checksum against
// classifier.ChecksumOK (Decode's) over random headers whose words are
// mostly 0xff bytes, so that the sums carry, a third of them made to carry
// out of the 64-bit sum of the header's three words and a third to have
// the 32-bit sum 0xffffffff (ones' complement zero), whose fold to 16 bits
// carries; each with its checksum right and then wrong: the two agree on
// every header, and laneIPv4 takes the right ones (its other fields are a
// plain UDP datagram's).
func TestLaneIPv4Checksum(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var took, carried, zero int
	for range 200_000 {
		f := make([]byte, 14+28)
		h := f[14:]
		for i := range h {
			if rng.IntN(4) != 0 {
				h[i] = 0xff
			} else {
				h[i] = byte(rng.Uint32())
			}
		}
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:], 28)
		h[6] &= 0x40 // DF or not; no fragment
		h[7] = 0
		if h[8] < 2 {
			h[8] = 2
		}
		h[9] = classifier.ProtoUDP
		binary.BigEndian.PutUint16(h[20:], 1000)
		binary.BigEndian.PutUint16(h[22:], 2000)
		fixIPChecksum(f, 14)
		switch rng.IntN(3) {
		case 1:
			// The source (w1's high half) set so that w0 + w1
			// reaches 2^64 less w2's share, and the checksum set
			// again (it moves the low half's carry: a few rounds).
			for range 4 {
				w0, w1, w2 := binary.LittleEndian.Uint64(h[0:]), binary.LittleEndian.Uint64(h[8:]), binary.LittleEndian.Uint32(h[16:])
				s, c := bits.Add64(w0, w1, 0)
				if _, c = bits.Add64(s, uint64(w2), c); c != 0 {
					carried++
					break
				}
				low := (w0&0xffffffff + w1&0xffffffff) >> 32
				binary.LittleEndian.PutUint32(h[12:], uint32(0xffffffff-w0>>32-low))
				fixIPChecksum(f, 14)
			}
		case 2:
			// The destination moved by a multiple of 0xffff, which
			// leaves the 16-bit sum and so the checksum right.
			d := ^onesSum32(h[:20])
			w := uint64(binary.LittleEndian.Uint32(h[16:])) + uint64(d)
			binary.LittleEndian.PutUint32(h[16:], uint32(w&0xffffffff+w>>32))
			if onesSum32(h[:20]) != 0xffffffff {
				t.Fatalf("% x: sum %#x", h[:20], onesSum32(h[:20]))
			}
			zero++
		}
		c := binary.BigEndian.Uint16(h[10:])
		for _, d := range []uint16{0, 1, uint16(rng.Uint32()) | 1} {
			binary.BigEndian.PutUint16(h[10:], c+d)
			_, _, _, _, ok := laneIPv4(f, 14)
			if want := classifier.ChecksumOK(h[:20]); ok != want {
				t.Fatalf("laneIPv4 says %v, ChecksumOK %v, for % x", ok, want, h[:20])
			}
			if ok {
				took++
			}
		}
	}
	if took < 190_000 || carried < 10_000 || zero < 50_000 {
		t.Fatalf("laneIPv4 took %d headers; %d carried out of 64 bits, %d summed to 0xffffffff", took, carried, zero)
	}
}

// onesSum32 is the 32-bit ones' complement sum of h's little-endian
// words.
func onesSum32(h []byte) uint32 {
	var s uint64
	for i := 0; i+4 <= len(h); i += 4 {
		s += uint64(binary.LittleEndian.Uint32(h[i:]))
	}
	for s>>32 != 0 {
		s = s&0xffffffff + s>>32
	}
	return uint32(s)
}

// TestLaneUnresolvedUplink sends subscribers' plain datagrams while their
// ISPs' gateways are not resolved (alpha's, then neither: beta's resolved
// first): the lane forwards none to an uplink it has no header for, and
// agrees with the general way on each; once both are resolved, it forwards
// them.
func TestLaneUnresolvedUplink(t *testing.T) {
	r := newRig(t, 64)
	r.bindAll()
	seeds := laneSeeds(t)[:3] // to alpha, to beta, tagged to beta
	check := func(resolved map[int]bool) {
		t.Helper()
		for i, s := range seeds {
			lane := checkLaneAgrees(t, r, s.port, [][]byte{s.frame})
			if fwd := lane.out[0].Action == datapath.Forward; fwd != resolved[i] {
				t.Errorf("seed %d: forwarded %v, its uplink resolved %v: %+v", i, fwd, resolved[i], lane.out[0])
			}
		}
	}
	check(nil)
	r.learn(2, 201, gwbMAC)
	check(map[int]bool{1: true, 2: true})
	r.learn(1, 0, gwaMAC)
	check(map[int]bool{0: true, 1: true, 2: true})
}

// TestLaneDownToUplinkAddr: a datagram from an ISP to our own address on
// its uplink is ours (fromISP: answered, punted or dropped), even when a
// subscriber is bound at that address (Bind refuses the uplink's address,
// but the uplink's address may be reconfigured onto a bound one):
// laneDowns leaves it to the general way, whose verdict the lane's must
// equal. Untagged on ISP 0's uplink and tagged on ISP 1's (VLAN 201), whose
// address is not ISP 0's: the lane must take the ISP of the frame's VLAN,
// not of VLAN 0 (ISP 0 on port 2 too, pt.isp's zero value).
func TestLaneDownToUplinkAddr(t *testing.T) {
	for _, c := range []struct {
		port  uint8
		isp   uint8
		up    fib.Uplink
		frame func() []byte
	}{
		{1, 0, fib.Uplink{Port: 1, MAC: upaMAC, Addr: ip("192.0.2.50"), PrefixLen: 24, Gateway: ip("192.0.2.1")},
			func() []byte { return udpFrame(t, gwaMAC, upaMAC, 0, "198.51.100.10", "192.0.2.50", 64, 9, 1024) }},
		{2, 1, fib.Uplink{Port: 2, VLAN: 201, MAC: upbMAC, Addr: ip("192.0.2.50"), PrefixLen: 24, Gateway: ip("192.0.2.1")},
			func() []byte { return udpFrame(t, gwbMAC, upbMAC, 201, "198.51.100.10", "192.0.2.50", 64, 9, 1024) }},
	} {
		r := newRig(t, 16)
		if err := r.c.Bind(Binding{Port: 0, MAC: sub1, ISP: c.isp, IP: netip.MustParseAddr("192.0.2.50")}); err != nil {
			t.Fatal(err)
		}
		r.c.ConfigureISP(c.isp, c.up)
		r.resolve()
		f := c.frame()
		if laneDecides(r, c.port, f) {
			t.Fatalf("ISP %d: the lane routed a datagram to our uplink address: %x", c.isp, f)
		}
		run := checkLaneAgrees(t, r, c.port, [][]byte{f})
		if run.out[0].Action == datapath.Forward {
			t.Fatalf("ISP %d: a datagram to our uplink address was forwarded: %+v", c.isp, run.out[0])
		}
	}
}

// TestLaneDownUnconfiguredISP: a subscriber bound to an ISP whose uplink
// VLAN is on a port but which was never configured (Bind takes it: its
// uplink's addresses are unknown), a datagram on that VLAN to the
// subscriber: the general way drops it (fromISP: no uplink), so the lane
// must leave it too.
func TestLaneDownUnconfiguredISP(t *testing.T) {
	r := rigOf(t, []PortConfig{
		{Name: "acc", MAC: accMAC, AccessVLANs: []uint16{0}, AccessAddrs: map[uint16]uint32{0: ip("100.64.0.1")}},
		{Name: "upa", MAC: upaMAC, Uplinks: map[uint16]uint8{0: 0, 5: 3}},
	}, 64)
	r.c.ConfigureISP(0, fib.Uplink{Port: 1, MAC: upaMAC, Addr: ip("192.0.2.2"), PrefixLen: 24, Gateway: ip("192.0.2.1")})
	r.learn(1, 0, gwaMAC)
	for _, b := range []Binding{
		{Port: 0, MAC: sub1, ISP: 0, IP: netip.MustParseAddr("100.64.0.11")},
		{Port: 0, MAC: sub2, ISP: 3, IP: netip.MustParseAddr("100.64.0.12")},
	} {
		if err := r.c.Bind(b); err != nil {
			t.Fatal(err)
		}
	}
	configured := udpFrame(t, gwaMAC, upaMAC, 0, "198.51.100.10", "100.64.0.11", 64, 9, 1024)
	unconfigured := udpFrame(t, gwaMAC, upaMAC, 5, "198.51.100.10", "100.64.0.12", 64, 9, 1024)
	if !laneDecides(r, 1, configured) {
		t.Fatalf("the lane left %x to the general way", configured)
	}
	if laneDecides(r, 1, unconfigured) {
		t.Fatalf("the lane routed a datagram from an unconfigured ISP: %x", unconfigured)
	}
	run := checkLaneAgrees(t, r, 1, [][]byte{configured, unconfigured, configured})
	if run.out[1].Action == datapath.Forward || run.counts[1][1] != 2 {
		t.Fatalf("verdict %+v, %d routed down: want the unconfigured ISP's datagram dropped, 2 routed", run.out[1], run.counts[1][1])
	}
}

// TestLaneDownMTU: the lane checks a datagram to a subscriber against the
// MTU of its egress port (the access port, here port 1), not the port it
// came in on (port 0, the uplink), and routes one of exactly the MTU: as
// the general way, which drops one longer (fromISP, tooBig; with DF set it
// also answers "fragmentation needed").
func TestLaneDownMTU(t *testing.T) {
	r := rigOf(t, []PortConfig{
		{Name: "upa", MAC: upaMAC, Uplinks: map[uint16]uint8{0: 0}},
		{Name: "acc", MAC: accMAC, AccessVLANs: []uint16{0}, AccessAddrs: map[uint16]uint32{0: ip("100.64.0.1")}},
	}, 64)
	r.c.ConfigureISP(0, fib.Uplink{Port: 0, MAC: upaMAC, Addr: ip("192.0.2.2"), PrefixLen: 24, Gateway: ip("192.0.2.1")})
	if err := r.c.Bind(Binding{Port: 1, MAC: sub1, ISP: 0, IP: netip.MustParseAddr("100.64.0.11")}); err != nil {
		t.Fatal(err)
	}
	f := udpFrame(t, gwaMAC, upaMAC, 0, "198.51.100.10", "100.64.0.11", 64, 9, 1024)
	total := int(binary.BigEndian.Uint16(f[16:18]))
	defer r.c.SetMTU(0, 0)
	defer r.c.SetMTU(1, 0)
	for _, c := range []struct {
		uplink, access int
		routed         bool
	}{
		{0, 0, true},
		{total - 1, 0, true}, // the ingress port's MTU is not the egress's
		{0, total, true},     // exactly the MTU
		{0, total - 1, false},
		{total + 1, total - 1, false},
	} {
		r.c.SetMTU(0, c.uplink)
		r.c.SetMTU(1, c.access)
		if got := laneDecides(r, 0, f); got != c.routed {
			t.Errorf("MTU %d in, %d out, total %d: the lane decided %v, want %v", c.uplink, c.access, total, got, c.routed)
		}
		run := checkLaneAgrees(t, r, 0, [][]byte{f})
		if fwd := run.out[0].Action == datapath.Forward && run.out[0].Port == 1; fwd != c.routed {
			t.Errorf("MTU %d in, %d out, total %d: verdict %+v, want routed %v", c.uplink, c.access, total, run.out[0], c.routed)
		}
	}
}
