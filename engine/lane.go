package engine

import (
	"encoding/binary"
	"math/bits"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
)

// The forwarding lane: the frames nearly every packet is, a plain IPv4
// datagram from a bound subscriber to a unicast address beyond the
// gateway, or from an ISP to one of its bound subscribers, decided from the
// frame's bytes without decoding it into a classifier.Packet. Process tries
// the lane first (laneKeys in its first pass, laneUps or laneDowns in its
// last); a frame the lane does not decide goes the general way (Decode,
// fromSubscriber or fromISP) with the same table lookup, so the lane
// changes no verdict, only its cost: every condition below is one the
// general way checks too, and where it would do anything but route the
// frame the lane declines (FuzzLane compares the two ways).
//
// Measured (BenchmarkPipeline, 4 alternated runs of each build): 47.2 →
// 43.9 ns per packet at 1K, 53.7 → 50.2 at 1M; BenchmarkProcessHot (one
// batch over and over, everything in the cache) 22.0 → 17.7. A straight-line
// classifier.Decode for the same frames, filling the Packet, gained
// nothing measurable: what the lane saves is the Packet's 112 bytes
// written and read back, and the general way's calls and branches.
//
// Then laneKeys and laneUps, one loop each over the batch, in place of a
// call per frame to laneKey and laneUp (a Go call saves no register: each
// spilled and reloaded the loop's state). The two in one process, in
// alternated blocks of 4096 packets of BenchmarkPipeline's generator, median
// block of 4 runs on the shared 2-CPU EPYC VM under load: 1K 49.7–51.9 →
// 47.2–49.4 ns per packet, 1M 59.8–65.5 → 56.9–62.2 (the machine busier:
// 1K 82.4 → 76.9, 1M 94.7–98.5 → 89.4–93.4; against the old code
// exactly, 4 runs, 1K 77.0–82.9 → 72.4–78.4, 1M 90.0–98.6 → 86.1–94.6).
// Process then skips its general passes when the lane has every frame of
// the batch (its keys, its verdicts): 1K 50.6–52.8 → 48.7–50.4, 1M
// 58.6–61.3 → 56.7–59.3 (3 runs). laneIPv4 written out into laneUps
// gained 0–2 ns more (under 1 in most runs): it stayed a call then
// (stop 49 wrote laneUps's checks out, below). Not faster: the MAC table's lines prefetched (a PREFETCHT0 per key, from a
// PrefetchBatch added to lfmap.View for the trial, not kept) right after laneKeys and the IPv4 checks
// done before the lookup, so that the misses are served meanwhile: 0.4–1.2
// ns slower at 1K and at 1M (the prefetches cost a hash per key again, and
// the 64 misses of a batch are served no faster than the lookup's own
// prefetches serve them: the table's floor is its memory parallelism).
//
// Stop 49, each change against the code before it in one test binary
// (the two builds of laneUps switched every 4096 packets, or every 64
// batches of BenchmarkProcessHot's, the median of the paired
// differences; the host's load average 2–9): laneIPv4's checksum folded
// with add-with-carry and rotates (Linux's csum_fold) instead of masks
// and shifts, BenchmarkProcessHot −0.55 ns per packet in each of 3 runs
// (quartiles −0.65 and −0.48), BenchmarkPipeline's path −0.4 and −1.1 at
// 1K, −0.4 and −0.7 at 1M (2 runs, quartiles ±5–10 ns: the direction
// only). Then laneUps reading the ports' MTUs once a batch and an
// uplink's readiness from its header's length (one byte, not Configured
// and Resolved): −0.12 ns (3 runs) and −0.27 (3 runs) alone, −0.70 and
// −0.70 together (−0.29 in a third run with the host busier);
// BenchmarkPipeline's path −0.2 at 1K, −0.4 at 1M (one run, the
// direction only). Then laneIPv4's checks written out in laneUps's loop
// from small functions the compiler inlines (laneIPv4Words, laneIPv4OK),
// not a call per frame: −0.32, −0.34, −0.37 ns (3 runs); the pipeline's
// path −0.5 at 1K, −0.3 at 1M (one run). A first cut with the ports'
// check a function too and the tests in one conjunction gained only
// −0.06 (3 runs); the checks written out by hand, −0.4. Then laneKeys
// reading each MAC in one 8-byte load: −0.59 in each of 3 runs (quartiles
// −0.65 and −0.52); the pipeline's path −0.4 at 1K, +0.2 at 1M (one run,
// the host's load average 19: quartiles ±5 at 1K, −23 and +58 at 1M).
// Not kept, within the noise or slower (BenchmarkProcessHot, 3 runs each):
// laneUps's DHCP ports as two range checks (sport-67 < 2) for four
// comparisons, −0.09 to −0.12 with quartiles ±1.2; laneKeys's EtherType
// and the IPv4 version byte as one 32-bit word's compare, −0.03 to −0.08
// with quartiles ±1; that and each frame's role, keys and L3 offset stored
// once, at the end of its iteration, +0.2 (slower). The four kept,
// together against the code before them (laneKeys and laneUps of both in
// one binary, the host's load average 13): BenchmarkProcessHot 24.1 →
// 21.0 ns (paired differences' medians −3.00, −3.15, −3.00); the
// pipeline's path, medians of blocks, 1K 68.5 → 64.5 and 49.1 → 46.6,
// 1M 62.1 → 59.7 and 61.3 → 58.5 (paired −2.4 and −2.5). At 1M that is
// about 1.79× (floor + bare) from stop 48's 1.87, if it holds on a quiet
// host: the 1.5× target still needs some 9 ns more.
//
// Not page walks: the tables on huge pages against 4 KiB pages, in one
// process (internal/hugemem, which now collapses reused memory too), save
// the pipeline at 1M 0.8–2.5 ns (median 1.6, 12 runs) and the memory
// floor nearly as much (median 0.8, up to 2.4), so the ratio is unmoved
// (1.88 → 1.90 in the quietest runs; docs/PERFORMANCE.md). The in-memory
// ports' UMEM on huge pages: −3.3 to +1.6 ns over 11 runs, the bare
// worker 0.7–1.2 ns slower; not kept.
//
// Stop 54, each in one test binary against the code as it is (the two
// ways switched every 64 batches of BenchmarkPipeline's generator, median
// of the paired differences, 3 runs each, the host's load average 1–4),
// not kept:
//   - the MAC table's home lines asked for with PREFETCHNTA instead of
//     PREFETCHT0 (so that the lines of a table read once do not evict
//     the frames and the UMEM from L2), alone and with the probe rounds'
//     prefetches too: −0.2 to +0.5 ns at 1K and at 1M, nothing;
//   - the next batch's home lines asked for a batch ahead (its keys
//     known to the trial's generator, so only the hash and the prefetch
//     were paid), so that its misses are served while this batch is
//     decided and copied: +1.2 to +2.3 ns at 1K and +1.7 to +2.5 at 1M,
//     slower at both: whatever the lines ready a batch ahead saved at
//     1M, it did not pay for the second hash and the prefetches.
// Where 1M costs more than 1K (perf, timer sampling, 60M packets each,
// pinned): the lookup about 5.6 ns and the generator's copy of its
// template about 3.4 ns (runtime.memmove under MemQueue.Receive). The
// latter is the benchmark's, not the pipeline's: the 64K templates (4
// MiB, scattered over the heap) are evicted by the table's lines at 1M,
// and stay in L3 at 1K and in the bare worker. Copied from one
// contiguous array instead, the bare worker took 3.3 ns less and the
// pipeline 4.3 at 1K and 4.2–5.3 at 1M: the ratio to floor + bare rises,
// so the generator was left as it is.

// roleLaneUp and roleLaneDown mark a frame laneKeys took, from a
// subscriber and from an ISP: its MAC table or FIB key is in macKeys or
// fibKeys, its L3 offset in laneL3. roleLaneDone marks a frame that
// laneUps or laneDowns decided.
const (
	roleLaneUp   = 3
	roleLaneDown = 4
	roleLaneDone = 5
)

// laneMinFrame is the shortest frame laneKeys looks at: an Ethernet header
// with one 802.1Q tag and a 20-byte IPv4 header.
const laneMinFrame = 14 + 4 + 20

// laneKeys finds the frames of a batch received on port pt (index in)
// that may take the lane: IPv4 with a 20-byte header, untagged or with one
// 802.1Q tag, to our MAC from a unicast MAC, on an access VLAN or an ISP's
// uplink VLAN (not the walled garden's). It sets each frame's role
// (roleLaneUp, roleLaneDown; roleNone: not the lane's), its table key in
// macKeys or fibKeys (the other 0), and for the lane's its L3 offset in
// laneL3; it returns how many frames need each table.
func (p *Processor) laneKeys(pt *port, in uint8, frames [][]byte) (nmac, nfib int) {
	for i, f := range frames {
		p.role[i], p.macKeys[i], p.fibKeys[i] = roleNone, 0, 0
		if len(f) < laneMinFrame {
			continue
		}
		// Each MAC in one 8-byte load (classifier.MAC takes two):
		// BenchmarkProcessHot −0.59 ns.
		h := (*[laneMinFrame]byte)(f)
		dstMAC := binary.BigEndian.Uint64(h[0:8]) >> 16
		src := binary.BigEndian.Uint64(h[4:12]) & classifier.BroadcastMAC
		et := binary.BigEndian.Uint16(h[12:14])
		var vlan uint16
		l3 := 14
		if et == classifier.EtherTypeVLAN {
			vlan = binary.BigEndian.Uint16(h[14:16]) & classifier.MaxVLAN
			et = binary.BigEndian.Uint16(h[16:18])
			l3 = 18
		}
		if et != classifier.EtherTypeIPv4 || f[l3] != 0x45 || dstMAC != pt.mac ||
			src == 0 || classifier.IsMulticastMAC(src) {
			continue
		}
		switch pt.role[vlan] {
		case roleAccess:
			p.role[i], p.macKeys[i], p.laneL3[i] = roleLaneUp, classifier.Key(in, vlan, src), uint8(l3)
			nmac++
		case roleUplink:
			// The garden's uplink carries the portal's answers,
			// which the general way maps back to their VRF
			// (fromPortalVRF).
			if isp := pt.isp[vlan]; isp != binding.GardenVRF {
				p.role[i], p.fibKeys[i], p.laneL3[i] = roleLaneDown, fib.Key(isp, binary.BigEndian.Uint32(f[l3+16:l3+20])), uint8(l3)
				nfib++
			}
		}
	}
	return nmac, nfib
}

// mtus is every port's MTU (State.mtu) as it is now, for a lane pass to
// read once a batch rather than atomically per frame.
func (s *State) mtus() (m [datapath.MaxPorts]int32) {
	for k := range m {
		m[k] = s.mtu[k].Load()
	}
	return m
}

// laneVLAN is the VLAN of frame f, which laneKeys took with its L3 at l3:
// the tag's VID (18: one 802.1Q tag), or 0 untagged.
func laneVLAN(f []byte, l3 int) uint16 {
	if l3 == 18 {
		return binary.BigEndian.Uint16(f[14:16]) & classifier.MaxVLAN
	}
	return 0
}

// laneIPv4 reads the IPv4 header at l3 in f for laneDowns: it reports
// false unless the datagram is well formed as Decode checks it (within the
// frame, its checksum right, an 8-byte UDP or 20-byte TCP header within
// it; the lane asks 28 bytes of any datagram), is no fragment, has a TTL
// above 1 (the worker decrements it), and has neither port 67 nor 68
// (DHCP is the proxy's, and other datagrams to or from those ports are
// dropped: classifier.TouchesDHCPPort). laneUps makes the same checks
// written out in its loop (laneIPv4Words, laneIPv4OK, and the ports' check
// as in lanePortsOK): a call there spills and reloads the loop's state
// (BenchmarkProcessHot −0.3 ns).
func laneIPv4(f []byte, l3 int) (total int, proto uint8, src, dst uint32, ok bool) {
	if len(f) < l3+28 {
		return 0, 0, 0, 0, false
	}
	ip := (*[28]byte)(f[l3 : l3+28])
	w0, w1, w2 := laneIPv4Words(ip)
	total, proto = int(ip[2])<<8|int(ip[3]), uint8(w1>>8)
	if !laneIPv4OK(w0, w1, w2, total, len(f)-l3) || !lanePortsOK(ip, proto, total) {
		return 0, 0, 0, 0, false
	}
	return total, proto, bits.ReverseBytes32(uint32(w1 >> 32)), bits.ReverseBytes32(w2), true
}

// laneIPv4Words is the IPv4 header ip's first 20 bytes as three
// little-endian words, for laneIPv4OK; the source and destination
// addresses are w1's high half and w2, byte-swapped. Three loads replace
// the field-by-field reads and ChecksumOK's call (BenchmarkProcessHot
// 18.1 → 16.6 ns): the ones' complement sum is the same in either byte
// order.
func laneIPv4Words(ip *[28]byte) (w0, w1 uint64, w2 uint32) {
	return binary.LittleEndian.Uint64(ip[0:8]), binary.LittleEndian.Uint64(ip[8:16]), binary.LittleEndian.Uint32(ip[16:20])
}

// laneIPv4OK checks the header of laneIPv4Words (w0, w1, w2), whose total
// length is total with room bytes from the header to the frame's end: its
// checksum right, no fragment, a TTL above 1, and a total length of at
// least 28 bytes and within the frame.
func laneIPv4OK(w0, w1 uint64, w2 uint32, total, room int) bool {
	// The 64-bit ones' complement sum (its carries added back: the
	// last cannot carry out, w2 being 32 bits), then folded to 32 and
	// to 16 bits by adding each half to the other with a rotate: the
	// carry out of the low half lands in the high half, which is the
	// end-around carry (Linux's csum_fold).
	s, c := bits.Add64(w0, w1, 0)
	s, c = bits.Add64(s, uint64(w2), c)
	s += c
	h := uint32((s + bits.RotateLeft64(s, 32)) >> 32)
	sum := (h + bits.RotateLeft32(h, 16)) >> 16
	// MF and the fragment offset: bytes 6 and 7 but byte 6's top two
	// bits (reserved, DF).
	return !(w0&0xff3f000000000000 != 0 || uint8(w1) <= 1 || total < 28 || total > room || sum != 0xffff)
}

// lanePortsOK checks the transport header of the datagram ip of total
// bytes with protocol proto: a UDP datagram's ports neither 67 nor 68, a
// TCP segment's 20-byte header within the datagram.
func lanePortsOK(ip *[28]byte, proto uint8, total int) bool {
	switch proto {
	case classifier.ProtoUDP:
		sport, dport := binary.BigEndian.Uint16(ip[20:22]), binary.BigEndian.Uint16(ip[22:24])
		return sport != 67 && sport != 68 && dport != 67 && dport != 68
	case classifier.ProtoTCP:
		return total >= 40
	}
	return true
}

// laneUps decides the batch's frames from subscribers that laneKeys took
// (frames and out: the batch's), with their MAC table lookups at hand: for
// each it sets a Forward verdict to the subscriber's ISP and marks it
// roleLaneDone; it leaves the others (roleLaneUp), having written nothing,
// for the general way. It returns how many it decided.
func (p *Processor) laneUps(pt *port, frames [][]byte, out []datapath.Verdict) (n uint64) {
	ups := &p.up.ISP
	// No garden: no portal, and a datagram with protocol 0 to address
	// 0 is no unicast one.
	portal, tcpPortal := uint32(0), uint8(0)
	if p.garden != nil {
		portal, tcpPortal = p.garden.portal, classifier.ProtoTCP
	}
	out = out[:len(frames)]
	// The ports' MTUs once a batch, not an atomic load per frame (with
	// the uplink's readiness below, BenchmarkProcessHot −0.7 ns).
	mtus := p.s.mtus()
	for i, f := range frames {
		if p.role[i] != roleLaneUp || !p.found[i] {
			continue
		}
		sub := classifier.UnpackSub(p.vals[i])
		if sub.Flags&classifier.FlagBound == 0 || sub.ISP >= binding.GardenVRF {
			continue // the walled garden's (gardenPass), or no ISP's
		}
		// laneIPv4, written out (see there).
		l3 := int(p.laneL3[i])
		if len(f) < l3+28 {
			continue
		}
		ip := (*[28]byte)(f[l3 : l3+28])
		w0, w1, w2 := laneIPv4Words(ip)
		total, proto := int(ip[2])<<8|int(ip[3]), uint8(w1>>8)
		src, dst := bits.ReverseBytes32(uint32(w1>>32)), bits.ReverseBytes32(w2)
		if !laneIPv4OK(w0, w1, w2, total, len(f)-l3) {
			continue
		}
		switch proto {
		case classifier.ProtoUDP:
			sport, dport := binary.BigEndian.Uint16(ip[20:22]), binary.BigEndian.Uint16(ip[22:24])
			if sport == 67 || sport == 68 || dport == 67 || dport == 68 {
				continue
			}
		case classifier.ProtoTCP:
			if total < 40 {
				continue
			}
		}
		// From the bound address, to a unicast address that is not
		// the gateway's, and not to the portal (toPortal).
		if src != sub.IP || !unicastAddr(dst) || dst == pt.addr[laneVLAN(f, l3)] || proto == tcpPortal && dst == portal {
			continue
		}
		// Configured and resolved: the uplink's header is set only
		// then (fib.Uplink.L2), one byte read instead of two.
		up := &ups[sub.ISP]
		if up.L2Len == 0 {
			continue
		}
		if mtu := int(mtus[up.Port%datapath.MaxPorts]); mtu != 0 && total > mtu {
			continue
		}
		p.routeL2(&out[i], up.Port, &up.L2, up.L2Len, l3, l3+total)
		p.role[i] = roleLaneDone
		n++
	}
	return n
}

// laneDowns decides the batch's frames from ISPs that laneKeys took
// (frames and out: the batch's), with their FIB lookups at hand, as
// laneUps decides the subscribers': for each it sets a Forward verdict to
// the bound subscriber and marks it roleLaneDone; it leaves the others
// (roleLaneDown), having written nothing, for the general way (one laneIPv4
// refuses, not routed, to our uplink address, from an ISP not configured,
// or over the egress port's MTU). It returns how many it decided.
//
// It was laneDown, a call per frame from Process's general pass, reading
// an MTU atomically per frame. One loop, against that, in one test binary
// (BenchmarkPipelineDown's generator, the two switched every 4096 packets,
// 600 pairs, the host's load average about 10): the median of the paired
// differences −2.8 to −3.8 ns per packet at 1K and −2.9 to −3.5 at 1M
// (3 runs each; quartiles about ±10).
func (p *Processor) laneDowns(pt *port, frames [][]byte, out []datapath.Verdict) (n uint64) {
	ups := &p.up.ISP
	out = out[:len(frames)]
	mtus := p.s.mtus() // once a batch, as laneUps
	for i, f := range frames {
		if p.role[i] != roleLaneDown || !p.ffound[i] {
			continue
		}
		l3 := int(p.laneL3[i])
		total, _, _, dst, ok := laneIPv4(f, l3)
		if !ok {
			continue
		}
		isp := pt.isp[laneVLAN(f, l3)]
		if int(isp) >= len(ups) {
			continue
		}
		if up := &ups[isp]; !up.Configured || dst == up.Addr {
			continue
		}
		d := fib.UnpackDest(p.fvals[i])
		egress := d.Port % datapath.MaxPorts
		if mtu := int(mtus[egress]); mtu != 0 && total > mtu {
			continue
		}
		p.route(&out[i], d.Port, d.MAC, p.s.ports[egress].mac, d.VLAN, l3, l3+total)
		p.role[i] = roleLaneDone
		n++
	}
	return n
}

// laneDecoded decodes frame i (f), which laneKeys took and the lane left to
// the general way, and reports whether it decoded; if not, it drops it
// with the reason. The first pass keyed it as it keys a decoded frame (IPv4
// to our MAC: the subscriber's MAC, or the ISP's VRF and the destination),
// so the lookup's result serves fromSubscriber or fromISP as it is.
func (p *Processor) laneDecoded(in uint8, i int, f []byte, out *datapath.Verdict) bool {
	if r := p.pkts[i].Decode(f); r != classifier.ReasonNone {
		p.drop(in, out, r)
		return false
	}
	return true
}

// laneOn turns the lane on; tests turn it off to compare.
var laneOn = true
