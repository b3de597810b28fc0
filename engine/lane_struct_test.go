package engine

// More tests of the forwarding lane (lane.go), from its review: a
// structured differential fuzz that builds frames with valid IPv4
// checksums (FuzzLane's byte mutations nearly always break the header
// checksum, so past its seeds the lane declines and the two ways agree
// trivially) and varies the state (garden on or off, each port's MTU)
// between inputs; a deterministic sample of the same space
// (TestLaneStructuredSample, which counts the frames the lane decided);
// suspect frames (priority tags, VLANs not configured, the garden's VLAN,
// group destination MACs, the portal on other ports); an ISP above the
// garden's VRF.
//
//	go test -run 'TestLane' ./engine
//	go test -run XXX -fuzz FuzzLaneStructured -fuzztime 3m ./engine

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/ispmux/ispmux/fib"
)

func a4(s string) uint32 { b := netip.MustParseAddr(s).As4(); return binary.BigEndian.Uint32(b[:]) }

var (
	structSrcMACs = []uint64{sub1, sub2, sub3, sub4, sub5, gwaMAC, gwbMAC, gwgMAC, 0x020000000199, 0, 0x010000000001, broadcastMAC}
	structDstMACs = []uint64{accMAC, upaMAC, upbMAC, broadcastMAC, 0x01005e000001, 0x020000000101}
	structTags    = []int{-1, 0, 100, 201, 250, 0x2000 | 100, 0xe000, 4095, 300, 101, -2, -3} // -1 none, -2 QinQ, -3 802.1ad
	structIPs     = []string{"100.64.0.11", "100.64.0.12", "100.64.0.14", "100.64.0.15", "198.51.100.10", "192.0.2.1",
		"192.0.2.2", "100.64.0.1", portal, "10.255.0.1", "255.255.255.255", "224.0.0.1", "0.0.0.1", "127.0.0.1",
		"240.0.0.1", "192.0.2.255", "0.0.0.0", "100.64.0.99"}
	structPorts  = []uint16{67, 68, 53, 80, 443, 22, 9, 1024, 0, 40000 + 80, 8000}
	structProtos = []uint8{17, 6, 1, 47, 0}
	structMTUs   = []int{0, 40, 60, 100, 1500}
)

// pick returns an element of s chosen by the low bits of *sel, consuming them.
func pick[T any](sel *uint64, s []T) T {
	v := s[*sel%uint64(len(s))]
	*sel /= uint64(len(s))
	return v
}

// structFrame builds a frame from selectors: MACs, tag, addresses,
// protocol, ports, TTL, fragment bits, IHL, length adjustments; the IPv4
// header checksum is right unless badSum.
func structFrame(port uint8, sel uint64, ttl uint8, frag uint16, lenAdj int8, pad []byte) []byte {
	dst, src := pick(&sel, structDstMACs), pick(&sel, structSrcMACs)
	tag := pick(&sel, structTags)
	sip, dip := a4(pick(&sel, structIPs)), a4(pick(&sel, structIPs))
	if pick(&sel, []bool{true, true, true, false}) {
		// Coherent: to the port's MAC, from a subscriber's own address
		// (upstream) or to one (downstream).
		dst = upMAC(port % 3)
		subIP := map[uint64]string{sub1: "100.64.0.11", sub2: "100.64.0.12", sub3: "100.64.0.11", sub4: "100.64.0.14", sub5: "100.64.0.15"}
		if port%3 == 0 {
			if a, ok := subIP[src]; ok {
				sip = a4(a)
			}
			if src == sub3 || src == sub5 {
				if pick(&sel, []bool{true, true, false}) {
					tag = 100
				}
			}
		} else {
			dip = a4(pick(&sel, []string{"100.64.0.11", "100.64.0.12", "100.64.0.14", "100.64.0.15"}))
			if port%3 == 2 && tag < 0 {
				tag = pick(&sel, []int{201, 250, 0})
			}
		}
	}
	proto := pick(&sel, structProtos)
	sport, dport := pick(&sel, structPorts), pick(&sel, structPorts)
	opts := pick(&sel, []int{0, 0, 0, 4})
	badSum := pick(&sel, []bool{false, false, false, true})
	tcpFlags := pick(&sel, []byte{0x02, 0x10, 0x18, 0x04, 0x11})

	f := make([]byte, 12, 256)
	fib.PutMAC(f[0:6], dst)
	fib.PutMAC(f[6:12], src)
	switch {
	case tag == -2:
		f = append(f, 0x81, 0x00, 0x00, 100, 0x81, 0x00, 0x00, 100)
	case tag == -3:
		f = append(f, 0x88, 0xa8, 0x00, 100)
	case tag >= 0:
		f = append(f, 0x81, 0x00, byte(tag>>8), byte(tag))
	}
	f = append(f, 0x08, 0x00)
	l3 := len(f)
	ihl := 20 + opts
	var l4 []byte
	switch proto {
	case 17:
		l4 = make([]byte, 8+8)
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	case 6:
		l4 = make([]byte, 20+4)
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		l4[12], l4[13] = 5<<4, tcpFlags
	case 1:
		l4 = []byte{8, 0, 0, 0, 0, 7, 0, 9, 'p', 'i', 'n', 'g'}
	default:
		l4 = make([]byte, 8)
	}
	ip := make([]byte, ihl)
	ip[0] = 0x40 | byte(ihl/4)
	total := ihl + len(l4) + int(lenAdj)
	binary.BigEndian.PutUint16(ip[2:], uint16(total))
	binary.BigEndian.PutUint16(ip[6:], frag)
	ip[8], ip[9] = ttl, proto
	binary.BigEndian.PutUint32(ip[12:], sip)
	binary.BigEndian.PutUint32(ip[16:], dip)
	for i := 20; i < ihl; i++ {
		ip[i] = 1 // NOP
	}
	binary.BigEndian.PutUint16(ip[10:], ^fib.Checksum(ip, 0))
	if badSum {
		ip[11] ^= 0x55
	}
	f = append(f, ip...)
	f = append(f, l4...)
	f = append(f, pad...)
	_ = l3
	return f
}

func structCheck(t *testing.T, r *rig, port uint8, state uint8, frames [][]byte) {
	t.Helper()
	st := uint64(state)
	if pick(&st, []bool{true, false}) {
		_ = r.s.SetGarden(&Garden{PortalAddr: ip(portal)})
	} else {
		_ = r.s.SetGarden(nil)
	}
	r.c.SetMTU(0, pick(&st, structMTUs))
	r.c.SetMTU(1, pick(&st, structMTUs))
	r.c.SetMTU(2, pick(&st, structMTUs))
	checkLaneAgrees(t, r, port%3, frames)
}

// FuzzLaneStructured: the lane and the general way agree on structured
// frames (valid checksums) in varied states.
func FuzzLaneStructured(f *testing.F) {
	r := gardenRig(f)
	f.Add(uint8(0), uint8(0), uint64(0), uint8(64), uint16(0x4000), int8(0), []byte{})
	f.Add(uint8(1), uint8(3), uint64(123456789), uint8(64), uint16(0), int8(0), make([]byte, 10))
	f.Add(uint8(2), uint8(5), uint64(987654321987), uint8(2), uint16(0x2000), int8(-1), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, port, state uint8, sel uint64, ttl uint8, frag uint16, lenAdj int8, pad []byte) {
		if len(pad) > 1600 {
			return
		}
		structCheck(t, r, port, state, [][]byte{structFrame(port, sel, ttl, frag, lenAdj, pad)})
	})
}

// TestLaneStructuredSample walks a deterministic sample of the structured
// space: every MAC pair, tag, address pair and protocol, on every port, a
// few ports/TTLs/fragment bits, with and without the garden and MTUs. It
// also counts how many frames the lane decided, to show the sample reaches
// it.
func TestLaneStructuredSample(t *testing.T) {
	r := gardenRig(t)
	n := uint64(len(structDstMACs) * len(structSrcMACs) * len(structTags) * len(structIPs) * len(structIPs) * len(structProtos))
	decided := 0
	step := uint64(97) // sampling stride over the first selectors
	if testing.Short() {
		step = 997
	}
	for s := uint64(0); s < n; s += step {
		for _, v := range []struct {
			ttl  uint8
			frag uint16
			adj  int8
			st   uint8
		}{{64, 0x4000, 0, 0}, {1, 0, 0, 1}, {64, 0x2000, 0, 2}, {64, 0, -4, 3}, {64, 0, 0, 6}} {
			sel := s + n*uint64((s/step)%uint64(len(structPorts)*len(structPorts)))
			for port := uint8(0); port < 3; port++ {
				fr := structFrame(port, sel, v.ttl, v.frag, v.adj, make([]byte, int(s%13)))
				structCheck(t, r, port, v.st, [][]byte{fr})
				if laneDecides(r, port, fr) {
					decided++
				}
			}
			if t.Failed() {
				return
			}
		}
	}
	t.Logf("%d frame/port pairs decided by the lane", decided)
	if decided < 100 {
		t.Errorf("the lane decided %d of the sample's frames: the sample does not reach it", decided)
	}
}

// laneSuspects are suspect frames (all with valid checksums):
// priority tags (VID 0, PCP set), VLANs not configured, the garden's VLAN
// 250 on port 2, broadcast and multicast destination MACs, the portal on
// ports other than 80/443, TCP to the portal from an ISP subscriber.
func laneSuspects(t testing.TB) []laneSeed {
	var s []laneSeed
	tag := func(f []byte, tci uint16) []byte { // add an 802.1Q tag to an untagged frame
		out := append(bytes.Clone(f[:12]), 0x81, 0x00, byte(tci>>8), byte(tci))
		return append(out, f[12:]...)
	}
	up := udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "198.51.100.10", 64, 1024, 9)
	down := udpFrame(t, gwaMAC, upaMAC, 0, "198.51.100.10", "100.64.0.11", 64, 9, 1024)
	s = append(s,
		laneSeed{0, tag(up, 0)},      // VID 0
		laneSeed{0, tag(up, 0xe000)}, // VID 0, PCP 7
		laneSeed{0, tag(up, 0x1000)}, // VID 0, DEI
		laneSeed{1, tag(down, 0)},
		laneSeed{1, tag(down, 0xa000)},
		laneSeed{0, tag(up, 300)}, // not configured on port 0
		laneSeed{1, tag(down, 201)},
		laneSeed{2, tag(down, 202)},
		laneSeed{0, udpFrame(t, sub1, broadcastMAC, 0, "100.64.0.11", "198.51.100.10", 64, 1024, 9)},
		laneSeed{1, udpFrame(t, gwaMAC, broadcastMAC, 0, "198.51.100.10", "100.64.0.11", 64, 9, 1024)},
		laneSeed{0, udpFrame(t, sub1, 0x01005e000001, 0, "100.64.0.11", "224.0.0.1", 64, 1024, 9)},
		laneSeed{2, udpFrame(t, gwgMAC, upbMAC, 250, portal, "100.64.0.14", 64, 80, 40000)},
		laneSeed{2, udpFrame(t, gwgMAC, upbMAC, 250, portal, "100.64.0.11", 64, 9, 1024)},
		laneSeed{2, udpFrame(t, gwbMAC, upbMAC, 250, "198.51.100.10", "100.64.0.12", 64, 9, 1024)},
		laneSeed{0, udpFrame(t, sub4, accMAC, 0, "100.64.0.14", "198.51.100.10", 64, 1024, 9)},
		laneSeed{0, udpFrame(t, sub1, accMAC, 0, "100.64.0.11", portal, 64, 1024, 80)},
	)
	for _, port := range []uint16{22, 79, 81, 442, 444, 8080, 0} {
		s = append(s, laneSeed{0, tcpFrame(t, alphaSub1, portal, port, layers.TCP{SYN: true}, nil)})
	}
	s = append(s, laneSeed{0, tcpFrame(t, alphaSub1, portal, 443, layers.TCP{ACK: true}, []byte("x"))})
	s = append(s, laneSeed{0, tag(tcpFrame(t, alphaSub1, portal, 80, layers.TCP{SYN: true}, nil), 0)})
	return s
}

// TestLaneSuspects runs the suspects, one a batch and all of a
// port's in one batch, with the garden on and off and MTUs.
func TestLaneSuspects(t *testing.T) {
	r := gardenRig(t)
	byPort := map[uint8][][]byte{}
	for _, s := range laneSuspects(t) {
		byPort[s.port] = append(byPort[s.port], s.frame)
	}
	for st := range 16 {
		for _, s := range laneSuspects(t) {
			structCheck(t, r, s.port, uint8(st*7), [][]byte{s.frame})
		}
		for port, frames := range byPort {
			structCheck(t, r, port, uint8(st*7), frames)
		}
	}
}

// TestLaneHighISP: an uplink VLAN of ISP 252 (above GardenVRF, below
// MaxISPs) and a subscriber bound there, if the control plane takes it.
func TestLaneHighISP(t *testing.T) {
	r := rigOf(t, []PortConfig{
		{Name: "acc", MAC: accMAC, AccessVLANs: []uint16{0}, AccessAddrs: map[uint16]uint32{0: ip("100.64.0.1")}},
		{Name: "upa", MAC: upaMAC, Uplinks: map[uint16]uint8{0: 252, 7: 249}},
	}, 64)
	r.c.ConfigureISP(252, fib.Uplink{Port: 1, MAC: upaMAC, Addr: ip("192.0.2.2"), PrefixLen: 24, Gateway: ip("192.0.2.1")})
	r.c.ConfigureISP(249, fib.Uplink{Port: 1, VLAN: 7, MAC: upaMAC, Addr: ip("192.0.2.2"), PrefixLen: 24, Gateway: ip("192.0.2.1")})
	r.learn(1, 0, gwaMAC)
	r.learn(1, 7, gwaMAC)
	for _, b := range []Binding{
		{Port: 0, MAC: sub1, ISP: 252, IP: netip.MustParseAddr("100.64.0.11")},
		{Port: 0, MAC: sub2, ISP: 249, IP: netip.MustParseAddr("100.64.0.12")},
	} {
		if err := r.c.Bind(b); err != nil {
			t.Logf("Bind %+v: %v", b, err)
		}
	}
	frames := map[uint8][][]byte{
		0: {udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "198.51.100.10", 64, 1024, 9),
			udpFrame(t, sub2, accMAC, 0, "100.64.0.12", "198.51.100.10", 64, 1024, 9)},
		1: {udpFrame(t, gwaMAC, upaMAC, 0, "198.51.100.10", "100.64.0.11", 64, 9, 1024),
			udpFrame(t, gwaMAC, upaMAC, 7, "198.51.100.10", "100.64.0.12", 64, 9, 1024)},
	}
	for port, fs := range frames {
		for _, f := range fs {
			l := checkLaneAgrees(t, r, port, [][]byte{f})
			t.Logf("port %d: %+v lane=%v", port, l.out[0].Action, laneDecides(r, port, f))
		}
		checkLaneAgrees(t, r, port, fs)
	}
}

// FuzzLaneBatch: batches of up to 4 structured frames on one port (lane
// and general frames mixed, sharing the lookup arrays).
func FuzzLaneBatch(f *testing.F) {
	r := gardenRig(f)
	f.Add(uint8(0), uint8(0), uint64(1), uint64(2), uint64(3), uint64(4), uint8(64), uint8(3))
	f.Add(uint8(1), uint8(9), uint64(77), uint64(0), uint64(123456), uint64(99), uint8(2), uint8(4))
	f.Fuzz(func(t *testing.T, port, state uint8, s1, s2, s3, s4 uint64, ttl, n uint8) {
		var frames [][]byte
		for i, sel := range []uint64{s1, s2, s3, s4}[:1+n%4] {
			frames = append(frames, structFrame(port, sel, ttl+uint8(i), uint16(sel>>48)&0x6000, 0, make([]byte, sel>>56%8)))
		}
		structCheck(t, r, port, state, frames)
	})
}

// TestLaneMixedPort: one port access on VLAN 0 and ISP 0's uplink on VLAN
// 300, a batch of frames of both roles (and a truncated one): the lane
// decides the up and down ones as the general way does, counted each way.
func TestLaneMixedPort(t *testing.T) {
	r := rigOf(t, []PortConfig{
		{Name: "mix", MAC: accMAC, AccessVLANs: []uint16{0}, AccessAddrs: map[uint16]uint32{0: ip("100.64.0.1")},
			Uplinks: map[uint16]uint8{300: 0}},
	}, 64)
	r.c.ConfigureISP(0, fib.Uplink{Port: 0, VLAN: 300, MAC: accMAC, Addr: ip("192.0.2.2"), PrefixLen: 24, Gateway: ip("192.0.2.1")})
	r.learn(0, 300, gwaMAC)
	if err := r.c.Bind(Binding{Port: 0, MAC: sub1, ISP: 0, IP: netip.MustParseAddr("100.64.0.11")}); err != nil {
		t.Fatal(err)
	}
	up := udpFrame(t, sub1, accMAC, 0, "100.64.0.11", "198.51.100.10", 64, 1024, 9)
	down := udpFrame(t, gwaMAC, accMAC, 300, "198.51.100.10", "100.64.0.11", 64, 9, 1024)
	for _, f := range [][]byte{up, down} {
		if !laneDecides(r, 0, f) {
			t.Errorf("the lane left %x to the general way", f)
		}
	}
	l := checkLaneAgrees(t, r, 0, [][]byte{up, down, up[:laneMinFrame-1], down, up})
	if l.counts[0][0] != 2 || l.counts[1][0] != 2 {
		t.Errorf("up %d down %d, want 2 and 2", l.counts[0][0], l.counts[1][0])
	}
}
