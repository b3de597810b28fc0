package engine

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"time"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/oatable"
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
	// ICMP error rate limit per ingress port: tokens and last refill.
	icmpTokens [datapath.MaxPorts]float64
	icmpLast   [datapath.MaxPorts]int64
	// Sample of unregistered DHCP passed to the proxy, per ingress port.
	unregTokens [datapath.MaxPorts]float64
	unregLast   [datapath.MaxPorts]int64
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
func (s *State) NewProcessor() *Processor { return &Processor{s: s, arpSeed: rand.Uint64()} }

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

// punt copies the frame's datagram to the control plane (puntCopy) and
// consumes the frame, or drops it with the reason it could not be copied.
func (p *Processor) punt(in uint8, out *datapath.Verdict, pkt *classifier.Packet, frame []byte) {
	if why := p.puntCopy(in, pkt, frame); why != classifier.ReasonNone {
		p.drop(in, out, why)
		return
	}
	out.Action = datapath.Consumed
}

// puntCopy puts the frame's datagram (puntFrame) on the punt queue and
// counts it, or says why it could not: too big for the punt path (not the
// queue's fault) or the queue full.
func (p *Processor) puntCopy(in uint8, pkt *classifier.Packet, frame []byte) classifier.Reason {
	frame = puntFrame(pkt, frame)
	if len(frame) > MaxPuntFrame {
		return classifier.ReasonTooBig
	}
	if !p.s.Punts.put(in, frame) {
		return classifier.ReasonPuntQueueFull
	}
	p.punN[in]++
	p.touched |= 1 << in
	return classifier.ReasonNone
}

// puntFrame is the part of frame the control plane needs: the headers and
// the IPv4 datagram or ARP packet, without the Ethernet padding or
// trailing bytes Decode accepted after it.
func puntFrame(pkt *classifier.Packet, frame []byte) []byte {
	end := len(frame)
	switch pkt.Kind {
	case classifier.KindIPv4:
		end = pkt.L3 + pkt.TotalLen
	case classifier.KindARP:
		end = pkt.L3 + fib.ARPLen
	}
	return frame[:min(end, len(frame))]
}

// Process decides every frame of one batch, in three passes: compute the
// table key each frame needs, from its bytes for a frame the lane may take
// (laneKey, lane.go), else from its decoded headers (touching each frame's
// headers once, independent loads the CPU overlaps); look all keys up in
// one batch per table (the table misses overlap too, see
// lfmap.View.LookupBatch); then decide each frame with its lookup result
// at hand, the lane's frames by the lane where it can (laneUp, laneDown)
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
	var nmac, nfib int
	for i, f := range b.Frames {
		if role, key, l3 := laneKey(pt, in, f); role != roleNone && laneOn {
			p.role[i], p.laneL3[i] = role, l3
			if role == roleLaneUp {
				p.macKeys[i], p.fibKeys[i] = key, 0
				nmac++
			} else {
				p.macKeys[i], p.fibKeys[i] = 0, key
				nfib++
			}
			continue
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
	if nmac > 0 {
		p.mac.LookupBatch(p.macKeys[:n], p.vals[:n], p.found[:n])
	}
	if nfib > 0 {
		// A port is access or uplink per VLAN: a frame needs one table
		// at most, so the two batches share the result arrays.
		p.fib.LookupBatch(p.fibKeys[:n], p.fvals[:n], p.ffound[:n])
	}
	var up, down uint64 // routed frames, counted once per batch
	for i, f := range b.Frames {
		switch p.role[i] {
		// A frame the lane leaves goes the general way with the same
		// key and lookup (laneDecoded).
		case roleLaneUp:
			if p.laneUp(pt, i, f, &b.Out[i]) || p.laneDecoded(in, i, f, &b.Out[i]) && p.fromSubscriber(in, pt, i, f, &b.Out[i]) {
				up++
			}
		case roleLaneDown:
			if p.laneDown(pt, i, f, &b.Out[i]) || p.laneDecoded(in, i, f, &b.Out[i]) && p.fromISP(in, pt, i, f, &b.Out[i]) {
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
	if up|down != 0 {
		p.upN[in] += up
		p.downN[in] += down
		p.touched |= 1 << in
	}
}

// ipOptions says why the IPv4 datagram pkt (frame f) is not routed for
// its header options (ReasonNone: it is): a loose or strict source route
// (LSRR 131, SSRR 137), which RFC 7126 §4.3 and §4.4 have routers drop by
// default (a sender choosing the path through an ISP's network), or
// options that do not parse (ReasonIPOptions too: a router parsing them
// would refuse the datagram). Only a header longer than 20 bytes has any;
// the lane and the XDP fast path take 20-byte headers only.
func ipOptions(pkt *classifier.Packet, f []byte) classifier.Reason {
	if pkt.IHL <= 20 {
		return classifier.ReasonNone
	}
	o := f[pkt.L3+20 : pkt.L3+pkt.IHL]
	for i := 0; i < len(o); {
		switch o[i] {
		case 0: // end of the option list
			return classifier.ReasonNone
		case 1: // no operation
			i++
			continue
		case 131, 137:
			return classifier.ReasonIPOptions
		}
		if i+1 >= len(o) || o[i+1] < 2 || i+int(o[i+1]) > len(o) {
			return classifier.ReasonIPOptions
		}
		i += int(o[i+1])
	}
	return classifier.ReasonNone
}

// fromSubscriber handles a decoded frame received on an access VLAN. It
// reports whether it routed the frame to an uplink (Process counts those).
func (p *Processor) fromSubscriber(in uint8, pt *port, i int, f []byte, out *datapath.Verdict) (routed bool) {
	pkt := &p.pkts[i]
	sub := classifier.UnpackSub(p.vals[i])
	bound := p.macKeys[i] != 0 && p.found[i] && sub.Flags&classifier.FlagBound != 0
	switch pkt.Kind {
	case classifier.KindIPv4:
		if classifier.IsDHCP(pkt) && pkt.DstPort == 67 {
			// A MAC's own budget first (an unregistered one's messages
			// cost unregCost: one device cannot spend the port's sample
			// of unregistered MACs, which new devices onboard through),
			// then the port's sample; the MAC's budget is spent only
			// for a message punted (a flood of made-up MACs the sample
			// drops spends nobody's buckets).
			registered := bound || !p.s.admitOn.Load() || p.isAdmitted(pkt.Src)
			b, cost, ok := p.dhcpBudget(classifier.Key(in, pkt.VLAN&0xfff, pkt.Src), !registered)
			if !ok {
				p.dropFrom(in, out, classifier.ReasonDHCPFlood, pkt.Src)
				return
			}
			if !registered && !takeToken(&p.unregTokens[in], &p.unregLast[in], unregRate, unregBurst) {
				p.drop(in, out, classifier.ReasonUnregisteredDHCP)
				return
			}
			p.dhcpTokens[b] -= cost
			p.punt(in, out, pkt, f)
			return
		}
		if pkt.Dst != pt.mac {
			if pkt.Dst&(1<<40) != 0 { // group bit: broadcast or multicast
				p.dropFrom(in, out, classifier.ReasonL2Broadcast, pkt.Src)
			} else {
				p.dropFrom(in, out, classifier.ReasonSubscriberToSubscriber, pkt.Src)
			}
			return
		}
		if !bound {
			p.dropFrom(in, out, classifier.ReasonUnknownMAC, pkt.Src)
			return
		}
		if pkt.SrcIP != sub.IP {
			p.dropFrom(in, out, classifier.ReasonSpoofedSource, pkt.Src)
			return
		}
		if sub.ISP == binding.GardenVRF && !p.gardenPass(in, pt, out, pkt, f) {
			return // walled garden: answered in place or dropped (garden.go)
		}
		if r := ipOptions(pkt, f); r != classifier.ReasonNone {
			p.dropFrom(in, out, r, pkt.Src)
			return
		}
		if !unicastAddr(pkt.DstIP) {
			// The limited broadcast, multicast (link-local 224.0.0/24
			// included) and the like: a router does not forward them
			// (RFC 1812 §5.3.5.1, RFC 5771 §4), and ispmux routes
			// no multicast.
			p.dropFrom(in, out, classifier.ReasonNotUnicast, pkt.Src)
			return
		}
		if a := pt.addr[pkt.VLAN&0xfff]; a != 0 && pkt.DstIP == a {
			// To the gateway itself: answer a ping, nothing else.
			if !p.answerEcho(in, out, pkt, f, pt.mac) {
				p.drop(in, out, classifier.ReasonNotForUs)
			}
			return
		}
		vrf := sub.ISP
		portal := p.toPortal(vrf, pkt)
		if portal {
			vrf = binding.GardenVRF // the portal, not the ISP (portalpath.go)
		}
		up := p.up.Get(vrf)
		if up == nil || !up.Configured || !up.Resolved {
			p.drop(in, out, classifier.ReasonNoNextHop)
			return
		}
		if mtu := int(p.s.mtu[up.Port%datapath.MaxPorts].Load()); mtu != 0 && pkt.TotalLen > mtu {
			p.tooBig(in, out, pkt, f, pt.mac, pt.addr[pkt.VLAN&0xfff], mtu)
			return
		}
		if pkt.TTL <= 1 { // the worker decrements it (route)
			p.drop(in, out, classifier.ReasonTTLExpired)
			p.timeExceeded(in, out, pkt, f, pt.mac, pt.addr[pkt.VLAN&0xfff])
			return
		}
		if portal {
			portalRewrite(sub.ISP, pkt, f)
		}
		p.routeL2(out, up.Port, &up.L2, up.L2Len, pkt.L3, pkt.L3+pkt.TotalLen)
		return true

	case classifier.KindARP:
		if !bound {
			// A registered subscriber without a binding (ispmux lost
			// its state, or a lease is being renewed after a reload)
			// must reach its gateway to unicast its RENEW: its
			// request for the gateway's address is answered.
			gw := pt.addr[pkt.VLAN&0xfff]
			if pkt.ARPOp == arpRequest && gw != 0 && pkt.TPA == gw && pkt.SHA == pkt.Src &&
				p.s.admitOn.Load() && p.isAdmitted(pkt.Src) {
				p.answerARP(in, out, pkt, f, pt.mac)
				return
			}
			p.dropFrom(in, out, classifier.ReasonUnknownMAC, pkt.Src)
			return
		}
		if pkt.SHA != pkt.Src {
			p.dropFrom(in, out, classifier.ReasonSpoofedSource, pkt.Src)
			return
		}
		switch {
		case pkt.ARPOp == arpReply && pkt.Dst == pt.mac:
			p.probeReply(in, pt, out, pkt, f, sub.IP, p.macKeys[i])
		case pkt.ARPOp != arpRequest:
			p.drop(in, out, classifier.ReasonARPIgnored)
		case pkt.SPA == 0 || pkt.SPA == pkt.TPA || pkt.TPA == sub.IP:
			// Address probes and announcements (RFC 5227) and requests
			// for the subscriber's own address get no answer.
			p.drop(in, out, classifier.ReasonARPIgnored)
		case pkt.SPA != sub.IP:
			// From another address than its binding's: its request for
			// the gateway (the DHCP server) is answered all the same,
			// so that it can unicast the RENEW that puts it right (a
			// NAK, then a DORA): a client whose address changed while
			// ispmux's binding did not (a store restored from an older
			// backup) was otherwise cut off until that binding expired
			// (a new-user trial). Its IP traffic from that address is
			// still spoofed_source; only our MAC is told.
			if gw := pt.addr[pkt.VLAN&0xfff]; gw != 0 && pkt.TPA == gw {
				p.answerARP(in, out, pkt, f, pt.mac)
				return
			}
			p.dropFrom(in, out, classifier.ReasonSpoofedSource, pkt.Src)
		default:
			p.answerARP(in, out, pkt, f, pt.mac)
		}

	default:
		p.drop(in, out, classifier.ReasonUnsupportedEtherType)
	}
	return false
}

// probeReply punts a bound subscriber's ARP reply to our MAC (in the
// ARP header too) for its bound address ip, to its circuit's gateway
// address: the answer to the DHCP proxy's probe of a binding another
// circuit claims (dhcpproxy/probes.go). Within the subscriber's budget
// (arpPuntRate); any other reply is dropped, as ispmux asks subscribers
// nothing else.
func (p *Processor) probeReply(in uint8, pt *port, out *datapath.Verdict, pkt *classifier.Packet, f []byte, ip uint32, key uint64) {
	gw := pt.addr[pkt.VLAN&0xfff]
	if pkt.THA != pt.mac || gw == 0 || pkt.TPA != gw || pkt.SPA != ip {
		p.drop(in, out, classifier.ReasonARPIgnored)
		return
	}
	i := p.arpSlot(key)
	if !takeToken(&p.arpTokens[i], &p.arpLast[i], arpPuntRate, arpPuntBurst) {
		p.drop(in, out, classifier.ReasonARPIgnored)
		return
	}
	p.punt(in, out, pkt, f)
}

// arpSlot is the reply budget's bucket of the subscriber whose MAC table
// key is key.
func (p *Processor) arpSlot(key uint64) uint64 { return oatable.Mix64(key^p.arpSeed) % arpSlots }

// dhcpSlot is the DHCP budget's first bucket of the subscriber whose MAC
// table key is key (its circuit and MAC; the same seed as arpSlot's).
func (p *Processor) dhcpSlot(key uint64) uint64 { return oatable.Mix64(key^p.arpSeed) % dhcpSlots }

// dhcpSlot2 is its second bucket: the same keyed hash's high half.
func (p *Processor) dhcpSlot2(key uint64) uint64 {
	return (oatable.Mix64(key^p.arpSeed) >> 32) % dhcpSlots
}

// dhcpBudget returns the fuller of the two buckets of the subscriber whose
// MAC table key is key (each refilled at half its rate, up to half its
// burst), and whether it holds cost tokens (1 for a registered
// subscriber's message, unregCost for an unregistered MAC's); the caller
// takes them (p.dhcpTokens[b] -= cost) once the message is punted. A cost
// above a bucket (half the burst) needs a full one, which it leaves in
// debt: capped at a bucket, the cost let an unregistered MAC past its 4 a
// second once the rate was raised past four times the burst (62 a second
// at mac_rate 1000 and mac_burst 8). A subscriber
// alone on its buckets gets the whole budget (dhcpPuntRate and
// dhcpPuntBurst, or what Control.SetDHCPBudget set); a flood
// drains its own two, and a neighbour hashed to one of them still has its
// other: only one whose two buckets are both a flood's (one in 8 million
// per flood at 4096 buckets) goes without. One whose two hashes fall on
// the same bucket (one in 4096) has half the budget, still far above any
// client's.
func (p *Processor) dhcpBudget(key uint64, unregistered bool) (b uint64, cost float64, ok bool) {
	rate, burst, cost := float64(dhcpPuntRate), float64(dhcpPuntBurst), 1.0
	if unregistered {
		cost = unregCost
	}
	if bg := p.s.dhcpRate.Load(); bg != nil {
		rate, burst = bg.rate, bg.burst
		if unregistered {
			cost = bg.unregCost
		}
	}
	i, j := p.dhcpSlot(key), p.dhcpSlot2(key)
	refill(&p.dhcpTokens[i], &p.dhcpLast[i], rate/2, burst/2)
	refill(&p.dhcpTokens[j], &p.dhcpLast[j], rate/2, burst/2)
	if p.dhcpTokens[j] > p.dhcpTokens[i] {
		i = j
	}
	return i, cost, p.dhcpTokens[i] >= min(cost, burst/2)
}

// Subscribers' DHCP punted per subscriber and worker. The port's punt
// queue (puntPerPort frames) carries every subscriber's DHCP on that port:
// one sending DHCP as fast as its link allows, with its own MAC or a
// registered neighbour's it forged, filled it faster than the proxy
// drained it, and every other subscriber's DISCOVER and REQUEST on the
// port was dropped (punt_queue_full) until it stopped. Now each
// subscriber (its circuit and MAC, hashed to one of dhcpSlots buckets with
// a key drawn per worker, so that it cannot pick a neighbour's) has a
// budget far above any client's (a DORA is two messages; the proxy's own
// per-MAC limit, [dhcp] mac_rate, is a few a second) and below what fills
// the queue; past it, dhcp_flood. The budget is two buckets of half of
// it each, at two keyed hashes, the fuller spent (dhcpBudget): with one,
// a flood spent the budget of every subscriber hashed to its bucket (one
// in dhcpSlots: 24 of 100,000 on a worker), whose DHCP was all dropped
// while it lasted; with two, a neighbour sharing one of a flood's buckets
// goes through its other.
const (
	dhcpPuntRate  = 32 // per second
	dhcpPuntBurst = 64
	dhcpSlots     = 4096
)

// Unregistered DHCP sampled per ingress port and worker: enough for the
// proxy to record who asked (it keeps one event per MAC a minute anyway),
// and to onboard new devices into the walled garden. Each unregistered
// MAC's message costs unregCost of its own DHCP budget first (dhcpBudget:
// 4/s, a burst of 8 at the default budget): a DORA and its
// retransmissions fit, and one broken or hostile device repeating
// DISCOVERs cannot spend the port's sample on its own (made-up MACs
// still can: that is what the sample is for). Only a message the sample
// passes spends its MAC's budget: the buckets are the registered
// subscribers' too, and a flood of made-up MACs, each message charged,
// drained every bucket of the worker below unregCost.
const (
	unregRate  = 20 // per second
	unregBurst = 20
	unregCost  = 8
)

// Subscribers' ARP replies punted per subscriber and worker: the proxy
// sends a circuit at most a few probes a second (dhcpproxy/probes.go),
// and a subscriber flooding replies must not fill the port's punt queue,
// which carries its neighbours' DHCP. The budget is each subscriber's
// (its circuit and MAC, hashed to one of arpSlots buckets with a key
// drawn per worker, so a subscriber cannot pick a neighbour's): one
// flooding replies for its own address does not spend its neighbours'
// answers, which would make the proxy take them for gone and let
// another circuit's claim take their binding over. A per-port budget
// did, and dropped answers past it when many circuits of a port were
// probed at once.
const (
	arpPuntRate  = 4 // per second
	arpPuntBurst = 8
	arpSlots     = 1024
)

// isAdmitted reports whether mac is a registered subscriber's.
func (p *Processor) isAdmitted(mac uint64) bool {
	_, ok := p.s.Admitted.Lookup(mac)
	return ok
}

// takeToken takes a token from the bucket *b (rate per second, up to
// burst) last refilled at *last (nanotime; 0: never, a full bucket), and
// reports whether there was one.
func takeToken(b *float64, last *int64, rate, burst float64) bool {
	refill(b, last, rate, burst)
	if *b < 1 {
		return false
	}
	*b--
	return true
}

// refill adds to the bucket *b (rate per second, up to burst) the tokens
// due since *last (nanotime; 0: never, a full bucket).
func refill(b *float64, last *int64, rate, burst float64) {
	now := nanotime() + 1 // never 0
	if *last == 0 {
		*b = burst
	} else {
		*b = min(burst, *b+float64(now-*last)*rate/1e9)
	}
	*last = now
}

// fromISP handles a decoded frame received on the uplink VLAN of ISP isp.
// It reports whether it routed the frame to a subscriber (Process counts
// those).
func (p *Processor) fromISP(in uint8, pt *port, i int, f []byte, out *datapath.Verdict) (routed bool) {
	pkt := &p.pkts[i]
	isp := pt.isp[pkt.VLAN&0xfff]
	d, known := fib.UnpackDest(p.fvals[i]), p.ffound[i] && p.fibKeys[i] != 0
	up := p.up.Get(isp)
	if up == nil || !up.Configured {
		p.drop(in, out, classifier.ReasonUnknownInterface)
		return
	}
	switch pkt.Kind {
	case classifier.KindIPv4:
		if pkt.Dst != pt.mac {
			if pkt.Dst&(1<<40) != 0 && classifier.IsDHCP(pkt) {
				p.punt(in, out, pkt, f)
			} else {
				p.drop(in, out, classifier.ReasonNotForUs)
			}
			return
		}
		if pkt.DstIP == up.Addr {
			switch {
			case classifier.IsDHCP(pkt):
				p.punt(in, out, pkt, f) // relay replies to our giaddr
			case pkt.Proto == 1 && pkt.FragOff == 0 && pkt.L4 < len(f) && f[pkt.L4] == 3:
				// Destination unreachable about what we sent (a DHCP
				// server down): the proxy says so in its events.
				p.punt(in, out, pkt, f)
			case !subnetBroadcast(up, pkt.SrcIP) && p.answerEcho(in, out, pkt, f, pt.mac):
				// The ISP pinged our uplink address.
			default:
				p.drop(in, out, classifier.ReasonNotForUs)
			}
			return
		}
		if !known {
			p.drop(in, out, classifier.ReasonNoRoute)
			return
		}
		if pkt.Proto == classifier.ProtoUDP && pkt.SrcPort == classifier.PortDHCPServer &&
			pkt.DstPort == classifier.PortDHCPClient && pkt.FragOff == 0 {
			// A DHCP server answering a subscriber directly (the ACK to
			// an INFORM goes to ciaddr): the proxy answers as the ISP,
			// so the subscriber never sees the ISP's server.
			p.punt(in, out, pkt, f)
			return
		}
		if r := ipOptions(pkt, f); r != classifier.ReasonNone {
			p.drop(in, out, r)
			return
		}
		if mtu := int(p.s.mtu[d.Port%datapath.MaxPorts].Load()); mtu != 0 && pkt.TotalLen > mtu {
			p.tooBig(in, out, pkt, f, pt.mac, up.Addr, mtu)
			return
		}
		if pkt.TTL <= 1 { // the worker decrements it (route)
			p.drop(in, out, classifier.ReasonTTLExpired)
			p.timeExceeded(in, out, pkt, f, pt.mac, up.Addr)
			return
		}
		if isp == binding.GardenVRF {
			if _, ok := fromPortalVRF(pkt); ok {
				portalAnswer(pkt, f) // back to port 80/443 (portalpath.go)
			}
		}
		p.route(out, d.Port, d.MAC, p.s.ports[d.Port%datapath.MaxPorts].mac, d.VLAN, pkt.L3, pkt.L3+pkt.TotalLen)
		return true

	case classifier.KindARP:
		if pkt.SPA == up.Gateway && pkt.SPA != 0 {
			// The ISP router: the resolver learns (or refreshes) its
			// MAC from its replies and its requests; a request is also
			// answered below.
			if pkt.ARPOp != arpRequest {
				p.punt(in, out, pkt, f)
				return
			}
			p.puntCopy(in, pkt, f) // best effort: the answer matters more
		}
		if pkt.ARPOp != arpRequest {
			p.drop(in, out, classifier.ReasonARPIgnored)
			return
		}
		if pkt.TPA == up.Addr {
			p.answerARP(in, out, pkt, f, pt.mac)
			return
		}
		if known && pkt.SPA != pkt.TPA {
			// Proxy ARP for this ISP's bound subscribers: the ISP needs
			// no static route to reach them.
			p.answerARP(in, out, pkt, f, pt.mac)
			return
		}
		p.drop(in, out, classifier.ReasonARPIgnored)

	default:
		p.drop(in, out, classifier.ReasonUnsupportedEtherType)
	}
	return false
}

// route sets a Forward verdict that replaces the L2 header [0:l3] with
// dst/src MACs and the egress VLAN, keeping bytes [l3:end), an IPv4 packet
// whose TTL (checked above 1) the worker decrements as it sends it
// (Verdict.DecTTL). The frame itself is left alone: the worker reads it
// right after, and writing into it here (TTL, checksum, header in place)
// cost ~7 ns per packet (BenchmarkPipeline/1K, 15 interleaved runs: 71.0
// vs 64.1 ns median).
func (p *Processor) route(out *datapath.Verdict, egress uint8, dst, src uint64, vlan uint16, l3, end int) {
	n := fib.WriteL2(out.Hdr[:], dst, src, vlan, vlan != 0, etherTypeIPv4)
	forwardIPv4(out, egress, uint8(n), l3, end)
}

// routeL2 is route with the new L2 header already built (an uplink's, see
// fib.Uplink.L2): one array copy instead of the header's fields.
func (p *Processor) routeL2(out *datapath.Verdict, egress uint8, hdr *[18]byte, hdrLen uint8, l3, end int) {
	out.Hdr = *hdr
	forwardIPv4(out, egress, hdrLen, l3, end)
}

// forwardIPv4 completes route's verdict once out.Hdr holds the new L2
// header of hdrLen bytes.
func forwardIPv4(out *datapath.Verdict, egress, hdrLen uint8, l3, end int) {
	out.Action = datapath.Forward
	out.Port = egress
	out.HdrLen = hdrLen
	out.Strip = uint8(l3)
	out.Len = uint16(end)
	out.DecTTL = true
}

// answerARP turns the request in f into our reply, in place, and sends it
// back out of the port it came from.
func (p *Processor) answerARP(in uint8, out *datapath.Verdict, pkt *classifier.Packet, f []byte, mac uint64) {
	n := fib.ARPReply(f[:cap(f)], mac, pkt.TPA, pkt.SHA, pkt.SPA, pkt.VLAN&0xfff, pkt.Tagged)
	out.Action = datapath.Forward
	out.Port = in
	out.Len = uint16(n)
	p.arpN[in]++
	p.touched |= 1 << in
}

// answerEcho turns an ICMP echo request in f (addressed to us) into our
// echo reply, in place, back out of the port it came from. It reports false
// (and leaves f alone) for anything else.
func (p *Processor) answerEcho(in uint8, out *datapath.Verdict, pkt *classifier.Packet, f []byte, mac uint64) bool {
	const icmp, echoRequest = 1, 8
	l4, end := pkt.L4, pkt.L3+pkt.TotalLen
	if pkt.Proto != icmp || pkt.Frag || end-l4 < 8 || end > len(f) || f[l4] != echoRequest || f[l4+1] != 0 ||
		!unicastAddr(pkt.SrcIP) { // no single host: RFC 1122 §3.2.1.3 (g)
		return false
	}
	fib.PutMAC(f[0:6], pkt.Src)
	fib.PutMAC(f[6:12], mac)
	ip := f[pkt.L3 : pkt.L3+pkt.IHL]
	var a [4]byte
	copy(a[:], ip[12:16])
	copy(ip[12:16], ip[16:20])
	copy(ip[16:20], a[:])
	ip[8] = 64
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], ^fib.Checksum(ip, 0))
	// Type 8 → 0: RFC 1624 incremental update, HC' = ~(~HC + ~m + m').
	f[l4] = 0
	hc := binary.BigEndian.Uint16(f[l4+2:])
	sum := uint32(^hc) + uint32(^uint16(echoRequest<<8)) + 0
	sum = sum&0xffff + sum>>16
	sum = sum&0xffff + sum>>16
	binary.BigEndian.PutUint16(f[l4+2:], ^uint16(sum))
	out.Action = datapath.Forward
	out.Port = in
	out.Len = uint16(end)
	p.echoN[in]++
	p.touched |= 1 << in
	return true
}

// ICMP errors ispmux originates are limited per worker and port (RFC 1812
// §4.3.2.8): a burst, then a steady rate.
const (
	icmpErrBurst = 50
	icmpErrRate  = 100 // per second
)

// timeExceeded turns the TTL-expired IPv4 packet in f, already counted as
// dropped, into an ICMP Time Exceeded from src back to its sender, in place
// (RFC 792, RFC 1812 §4.3.2: the original header and 8 bytes of its data).
// It does nothing for a source without an address of ours, an ICMP error
// (no errors about errors), a non-first fragment, or over the rate limit.
func (p *Processor) timeExceeded(in uint8, out *datapath.Verdict, pkt *classifier.Packet, f []byte, mac uint64, src uint32) {
	p.icmpError(in, out, pkt, f, mac, src, 11, 0, 0) // time exceeded, TTL exceeded in transit
}

// tooBig drops a packet larger than the egress MTU: counted, and answered
// with ICMP "fragmentation needed" naming the MTU when it has DF set (path
// MTU discovery, RFC 1191). ispmux does not fragment.
func (p *Processor) tooBig(in uint8, out *datapath.Verdict, pkt *classifier.Packet, f []byte, mac uint64, src uint32, mtu int) {
	p.drop(in, out, classifier.ReasonTooBig)
	if pkt.DF {
		p.icmpError(in, out, pkt, f, mac, src, 3, 4, uint16(mtu))
	}
}

// icmpError turns f into the ICMP error (typ, code; mtu for "fragmentation
// needed") from src about it, in place, back out of the port it came from,
// rate limited per port. Never about an ICMP error, a non-first fragment, a
// datagram to a broadcast or multicast address, or one whose source is no
// single host (RFC 1812 §4.3.2.7, RFC 1122 §3.2.2: zero, broadcast,
// multicast, loopback, class E): such sources, spoofed from the Internet,
// would also spend the port's error budget.
func (p *Processor) icmpError(in uint8, out *datapath.Verdict, pkt *classifier.Packet, f []byte, mac uint64, src uint32, typ, code uint8, mtu uint16) {
	const icmp = 1
	if src == 0 || pkt.FragOff != 0 || !unicastAddr(pkt.SrcIP) || !unicastAddr(pkt.DstIP) {
		return
	}
	if pkt.Proto == icmp && pkt.L4 < len(f) {
		switch f[pkt.L4] {
		case 3, 4, 5, 11, 12: // errors
			return
		}
	}
	if !takeToken(&p.icmpTokens[in], &p.icmpLast[in], icmpErrRate, icmpErrBurst) {
		return
	}
	quote := min(pkt.IHL+8, pkt.TotalLen)
	l3 := pkt.L3
	if l3+28+quote > cap(f) {
		return
	}
	f = f[:cap(f)]
	copy(f[l3+28:l3+28+quote], f[l3:l3+quote]) // the quote moves behind our headers
	fib.PutMAC(f[0:6], pkt.Src)
	fib.PutMAC(f[6:12], mac)
	ip := f[l3 : l3+20]
	clear(ip)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(28+quote))
	ip[8], ip[9] = 64, icmp
	binary.BigEndian.PutUint32(ip[12:], src)
	binary.BigEndian.PutUint32(ip[16:], pkt.SrcIP)
	binary.BigEndian.PutUint16(ip[10:], ^fib.Checksum(ip, 0))
	ic := f[l3+20 : l3+28+quote]
	clear(ic[:8])
	ic[0], ic[1] = typ, code
	binary.BigEndian.PutUint16(ic[6:], mtu)
	binary.BigEndian.PutUint16(ic[2:], ^fib.Checksum(ic, 0))
	out.Action = datapath.Forward
	out.Port = in
	out.HdrLen, out.Strip, out.DecTTL = 0, 0, false
	out.Len = uint16(l3 + 28 + quote)
	p.icmpN[in]++
	p.touched |= 1 << in
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
		if n := p.dnsN[in]; n != 0 {
			st.dnsAnswers.Add(n)
			p.dnsN[in] = 0
		}
		if n := p.rstN[in]; n != 0 {
			st.gardenResets.Add(n)
			p.rstN[in] = 0
		}
	}
}

// subnetBroadcast reports whether a is the directed broadcast address of
// up's subnet (no single host: RFC 1122 §3.2.1.3 (g)).
func subnetBroadcast(up *fib.Uplink, a uint32) bool {
	if up.PrefixLen <= 0 || up.PrefixLen >= 31 {
		return false
	}
	host := uint32(1)<<(32-up.PrefixLen) - 1
	return a&^host == up.Addr&^host && a&host == host
}
