package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/internal/netnsrun"
)

// Where an exchange's time goes. The client generator measures DISCOVER →
// OFFER and REQUEST → ACK end to end: the relay (ispmux or dhcrelay, on
// CPU 1), the ISP's server (Kea, on CPU 0 with the generator) and the
// generator itself. To tell the relay's share from the server's, bench
// dhcp records every DHCP message at two points with the kernel's
// timestamps: the generator's interface (the subscribers' side, before the
// access bridge) and the ISP server's interface (after the uplink), both
// the far ends of veths from the appliance. For each exchange matched at
// both (by xid and chaddr, which both relays keep),
//
//	up      = server's interface in  − generator's interface out (the request)
//	server  = server's interface out − server's interface in
//	down    = generator's interface in − server's interface out (the answer)
//	through = up + down: the relay's part, the veths and the bridge included
//	wire    = generator's interface in − generator's interface out: the
//	          whole exchange as a tester on the client's wire times it,
//	          without the generator's own delays in reading and sending
//
// Only the first transmission of each message counts, as in the
// generator's own figures.

// DHCPLegs splits a case's exchanges into the relay's part and the ISP
// server's, from the kernel's timestamps at the generator's and the
// server's interfaces (milliseconds; nil when no exchange matched).
type DHCPLegs struct {
	Offers            int      `json:"offers"` // DISCOVER → OFFER exchanges seen at both interfaces
	OfferThroughP50Ms *float64 `json:"offer_through_p50_ms"`
	OfferThroughP99Ms *float64 `json:"offer_through_p99_ms"`
	OfferServerP50Ms  *float64 `json:"offer_server_p50_ms"`
	OfferServerP99Ms  *float64 `json:"offer_server_p99_ms"`
	Acks              int      `json:"acks"` // REQUEST → ACK exchanges seen at both interfaces
	AckThroughP50Ms   *float64 `json:"ack_through_p50_ms"`
	AckThroughP99Ms   *float64 `json:"ack_through_p99_ms"`
	AckServerP50Ms    *float64 `json:"ack_server_p50_ms"`
	AckServerP99Ms    *float64 `json:"ack_server_p99_ms"`
	// At the client's wire: the generator's interface out → in (the
	// exchanges above).
	OfferWireP50Ms *float64 `json:"offer_wire_p50_ms"`
	OfferWireP99Ms *float64 `json:"offer_wire_p99_ms"`
	AckWireP50Ms   *float64 `json:"ack_wire_p50_ms"`
	AckWireP99Ms   *float64 `json:"ack_wire_p99_ms"`
	// CaptureDrops counts frames the capture sockets lost (their receive
	// buffer was full); NoTimestamp frames that came without a kernel
	// timestamp and were timed on reading. Both should be 0.
	CaptureDrops uint64 `json:"capture_drops"`
	NoTimestamp  int    `json:"no_timestamp"`
	// Unmatched counts the case's completed exchanges whose REQUEST →
	// ACK was not seen at both interfaces (should be 0).
	Unmatched int `json:"unmatched"`
}

// legKey identifies one client's exchange: the xid and chaddr.
type legKey struct {
	xid uint32
	mac [6]byte
}

// legRec is one DHCP message seen on an interface.
type legRec struct {
	t   int64 // kernel timestamp, Unix ns
	key legKey
	mt  uint8 // option 53
	out bool  // sent by this side (PACKET_OUTGOING)
}

// legCapture records the DHCP messages crossing one interface, on an
// AF_PACKET socket bound to it (ETH_P_ALL, so that it sees what the
// interface sends as well) with a TPACKET_V3 receive ring: the kernel
// copies each frame into a block of the ring with its timestamp and hands
// over whole blocks, full or after ringRetire, so the reader wakes a few
// tens of times a second instead of once per frame. Reading each frame
// with its own recvmsg woke the reader 16,000 times a second at 2000
// DORA/s on the CPU Kea shares with the generator, and that alone raised
// the p99 at 2000/s of both systems several-fold (ispmux 38–151 ms against
// 11–12 without the capture, dhcrelay 0.4–3.9 s against 40–47 ms).
type legCapture struct {
	fd   int
	ring []byte
	stop atomic.Bool
	done chan struct{}
	recs []legRec
	noTS int
	err  error
}

// The capture ring: ringBlocks blocks of ringBlock bytes (8 MiB), each
// handed to the reader when full or ringRetire ms after its first frame.
// A block so holds 20–40 ms of traffic at the fixed rates (at 2000/s,
// ~16,000 frames a second fill one in ~40 ms), and a reader that stalls
// for more than ~0.6–1.3 s loses frames: counted (capture_drops, from
// PACKET_STATISTICS) and reported, never silently.
const (
	ringBlock  = 256 << 10
	ringBlocks = 32
	ringFrame  = 2048 // the kernel's frame size hint; V3 packs frames tightly
	ringRetire = 20
)

// startLegCapture starts recording on interface ifname of network
// namespace ns.
func startLegCapture(ns, ifname string) (*legCapture, error) {
	fd := -1
	err := netnsrun.InNamed(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		fd = s
		// SO_TIMESTAMPNS turns the kernel's receive timestamps on, so
		// each frame carries the time it crossed the interface
		// (TP_STATUS_TS_SOFTWARE), not the time it was copied.
		if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(s, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
			return err
		}
		req := unix.TpacketReq3{Block_size: ringBlock, Block_nr: ringBlocks, Frame_size: ringFrame,
			Frame_nr: ringBlock / ringFrame * ringBlocks, Retire_blk_tov: ringRetire}
		if err := unix.SetsockoptTpacketReq3(s, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
			return fmt.Errorf("PACKET_RX_RING: %w", err)
		}
		// Bound last: frames flow into the ring from here on.
		return unix.Bind(s, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index})
	})
	var ring []byte
	if err == nil {
		ring, err = unix.Mmap(fd, 0, ringBlock*ringBlocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("capture on %s in %s: %w", ifname, ns, err)
	}
	c := &legCapture{fd: fd, ring: ring, done: make(chan struct{})}
	go c.read()
	return c, nil
}

// read records frames until stopped, then takes what the ring still holds.
// Its thread runs on the generator's CPU (where Kea runs too), never on the
// relay's: the relay's part is what it measures.
//
// The thread goes back to the runtime afterwards with its affinity
// restored, never ends with the goroutine: a child the bench started from
// that thread (ispmux, dhcrelay: Pdeathsig) would be sent SIGTERM when
// the thread that forked it exits.
func (c *legCapture) read() {
	defer close(c.done)
	runtime.LockOSThread()
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		runtime.UnlockOSThread()
		c.err = fmt.Errorf("capture: CPU affinity: %w", err)
		return
	}
	defer func() {
		_ = unix.SchedSetaffinity(0, &orig) // all CPUs again (a failure leaves a thread of the bench on one)
		runtime.UnlockOSThread()
	}()
	cpu, err := strconv.Atoi(genCPU)
	var cpus unix.CPUSet
	cpus.Set(cpu)
	if err == nil {
		err = unix.SchedSetaffinity(0, &cpus)
	}
	if err != nil {
		c.err = fmt.Errorf("pin the capture to CPU %s: %w", genCPU, err)
		return
	}
	blk := 0
	var drainUntil time.Time // after stop: until the last block is retired
	fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN | unix.POLLERR}}
	for {
		if n := c.takeBlocks(&blk); n > 0 {
			continue
		}
		if c.stop.Load() {
			if drainUntil.IsZero() {
				drainUntil = time.Now().Add(3 * ringRetire * time.Millisecond)
			} else if time.Now().After(drainUntil) {
				return
			}
		}
		if _, err := unix.Poll(fds, 2*ringRetire); err != nil && !errors.Is(err, unix.EINTR) {
			c.err = err
			return
		}
	}
}

// takeBlocks records the frames of every block handed over to user space,
// from block *blk on, returns each to the kernel and reports how many it
// took.
func (c *legCapture) takeBlocks(blk *int) int {
	n := 0
	for {
		b := c.ring[*blk*ringBlock : (*blk+1)*ringBlock]
		status := (*uint32)(unsafe.Pointer(&b[blockStatusOff]))
		if atomic.LoadUint32(status)&unix.TP_STATUS_USER == 0 {
			return n
		}
		c.noTS += walkBlock(b, func(r legRec) { c.recs = append(c.recs, r) })
		atomic.StoreUint32(status, unix.TP_STATUS_KERNEL)
		*blk = (*blk + 1) % ringBlocks
		n++
	}
}

// Offsets in a TPACKET_V3 block (struct tpacket_block_desc, whose header
// tpacket_hdr_v1 starts at 8) and in each frame's struct tpacket3_hdr,
// which struct sockaddr_ll follows at TPACKET_ALIGN(48).
const (
	blockStatusOff = 8
	blockNumOff    = 12
	blockFirstOff  = 16
	frameLLOff     = 48
	llPkttypeOff   = 10
)

// walkBlock calls rec with every DHCP message in the TPACKET_V3 block b
// and returns how many of them carried no kernel timestamp (they are
// timed when the kernel copied them, a little later).
func walkBlock(b []byte, rec func(legRec)) (noTS int) {
	if len(b) < blockFirstOff+4 {
		return 0
	}
	num := binary.NativeEndian.Uint32(b[blockNumOff:])
	off := int(binary.NativeEndian.Uint32(b[blockFirstOff:]))
	for range num {
		if off <= 0 || off+frameLLOff+llPkttypeOff+1 > len(b) {
			return noTS
		}
		h := b[off:]
		next := int(binary.NativeEndian.Uint32(h[0:4]))
		sec, nsec := binary.NativeEndian.Uint32(h[4:8]), binary.NativeEndian.Uint32(h[8:12])
		snap := int(binary.NativeEndian.Uint32(h[12:16]))
		st := binary.NativeEndian.Uint32(h[20:24])
		mac := int(binary.NativeEndian.Uint16(h[24:26]))
		if mac+snap <= len(h) {
			if r, ok := parseLegFrame(h[mac : mac+snap]); ok {
				r.t = int64(sec)*1e9 + int64(nsec)
				r.out = h[frameLLOff+llPkttypeOff] == unix.PACKET_OUTGOING
				if st&unix.TP_STATUS_TS_SOFTWARE == 0 {
					noTS++
				}
				rec(r)
			}
		}
		if next == 0 {
			return noTS
		}
		off += next
	}
	return noTS
}

// finish stops the capture and returns its records and the frames the
// kernel dropped for a full receive buffer.
func (c *legCapture) finish() ([]legRec, uint64, error) {
	c.stop.Store(true)
	<-c.done
	var drops uint64
	if st, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
		drops = uint64(st.Drops)
	}
	_ = unix.Munmap(c.ring)
	unix.Close(c.fd)
	return c.recs, drops, c.err
}

// parseLegFrame decodes an Ethernet frame carrying a DHCP message (IPv4,
// UDP port 67 or 68, an optional 802.1Q tag): its xid, chaddr and type.
func parseLegFrame(b []byte) (legRec, bool) {
	if len(b) < 14 {
		return legRec{}, false
	}
	off, et := 14, binary.BigEndian.Uint16(b[12:14])
	if et == 0x8100 && len(b) >= 18 {
		off, et = 18, binary.BigEndian.Uint16(b[16:18])
	}
	if et != 0x0800 || len(b) < off+20 {
		return legRec{}, false
	}
	ip := b[off:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || ip[9] != 17 || len(ip) < ihl+8 {
		return legRec{}, false
	}
	udp := ip[ihl:]
	sp, dp := binary.BigEndian.Uint16(udp[0:2]), binary.BigEndian.Uint16(udp[2:4])
	if (sp != 67 && sp != 68) || (dp != 67 && dp != 68) {
		return legRec{}, false
	}
	m := udp[8:]
	if len(m) < 240 || binary.BigEndian.Uint32(m[236:240]) != 0x63825363 {
		return legRec{}, false
	}
	r := legRec{key: legKey{xid: binary.BigEndian.Uint32(m[4:8]), mac: [6]byte(m[28:34])}}
	for o := m[240:]; len(o) > 0; {
		switch o[0] {
		case 0:
			o = o[1:]
			continue
		case 255:
			return legRec{}, false
		}
		if len(o) < 2 || len(o) < 2+int(o[1]) {
			return legRec{}, false
		}
		if o[0] == 53 && o[1] == 1 {
			r.mt = o[2]
			return r, true
		}
		o = o[2+int(o[1]):]
	}
	return legRec{}, false
}

// DHCP message types (option 53).
const (
	legDiscover = 1
	legOffer    = 2
	legRequest  = 3
	legAck      = 5
)

// dhcpLegs matches the generator's records with the server's (see
// DHCPLegs).
func dhcpLegs(gen, srv []legRec) *DHCPLegs {
	type km struct {
		k   legKey
		mt  uint8
		out bool
	}
	first := func(rs []legRec) map[km]int64 {
		m := make(map[km]int64, len(rs))
		for _, r := range rs {
			k := km{r.key, r.mt, r.out}
			if _, ok := m[k]; !ok {
				m[k] = r.t
			}
		}
		return m
	}
	g, s := first(gen), first(srv)
	leg := func(req, ans uint8) (through, server, wire []float64) {
		for k, tOut := range g {
			if k.mt != req || !k.out {
				continue
			}
			sIn, ok1 := s[km{k.k, req, false}]
			sOut, ok2 := s[km{k.k, ans, true}]
			gIn, ok3 := g[km{k.k, ans, false}]
			if !ok1 || !ok2 || !ok3 {
				continue
			}
			through = append(through, float64((sIn-tOut)+(gIn-sOut))/1e6)
			server = append(server, float64(sOut-sIn)/1e6)
			wire = append(wire, float64(gIn-tOut)/1e6)
		}
		return through, server, wire
	}
	l := &DHCPLegs{}
	ot, os, ow := leg(legDiscover, legOffer)
	l.Offers = len(ot)
	l.OfferThroughP50Ms, l.OfferThroughP99Ms = percentile(ot, 50), percentile(ot, 99)
	l.OfferServerP50Ms, l.OfferServerP99Ms = percentile(os, 50), percentile(os, 99)
	l.OfferWireP50Ms, l.OfferWireP99Ms = percentile(ow, 50), percentile(ow, 99)
	at, as, aw := leg(legRequest, legAck)
	l.Acks = len(at)
	l.AckThroughP50Ms, l.AckThroughP99Ms = percentile(at, 50), percentile(at, 99)
	l.AckServerP50Ms, l.AckServerP99Ms = percentile(as, 50), percentile(as, 99)
	l.AckWireP50Ms, l.AckWireP99Ms = percentile(aw, 50), percentile(aw, 99)
	return l
}

// legCaptures records at the generator's interface and the ISP server's
// for one case.
type legCaptures struct{ gen, srv *legCapture }

// startLegs starts both captures.
func (d *dhcpBencher) startLegs() (*legCaptures, error) {
	g, err := startLegCapture(d.t.Generator.NS, d.t.Generator.If)
	if err != nil {
		return nil, err
	}
	isp := d.t.ISPs[0]
	s, err := startLegCapture(isp.NS, isp.RouterIf)
	if err != nil {
		g.finish()
		return nil, err
	}
	return &legCaptures{g, s}, nil
}

// finish stops both captures and computes the case's legs.
func (l *legCaptures) finish() (*DHCPLegs, error) {
	gen, gd, gerr := l.gen.finish()
	srv, sd, serr := l.srv.finish()
	if err := errors.Join(gerr, serr); err != nil {
		return nil, err
	}
	legs := dhcpLegs(gen, srv)
	legs.CaptureDrops = gd + sd
	legs.NoTimestamp = l.gen.noTS + l.srv.noTS
	return legs, nil
}
