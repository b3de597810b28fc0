package fastpath

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/engine"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
)

// The differential rig: an engine with two access VLANs on port 0, ISP 1
// untagged on port 1, ISP 2 on VLAN 20 of port 2 and the garden on VLAN 30
// of port 2, bound subscribers on both access VLANs, and the fast path
// mirroring it, one program per port.
type rig struct {
	t     *testing.T
	s     *engine.State
	c     *engine.Control
	m     *Maps
	progs [3]*ebpf.Program
	proc  *engine.Processor
	subs  []sub
}

type sub struct {
	vlan uint16
	mac  uint64
	ip   uint32
	isp  uint8
}

var portMACs = [3]uint64{0x020000000010, 0x020000000011, 0x020000000012}

const (
	gw0     = 0x64400001 // 100.64.0.1, access VLAN 0
	gw10    = 0x64410001 // 100.65.0.1, access VLAN 10
	up1Addr = 0xc6336401 // 198.51.100.1
	up2Addr = 0xcb007101 // 203.0.113.1
	portal  = 0x0a0a0a0a
)

type nopInjector struct{}

func (nopInjector) Inject(uint8, []byte) bool { return true }

func needBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the fast path's tests load eBPF programs: run them as root (CI does)")
	}
}

func newRig(t *testing.T) *rig {
	needBPF(t)
	s, err := engine.NewState([]engine.PortConfig{
		{Name: "acc0", MAC: portMACs[0], AccessVLANs: []uint16{0, 10},
			AccessAddrs: map[uint16]uint32{0: gw0, 10: gw10}, MTU: 1500},
		{Name: "up1", MAC: portMACs[1], Uplinks: map[uint16]uint8{0: 1}, MTU: 1500},
		{Name: "up2", MAC: portMACs[2], Uplinks: map[uint16]uint8{20: 2, 30: binding.GardenVRF}, MTU: 1400},
	}, 4096, 1)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, s: s, c: engine.NewControl(s, nopInjector{}, nil), proc: s.NewProcessor()}
	if r.m, err = newMaps(4096, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range r.progs {
			if p != nil {
				p.Close()
			}
		}
		r.m.Close()
	})
	if err := s.SetGarden(&engine.Garden{PortalAddr: portal}); err != nil {
		t.Fatal(err)
	}
	r.c.ConfigureISP(1, fib.Uplink{Port: 1, MAC: portMACs[1], Addr: up1Addr, PrefixLen: 24, Gateway: up1Addr + 1})
	r.c.ConfigureISP(2, fib.Uplink{Port: 2, VLAN: 20, MAC: portMACs[2], Addr: up2Addr, PrefixLen: 24, Gateway: up2Addr + 1})
	r.c.ConfigureISP(3, fib.Uplink{Port: 1, VLAN: 40, MAC: portMACs[1], Addr: 0xc0a80001, PrefixLen: 24, Gateway: 0xc0a80002}) // never resolved
	// Half the subscribers are bound before the fast path starts (copied
	// by SetOffload), half after (mirrored by Bind); ISP 1's next hop
	// is resolved before, ISP 2's after.
	s.Up.SetGatewayMAC(1, 0x02aa00000001)
	for i := range 64 {
		if i == 32 {
			r.c.SetOffload(r.m, func(uint8) int { return 1 })
			s.Up.SetGatewayMAC(2, 0x02aa00000002)
		}
		sb := sub{vlan: []uint16{0, 10}[i%2], mac: 0x02cc00000000 + uint64(i), ip: 0x64400100 + uint32(i), isp: uint8(1 + i%3)}
		if sb.isp == 3 {
			sb.isp = 1
		}
		r.bind(sb)
	}
	for i := range r.progs {
		q, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		if err != nil {
			t.Fatal(err)
		}
		x, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		if err != nil {
			t.Fatal(err)
		}
		r.progs[i], err = r.m.Program(uint8(i), portMACs[i], q, x)
		q.Close()
		x.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func (r *rig) bind(sb sub) {
	r.t.Helper()
	err := r.c.Bind(engine.Binding{Port: 0, VLAN: sb.vlan, MAC: sb.mac, ISP: sb.isp, IP: addr(sb.ip)})
	if err != nil {
		r.t.Fatal(err)
	}
	r.subs = append(r.subs, sb)
}

func addr(a uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], a)
	return netip.AddrFrom4(b)
}

// fast runs port's program on frame: the frame it forwards and the port,
// or ok false (the frame went to the AF_XDP socket: XDP_PASS here, as no
// socket is bound).
func (r *rig) fast(port uint8, frame []byte) (out []byte, egress uint8, ok bool) {
	r.t.Helper()
	// The kernel does not say how long the frame it copies out is: run
	// twice, into buffers filled with 0x00 and 0xff; the frame ends
	// where they start to differ to the end.
	var bufs [2][]byte
	var ret uint32
	for i := range bufs {
		if err := r.m.trace.Put(uint32(0), uint64(0)); err != nil {
			r.t.Fatal(err)
		}
		bufs[i] = bytes.Repeat([]byte{byte(i * 0xff)}, len(frame)+64)
		var err error
		if ret, err = r.progs[port].Run(&ebpf.RunOptions{Data: frame, DataOut: bufs[i]}); err != nil {
			r.t.Fatalf("run: %v", err)
		}
	}
	n := len(bufs[0])
	for n > 0 && bufs[0][n-1] != bufs[1][n-1] {
		n--
	}
	buf := bufs[0][:n]
	var eg uint64
	if err := r.m.trace.Lookup(uint32(0), &eg); err != nil {
		r.t.Fatal(err)
	}
	switch ret {
	case xdpPass:
		if eg != 0 {
			r.t.Fatalf("XDP_PASS after a redirect was traced")
		}
		return nil, 0, false
	case xdpRedirect:
		if eg == 0 {
			r.t.Fatalf("XDP_REDIRECT to no traced port")
		}
	default:
		r.t.Fatalf("program returned %d for % x", ret, frame)
	}
	return buf, uint8(eg - 1), true
}

// slow runs the engine on frame: the frame it forwards with a routed
// verdict (new header, TTL decremented) and the egress port, or ok false.
func (r *rig) slow(port uint8, frame []byte) (out []byte, egress uint8, ok bool) {
	f := make([]byte, len(frame), 2048)
	copy(f, frame)
	b := &datapath.Batch{Port: port, Frames: [][]byte{f}, Out: make([]datapath.Verdict, 1)}
	r.proc.Process(b)
	v := b.Out[0]
	if v.Action != datapath.Forward || !v.DecTTL {
		return nil, 0, false
	}
	out = append(append([]byte{}, v.Hdr[:v.HdrLen]...), f[v.Strip:v.Len]...)
	if len(out)-int(v.HdrLen) >= 20 {
		fib.DecTTL(out[v.HdrLen:])
	}
	return out, v.Port, true
}

// TestDifferential: every frame the fast path forwards, the engine forwards
// the same way, to the same port, byte for byte; and the fast path takes
// the common case (most of the well-formed traffic of bound subscribers).
func TestDifferential(t *testing.T) {
	r := newRig(t)
	rng := rand.New(rand.NewPCG(1, 2))
	var fastN, slowOnly, both int
	for i := range 20000 {
		port, frame := r.randomFrame(rng)
		want, weg, wok := r.slow(port, frame)
		got, geg, gok := r.fast(port, frame)
		switch {
		case gok && !wok:
			t.Fatalf("frame %d on port %d: the fast path forwarded (to port %d) what the engine does not:\n% x", i, port, geg, frame)
		case gok && wok:
			if geg != weg || !bytes.Equal(got, want) {
				t.Fatalf("frame %d on port %d:\n in  % x\nfast % x (port %d)\neng  % x (port %d)", i, port, frame, got, geg, want, weg)
			}
			fastN++
			both++
		case wok:
			slowOnly++
		}
	}
	t.Logf("forwarded by both %d, by the engine only %d", both, slowOnly)
	if fastN < 3000 || slowOnly == 0 {
		t.Fatalf("the generator did not exercise both: %d by the fast path, %d by the engine only", fastN, slowOnly)
	}
}

// randomFrame makes a frame for one of the rig's ports: mostly what a
// bound subscriber or an ISP sends, with every field the fast path or the
// engine looks at varied now and then.
func (r *rig) randomFrame(rng *rand.Rand) (uint8, []byte) {
	pick := func(p float64) bool { return rng.Float64() < p }
	var port uint8
	var vlan uint16
	var src, dst uint64
	var sip, dip uint32
	switch {
	case pick(0.6): // a subscriber's
		sb := r.subs[rng.IntN(len(r.subs))]
		vlan, src, sip = sb.vlan, sb.mac, sb.ip
		dip = 0x08080000 | rng.Uint32N(1<<16)
		if pick(0.05) {
			vlan = 10 - vlan
		}
		if pick(0.05) {
			src = 0x02dd00000000 | rng.Uint64N(1<<32)
		}
		if pick(0.05) {
			sip++
		}
		if pick(0.2) {
			dip = []uint32{gw0, gw10, portal, 0xffffffff, 0xe0000005, 0x7f000001, 0x00000001,
				0xdfffffff, 0x01020304, up1Addr, r.subs[rng.IntN(len(r.subs))].ip}[rng.IntN(11)]
		}
	default: // an ISP's
		port = uint8(1 + rng.IntN(2))
		if port == 2 {
			vlan = 20
			if pick(0.1) {
				vlan = 30
			}
		}
		src = 0x02aa00000000 | uint64(port)
		sip = 0x08080808
		sb := r.subs[rng.IntN(len(r.subs))]
		dip = sb.ip
		if pick(0.1) {
			dip = []uint32{up1Addr, up2Addr, 0x64400fff, 0xffffffff, portal}[rng.IntN(5)]
		}
	}
	dst = portMACs[port]
	if pick(0.05) {
		dst = []uint64{0xffffffffffff, 0x01005e000001, portMACs[(port+1)%3], 0x02eeeeeeeeee}[rng.IntN(4)]
	}
	tagged := vlan != 0 || pick(0.05) // VID 0: a priority tag
	if pick(0.02) {
		vlan, tagged = 99, true
	}
	if pick(0.02) {
		// Decode drops these on every port (bad_source_mac): a
		// multicast, the broadcast or the zero source MAC.
		src = []uint64{0x010000000001, 0xffffffffffff, 0}[rng.IntN(3)]
	}

	proto := []uint8{17, 17, 6, 6, 6, 1, 1, 47}[rng.IntN(8)]
	l4 := 8
	if proto == 6 {
		l4 = 20
	}
	payload := rng.IntN(64)
	if pick(0.1) {
		payload = 1300 + rng.IntN(250) // around the MTUs
	}
	ihl := 20
	if pick(0.03) {
		ihl = 24
	}
	total := ihl + l4 + payload
	b := make([]byte, 0, 1600)
	b = binary.BigEndian.AppendUint16(b, uint16(dst>>32))
	b = binary.BigEndian.AppendUint32(b, uint32(dst))
	b = binary.BigEndian.AppendUint16(b, uint16(src>>32))
	b = binary.BigEndian.AppendUint32(b, uint32(src))
	if tagged {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, vlan|uint16(rng.IntN(8))<<13)
	}
	et := uint16(0x0800)
	if pick(0.02) {
		et = []uint16{0x0806, 0x86dd, 0x8100}[rng.IntN(3)]
	}
	b = binary.BigEndian.AppendUint16(b, et)
	l3 := len(b)
	ip := make([]byte, ihl)
	ip[0] = 0x40 | byte(ihl/4)
	if pick(0.01) {
		ip[0] = []byte{0x44, 0x55, 0x65}[rng.IntN(3)]
	}
	tl := total
	if pick(0.03) {
		tl = []int{total + 10, 19, 27, ihl + 10, total - 1}[rng.IntN(5)]
	}
	binary.BigEndian.PutUint16(ip[2:], uint16(tl))
	binary.BigEndian.PutUint16(ip[4:], uint16(rng.Uint32()))
	frag := uint16(0)
	if pick(0.5) {
		frag = 0x4000 // DF
	}
	if pick(0.04) {
		frag |= []uint16{0x2000, 0x0001, 0x2010}[rng.IntN(3)]
	}
	binary.BigEndian.PutUint16(ip[6:], frag)
	ip[8] = 64
	if pick(0.05) {
		ip[8] = byte(rng.IntN(3))
	}
	ip[9] = proto
	binary.BigEndian.PutUint32(ip[12:], sip)
	binary.BigEndian.PutUint32(ip[16:], dip)
	binary.BigEndian.PutUint16(ip[10:], ^fib.Checksum(ip, 0))
	if pick(0.02) {
		ip[10] ^= 0x40
	}
	b = append(b, ip...)
	l4b := make([]byte, l4+payload)
	for i := range l4b {
		l4b[i] = byte(rng.Uint32())
	}
	if proto == 17 || proto == 6 {
		ports := []uint16{67, 68, 53, 80, 443, 1234, 40000}
		binary.BigEndian.PutUint16(l4b[0:], ports[rng.IntN(len(ports))])
		binary.BigEndian.PutUint16(l4b[2:], ports[rng.IntN(len(ports))])
	}
	b = append(b, l4b...)
	if n := len(b); n < 60 || pick(0.05) {
		b = append(b, make([]byte, max(60-n, rng.IntN(20)))...) // Ethernet padding
	}
	if pick(0.02) {
		b = b[:l3+rng.IntN(min(len(b)-l3, 60))] // truncated
	}
	return port, b
}

// udp is a well-formed UDP datagram in a frame to port's MAC.
func udp(port uint8, vlan uint16, src uint64, sip, dip uint32) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(portMACs[port]>>32))
	b = binary.BigEndian.AppendUint32(b, uint32(portMACs[port]))
	b = binary.BigEndian.AppendUint16(b, uint16(src>>32))
	b = binary.BigEndian.AppendUint32(b, uint32(src))
	if vlan != 0 {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, vlan)
	}
	b = binary.BigEndian.AppendUint16(b, 0x0800)
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], 20+8+18)
	binary.BigEndian.PutUint32(ip[12:], sip)
	binary.BigEndian.PutUint32(ip[16:], dip)
	binary.BigEndian.PutUint16(ip[10:], ^fib.Checksum(ip, 0))
	b = append(b, ip...)
	b = binary.BigEndian.AppendUint16(b, 5000)
	b = binary.BigEndian.AppendUint16(b, 6000)
	b = binary.BigEndian.AppendUint16(b, 8+18)
	return append(b, make([]byte, 2+18)...)
}

// TestMirrorFollowsChanges: what the control plane changes after the fast
// path started reaches it at once: an unbound subscriber, a move to
// another ISP, a withdrawn next hop, a lower MTU, the portal; and the
// engine's counters include the packets the fast path forwarded.
func TestMirrorFollowsChanges(t *testing.T) {
	r := newRig(t)
	sb := r.subs[0] // VLAN 0, ISP 1
	up := udp(0, sb.vlan, sb.mac, sb.ip, 0x08080808)
	down := udp(1, 0, 0x02aa00000001, 0x08080808, sb.ip)
	expect := func(what string, port uint8, f []byte, fwd bool, egress uint8) {
		t.Helper()
		_, eg, ok := r.fast(port, f)
		_, weg, wok := r.slow(port, f)
		if ok != fwd || ok && eg != egress {
			t.Fatalf("%s: fast path forwarded %v (port %d), want %v (port %d)", what, ok, eg, fwd, egress)
		}
		if ok && (!wok || weg != eg) {
			t.Fatalf("%s: the engine forwards %v to port %d", what, wok, weg)
		}
	}
	expect("bound, up", 0, up, true, 1)
	expect("bound, down", 1, down, true, 0)
	before := r.s.Counters()

	if !r.c.Unbind(0, sb.vlan, sb.mac) {
		t.Fatal("unbind")
	}
	expect("unbound, up", 0, up, false, 0)
	expect("unbound, down", 1, down, false, 0)

	sb.isp = 2
	r.bind(sb)
	expect("moved to ISP 2, up", 0, up, true, 2)
	expect("moved, down from ISP 1", 1, down, false, 0)
	down2 := udp(2, 20, 0x02aa00000002, 0x08080808, sb.ip)
	expect("moved, down from ISP 2", 2, down2, true, 0)

	r.s.Up.SetGatewayMAC(2, 0)
	expect("next hop withdrawn", 0, up, false, 0)
	r.s.Up.SetGatewayMAC(2, 0x02aa00000003)
	out, _, ok := r.fast(0, up)
	if !ok || classifierMAC(out[0:6]) != 0x02aa00000003 {
		t.Fatalf("next hop's new MAC: % x", out)
	}

	big := udp(0, sb.vlan, sb.mac, sb.ip, 0x08080808)
	r.c.SetMTU(2, 40)
	expect("above the MTU", 0, big, false, 0)
	r.c.SetMTU(2, 1400)
	expect("within the MTU", 0, big, true, 2)

	r.c.SetPortDevice(2, 0)
	expect("egress port down", 0, big, false, 0)
	r.c.SetPortDevice(2, 1)
	expect("egress port up again", 0, big, true, 2)

	toPortal := udp(0, sb.vlan, sb.mac, sb.ip, 0x0b0b0b0b)
	expect("not the portal yet", 0, toPortal, true, 2)
	if err := r.s.SetGarden(&engine.Garden{PortalAddr: 0x0b0b0b0b}); err != nil {
		t.Fatal(err)
	}
	expect("the portal", 0, toPortal, false, 0)

	after := r.s.Counters()
	// Each forwarded frame ran twice (fast) and once through the
	// engine's processor, which counts only at Flush (not called).
	if before[0].Up != 2 || before[1].Down != 2 || after[0].Up != 12 || after[1].Down != 2 || after[2].Down != 2 {
		t.Fatalf("counters: up on acc0 %d → %d, down on up1 %d → %d, on up2 %d",
			before[0].Up, after[0].Up, before[1].Down, after[1].Down, after[2].Down)
	}
	if err := r.m.Err(); err != nil {
		t.Fatal(err)
	}
}

// gatedPorts is the fast path's Maps with SetPort held, once armed, until
// release is closed (entered says it was called); setMTU is closed when
// SetMTU is called.
type gatedPorts struct {
	*Maps
	armed            bool
	entered, release chan struct{}
	setMTU           chan struct{}
	once             sync.Once
}

func (g *gatedPorts) SetPort(port uint8, mac uint64, mtu int, ifindex int) {
	if g.armed {
		close(g.entered)
		<-g.release
	}
	g.Maps.SetPort(port, mac, mtu, ifindex)
}

func (g *gatedPorts) SetMTU(port uint8, mtu int) {
	g.once.Do(func() { close(g.setMTU) })
	g.Maps.SetMTU(port, mtu)
}

// TestMTUWhileDeviceChanges: an MTU change (the link watcher's SetMTU)
// while a port's device is being published (the port keeper's
// SetPortDevice, which copies the port's MTU too) ends with the fast path
// holding the engine's MTU, whichever goes first: a stale, larger MTU
// forwarded packets the engine answers with "fragmentation needed", into
// a device that drops them.
func TestMTUWhileDeviceChanges(t *testing.T) {
	r := newRig(t)
	g := &gatedPorts{Maps: r.m, entered: make(chan struct{}), release: make(chan struct{}), setMTU: make(chan struct{})}
	r.c.SetOffload(g, func(uint8) int { return 1 })
	g.armed = true
	devDone, mtuDone := make(chan struct{}), make(chan struct{})
	go func() { r.c.SetPortDevice(2, 1); close(devDone) }() // copies MTU 1400
	<-g.entered
	go func() { r.c.SetMTU(2, 40); close(mtuDone) }()
	// Let SetMTU reach the maps if it can before SetPortDevice ends
	// (the bound only decides how long to give it: the outcome is
	// checked below, and is right either way when the two are
	// serialised).
	select {
	case <-g.setMTU:
	case <-time.After(200 * time.Millisecond):
	}
	close(g.release)
	<-devDone
	<-mtuDone

	sb := r.subs[1] // ISP 2, on port 2 (MTU now 40)
	f := udp(0, sb.vlan, sb.mac, sb.ip, 0x08080808)
	if _, _, ok := r.slow(0, f); ok {
		t.Fatal("setup: the engine forwards a 46-byte packet to a port of MTU 40")
	}
	if _, eg, ok := r.fast(0, f); ok {
		var v portVal
		_ = r.m.ports.Lookup(uint32(2), &v)
		t.Fatalf("the fast path forwards a 46-byte packet to port %d: its MTU in the map is %d, the engine's 40", eg, v.MTU)
	}
}

func classifierMAC(b []byte) uint64 {
	return uint64(binary.BigEndian.Uint16(b))<<32 | uint64(binary.BigEndian.Uint32(b[2:]))
}

// TestFullTable: a binding the kernel's full table refuses is left to the
// engine (no entry, no error), and the fast path stays on for the others.
func TestFullTable(t *testing.T) {
	needBPF(t)
	m, err := newMaps(2, false)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.SetSub(1<<16, 11)
	m.SetSub(2<<16, 22)
	m.SetSub(3<<16, 33) // refused: full
	m.SetSubs([]uint64{4 << 16, 1 << 16}, []uint64{44, 12})
	var v uint64
	for k, want := range map[uint64]uint64{1 << 16: 12, 2 << 16: 22} {
		if err := m.macs.Lookup(k, &v); err != nil || v != want {
			t.Errorf("entry %#x: %d, %v; want %d", k, v, err, want)
		}
	}
	for _, k := range []uint64{3 << 16, 4 << 16} {
		if err := m.macs.Lookup(k, &v); err == nil {
			t.Errorf("entry %#x beyond the table's size is there (%d)", k, v)
		}
	}
	if err := m.Err(); err != nil {
		t.Errorf("a full table switched the fast path off: %v", err)
	}
}

// TestSwitchedOff: a map write that failed (must) switches every program
// to the engine, and Err says why.
func TestSwitchedOff(t *testing.T) {
	r := newRig(t)
	sb := r.subs[0]
	up := udp(0, sb.vlan, sb.mac, sb.ip, 0x08080808)
	if _, _, ok := r.fast(0, up); !ok {
		t.Fatal("setup: not forwarded")
	}
	r.m.must(errors.New("injected"), "test")
	if _, _, ok := r.fast(0, up); ok {
		t.Error("forwarded after the fast path was switched off")
	}
	if err := r.m.Err(); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Errorf("Err = %v", err)
	}
	// The portal's update keeps it off.
	r.m.SetPortal(0x01010101)
	if _, _, ok := r.fast(0, up); ok {
		t.Error("forwarded after SetPortal")
	}
}
