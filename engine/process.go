package engine

import (
	"math/bits"
	"math/rand/v2"
	"time"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
)

const (
	etherTypeIPv4 = 0x0800
	arpRequest    = 1
	arpReply      = 2
	broadcastMAC  = 0xffffffffffff
)

// Processor is one worker's engine: it implements datapath.Handler. It is
// not safe for concurrent use; each worker owns one.
type Processor struct {
	s *State

	// Per-batch scratch: decoded headers, each frame's role and table
	// keys, and the batch lookups' results.
	pkts    [datapath.MaxBatch]classifier.Packet
	role    [datapath.MaxBatch]uint8
	macKeys [datapath.MaxBatch]uint64
	vals    [datapath.MaxBatch]uint64
	found   [datapath.MaxBatch]bool
	fibKeys [datapath.MaxBatch]uint64
	fvals   [datapath.MaxBatch]uint64
	ffound  [datapath.MaxBatch]bool
	laneL3  [datapath.MaxBatch]uint8 // the lane's frames' L3 offset (lane.go)

	touchSink byte // touchFrames' result: stored, so its loads are kept

	// Per-iteration views, loaded once per batch.
	mac *classifier.MACView
	fib *fib.TableView
	up  *fib.UplinkSet
	// garden is the walled garden's configuration (nil: none), loaded
	// once per batch: every frame of a batch sees the same garden.
	garden *garden

	// Counters since the last Flush, per ingress port.
	drops      [datapath.MaxPorts]classifier.Counters
	dirty      [datapath.MaxPorts]uint32 // bit r: drops[p][r] changed
	upN, downN [datapath.MaxPorts]uint64
	arpN, punN [datapath.MaxPorts]uint64
	echoN      [datapath.MaxPorts]uint64
	icmpN      [datapath.MaxPorts]uint64
	dnsN, rstN [datapath.MaxPorts]uint64 // walled garden: DNS answers, TCP resets
	httpN      [datapath.MaxPorts]uint64 // walled garden: HTTP redirects (gardenhttp.go)
	hsN        [datapath.MaxPorts]uint64 // walled garden: the HTTP redirect's SYN-ACKs and ACKs of FINs
	// ICMP errors refused, per ingress port: at a subscriber's share
	// and at the port's budget (replies.go, icmpError).
	icmpSubLimN, icmpPortLimN [datapath.MaxPorts]uint64
	// ICMP error rate limit per ingress port: tokens and last refill.
	icmpTokens [datapath.MaxPorts]float64
	icmpLast   [datapath.MaxPorts]int64
	// Each subscriber's share of it (budgets.go): icmpSubSlots buckets,
	// a subscriber's two chosen by keyed hashes of its circuit and MAC
	// (icmpSlots).
	icmpSubTokens [icmpSubSlots]float64
	icmpSubLast   [icmpSubSlots]int64
	icmpSeed      uint64
	// Sample of unregistered MACs' ARP requests for the gateway
	// answered, per ingress port (subscriber.go).
	unknownARPTokens [datapath.MaxPorts]float64
	unknownARPLast   [datapath.MaxPorts]int64
	// Sample of unregistered DHCP passed to the proxy, per ingress port.
	unregTokens [datapath.MaxPorts]float64
	unregLast   [datapath.MaxPorts]int64
	// Each circuit's share of that sample (budgets.go): unregCircuitSlots
	// buckets, a circuit's two chosen by keyed hashes of its port and
	// VLAN (unregCircuit).
	unregCTokens [unregCircuitSlots]float64
	unregCLast   [unregCircuitSlots]int64
	circuitSeed  uint64
	// Budget of subscribers' ARP replies passed to the proxy (answers to
	// its probes), per subscriber: arpSlots buckets, a subscriber's
	// chosen by a keyed hash of its circuit and MAC (arpSlot).
	arpTokens [arpSlots]float64
	arpLast   [arpSlots]int64
	arpSeed   uint64
	// Budget of DHCP passed to the proxy per subscriber: dhcpSlots
	// buckets, a subscriber's two chosen by keyed hashes of its circuit
	// and MAC (dhcpSlot, dhcpSlot2).
	dhcpTokens [dhcpSlots]float64
	dhcpLast   [dhcpSlots]int64
	touched    uint32 // bit p: port p has counts to flush
}

// NewProcessor returns a processor for one worker.
func (s *State) NewProcessor() *Processor {
	return &Processor{s: s, arpSeed: rand.Uint64(), circuitSeed: rand.Uint64(), icmpSeed: rand.Uint64()}
}

var _ datapath.Handler = (*Processor)(nil)

func (p *Processor) drop(in uint8, out *datapath.Verdict, r classifier.Reason) {
	out.Action = datapath.Drop
	p.drops[in][r]++
	p.dirty[in] |= 1 << r
	p.touched |= 1 << in
}

// dropFrom is drop for a frame a subscriber sent, from MAC mac, for a
// reason the operator traces to a device (a spoofer, a flood): the port's
// last such drop keeps the MAC and the time (State.LastFrom), which a
// counter cannot say. Not on the forwarding path: a drop's cost.
//
// Every worker writes the same entry: under a flood of such frames (the
// case it is for, random MACs included) it is written at most once a
// millisecond, so the workers do not take its cache line from each other
// frame by frame (reviews); "last" is then the last to a millisecond.
func (p *Processor) dropFrom(in uint8, out *datapath.Verdict, r classifier.Reason, mac uint64) {
	p.drop(in, out, r)
	l := &p.s.lastFrom[in%datapath.MaxPorts][r]
	now := nanotime() + 1 // never 0
	if now-l.at.Load() < int64(time.Millisecond) {
		return
	}
	l.mac.Store(mac)
	l.at.Store(now)
}

// TxDropped counts, by ingress port, frames this processor forwarded that
// the worker could not send (datapath.TxDropCounter): they stay counted as
// forwarded (up/down) too, since the engine did route them.
func (p *Processor) TxDropped(in uint8, why datapath.TxDrop, n int) {
	r := classifier.ReasonTxFull
	switch why {
	case datapath.TxNoFrame:
		r = classifier.ReasonNoTxFrame
	case datapath.TxPortError:
		r = classifier.ReasonPortError
	}
	in %= datapath.MaxPorts
	p.drops[in][r] += uint64(n)
	p.dirty[in] |= 1 << r
	p.touched |= 1 << in
}

var _ datapath.TxDropCounter = (*Processor)(nil)

// Process decides every frame of one batch, in three passes after a read
// of every frame's first byte (touchFrames: the batch's cache misses in
// flight together): compute the table key each frame needs, from its
// bytes for the frames the lane may take (laneKeys, lane.go), else from
// its decoded headers (touching each frame's headers once); look all keys
// up in one batch per table (the table misses overlap too, see
// lfmap.View.LookupBatch); then decide each frame with its lookup result
// at hand, the lane's frames by the lane where it can (laneUps, laneDowns)
// and the general way where it cannot.
func (p *Processor) Process(b *datapath.Batch) {
	p.mac = p.s.MAC.View()
	p.fib = p.s.FIB.View()
	p.up = p.s.Up.Load()
	p.garden = p.s.garden.Load()
	in := b.Port
	if int(in) >= len(p.s.ports) {
		for i := range b.Out {
			p.drop(in%datapath.MaxPorts, &b.Out[i], classifier.ReasonUnknownInterface)
		}
		return
	}
	pt := &p.s.ports[in]
	n := len(b.Frames)
	p.touchFrames(b.Frames)
	var nmac, nfib int
	if laneOn {
		nmac, nfib = p.laneKeys(pt, in, b.Frames)
	} else {
		clear(p.role[:n])
	}
	if nmac+nfib < n { // else every frame is the lane's
		for i, f := range b.Frames {
			if p.role[i] != roleNone {
				continue // the lane's
			}
			pkt := &p.pkts[i]
			p.macKeys[i], p.fibKeys[i], p.role[i] = 0, 0, roleNone
			if r := pkt.Decode(f); r != classifier.ReasonNone {
				p.drop(in, &b.Out[i], r)
				continue
			}
			vlan := pkt.VLAN & 0xfff
			switch pt.role[vlan] {
			case roleAccess:
				p.role[i] = roleAccess
				if pkt.Kind == classifier.KindARP || pkt.Kind == classifier.KindIPv4 && pkt.Dst == pt.mac {
					p.macKeys[i] = classifier.Key(in, vlan, pkt.Src)
					nmac++
				}
			case roleUplink:
				p.role[i] = roleUplink
				isp := pt.isp[vlan]
				switch {
				case pkt.Kind == classifier.KindIPv4 && pkt.Dst == pt.mac:
					if isp == binding.GardenVRF {
						if vrf, ok := fromPortalVRF(pkt); ok {
							isp = vrf // the portal answering a bound subscriber
						}
					}
					p.fibKeys[i] = fib.Key(isp, pkt.DstIP)
					nfib++
				case pkt.Kind == classifier.KindARP && pkt.ARPOp == arpRequest:
					p.fibKeys[i] = fib.Key(isp, pkt.TPA)
					nfib++
				}
			default:
				p.drop(in, &b.Out[i], classifier.ReasonUnknownInterface)
			}
		}
	}
	if nmac > 0 {
		p.mac.LookupBatch(p.macKeys[:n], p.vals[:n], p.found[:n])
	}
	if nfib > 0 {
		// A port is access or uplink per VLAN: a frame needs one table
		// at most (its other key is 0, never read).
		p.fib.LookupBatch(p.fibKeys[:n], p.fvals[:n], p.ffound[:n])
	}
	var up, down uint64 // routed frames, counted once per batch
	if nmac > 0 && laneOn {
		up = p.laneUps(pt, b.Frames, b.Out)
	}
	if nfib > 0 && laneOn {
		down = p.laneDowns(pt, b.Frames, b.Out)
	}
	if up+down < uint64(n) { // else the lane decided every frame
		for i, f := range b.Frames {
			switch p.role[i] {
			// A frame the lane leaves goes the general way with the
			// same key and lookup (laneDecoded); roleLaneDone, one
			// laneUps or laneDowns decided, has its verdict.
			case roleLaneUp:
				if p.laneDecoded(in, i, f, &b.Out[i]) && p.fromSubscriber(in, pt, i, f, &b.Out[i]) {
					up++
				}
			case roleLaneDown:
				if p.laneDecoded(in, i, f, &b.Out[i]) && p.fromISP(in, pt, i, f, &b.Out[i]) {
					down++
				}
			case roleAccess:
				if p.fromSubscriber(in, pt, i, f, &b.Out[i]) {
					up++
				}
			case roleUplink:
				if p.fromISP(in, pt, i, f, &b.Out[i]) {
					down++
				}
			}
		}
	}
	if up|down != 0 {
		p.upN[in] += up
		p.downN[in] += down
		p.touched |= 1 << in
	}
}

// touchFrames reads the first byte of every frame before any is decoded:
// loads that depend on nothing and on one another, so the CPU has the
// batch's cache misses in flight together. A received frame's first read
// is a miss: the kernel wrote it on another CPU (AF_XDP copy mode: the
// sender's softirq; zero-copy: the NIC's DMA). The key pass alone, whose
// work per frame depends on what it reads, overlapped few of them: in
// bench forward's lab (256 sources, 100k pps) the engine's share of
// ispmux's profile fell from 97–127 to 69–87 ns per packet with this
// pass (docs/PERFORMANCE.md). A 60-byte frame at the start of a 64-byte
// aligned chunk is one cache line; a longer frame's next lines are read
// later, as before.
func (p *Processor) touchFrames(frames [][]byte) {
	var x byte
	for _, f := range frames {
		if len(f) > 0 {
			x ^= f[0]
		}
	}
	p.touchSink = x
}

// Flush publishes the counters gathered since the last call.
func (p *Processor) Flush() {
	for p.touched != 0 {
		in := bits.TrailingZeros32(p.touched)
		p.touched &^= 1 << in
		st := p.s.stats[in]
		for d := p.dirty[in]; d != 0; {
			r := bits.TrailingZeros32(d)
			d &^= 1 << r
			st.drops[r].Add(p.drops[in][r])
			p.drops[in][r] = 0
		}
		p.dirty[in] = 0
		if n := p.upN[in]; n != 0 {
			st.up.Add(n)
			p.upN[in] = 0
		}
		if n := p.downN[in]; n != 0 {
			st.down.Add(n)
			p.downN[in] = 0
		}
		if n := p.arpN[in]; n != 0 {
			st.arpReplies.Add(n)
			p.arpN[in] = 0
		}
		if n := p.punN[in]; n != 0 {
			st.punts.Add(n)
			p.punN[in] = 0
		}
		if n := p.echoN[in]; n != 0 {
			st.echoReplies.Add(n)
			p.echoN[in] = 0
		}
		if n := p.icmpN[in]; n != 0 {
			st.icmpErrors.Add(n)
			p.icmpN[in] = 0
		}
		if n := p.icmpSubLimN[in]; n != 0 {
			st.icmpLimited[ICMPBudgetSubscriber].Add(n)
			p.icmpSubLimN[in] = 0
		}
		if n := p.icmpPortLimN[in]; n != 0 {
			st.icmpLimited[ICMPBudgetPort].Add(n)
			p.icmpPortLimN[in] = 0
		}
		if n := p.dnsN[in]; n != 0 {
			st.dnsAnswers.Add(n)
			p.dnsN[in] = 0
		}
		if n := p.rstN[in]; n != 0 {
			st.gardenResets.Add(n)
			p.rstN[in] = 0
		}
		if n := p.httpN[in]; n != 0 {
			st.gardenRedirects.Add(n)
			p.httpN[in] = 0
		}
		if n := p.hsN[in]; n != 0 {
			st.gardenHandshake.Add(n)
			p.hsN[in] = 0
		}
	}
}
