package engine

import "github.com/ispmux/ispmux/internal/oatable"

// The punt budgets: what a subscriber (or a port's unregistered
// devices) may hand the control plane, decided per frame from token
// buckets a worker keeps (no lock, no allocation). DHCP and ARP replies
// reach the proxy through the punt queue its neighbours share, so a
// flood from one circuit must not take it from the others.

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

// Each circuit's (access VLAN's) share of its port's sample, per worker:
// the sample is taken only within the circuit's own budget first, so that
// one attacker on one circuit sending DISCOVERs from made-up MACs (each
// message a new MAC: no per-MAC budget can hold it) spends its circuit's
// share and no more (unregistered_dhcp_circuit past it), and a new device
// on any other circuit of the port still finds the port's sample. Before,
// such a flood took the whole port's sample, and no device of any other
// circuit of the port could get its onboarding lease while it lasted. A
// circuit's message the port's sample then drops has spent its circuit's
// token all the same: a flood is dropped at its own circuit's bucket, not
// at the port's. Floods on unregRate/unregCircuitRate (two) or more
// circuits of a port at once take the port's whole sample again, and the
// other circuits' new devices share it with them. The share is half the
// port's sample, not less: an access whose subscribers share one circuit
// (one VLAN for all, an N:1 access) onboards its new devices through that
// circuit alone, at that rate (a building's power back). At 5/s, a
// quarter, such an access onboarded at a quarter of what it did before
// the shares, to keep one flood's cost at a quarter of the sample; at
// half, one flood leaves the other circuits half the sample, and a shared
// circuit keeps half of it. A port with one access circuit takes no share
// (port.shared): there is no other circuit to keep the sample for, and
// its circuit has all of it.
//
// The budget is two buckets of half of it each, at two keyed hashes of the
// port and VLAN among unregCircuitSlots, the fuller spent (unregCircuit;
// the subscribers' dhcpBudget does the same): a circuit sharing one bucket
// with a flood's goes through its other. A circuit alone on its two
// buckets has the whole budget: eight new devices' DORAs at once (a DORA
// is two messages), then 10 messages a second per worker. With a burst of
// 10, e2e TestOnboarding's ten new clients at once on one circuit took
// 41 s to be onboarded and handed over (three runs), against 34 s without
// the circuits' shares (two runs): some waited for a retransmission; with
// 16, 32 s. The burst stays below the port's (unregBurst): at a flood's
// first instant its circuit leaves the port's sample four messages for the
// others, and within a second half of it, as the port's sample refills
// twice as fast as a circuit's share.
const (
	unregCircuitRate  = 10 // per second
	unregCircuitBurst = 16
	unregCircuitSlots = 1024
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
	i := fuller(p.dhcpTokens[:], p.dhcpLast[:], p.dhcpSlot(key), p.dhcpSlot2(key), rate, burst)
	return i, cost, p.dhcpTokens[i] >= min(cost, burst/2)
}

// fuller refills buckets i and j of tokens (last: their refill times),
// each at half of rate up to half of burst, and returns the fuller: a
// budget split over two keyed buckets (dhcpBudget, unregCircuit).
func fuller(tokens []float64, last []int64, i, j uint64, rate, burst float64) uint64 {
	refill(&tokens[i], &last[i], rate/2, burst/2)
	refill(&tokens[j], &last[j], rate/2, burst/2)
	if tokens[j] > tokens[i] {
		return j
	}
	return i
}

// unregCircuit returns the fuller of the two buckets of circuit (port in,
// VLAN vlan) for its unregistered MACs' DHCP (each refilled at half of
// unregCircuitRate, up to half of unregCircuitBurst), and whether it holds
// a token; the caller takes it (p.unregCTokens[b]--). A circuit's two are
// found by a keyed hash (the seed drawn per worker), so which circuits share
// a bucket differs from worker to worker and run to run.
func (p *Processor) unregCircuit(in uint8, vlan uint16) (b uint64, ok bool) {
	i, j := p.circuitSlots(in, vlan)
	i = fuller(p.unregCTokens[:], p.unregCLast[:], i, j, unregCircuitRate, unregCircuitBurst)
	return i, p.unregCTokens[i] >= 1
}

// circuitSlots returns the two buckets of circuit (port in, VLAN vlan)
// among unregCircuitSlots: a keyed hash's low and high halves.
func (p *Processor) circuitSlots(in uint8, vlan uint16) (i, j uint64) {
	h := oatable.Mix64((uint64(in)<<16 | uint64(vlan&0xfff)) ^ p.circuitSeed)
	return h % unregCircuitSlots, (h >> 32) % unregCircuitSlots
}

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

// Unregistered MACs' ARP requests for their circuit's gateway address
// answered per ingress port and worker (the rest: unknown_mac), so that a
// device whose binding ispmux revoked reaches the DHCP proxy with its
// unicast RENEW (dhcpproxy revoked.go); a flood of made-up MACs gets this
// many answers a second, one frame each, to its own MACs.
const (
	unknownARPRate  = 20 // per second
	unknownARPBurst = 20
)

// Each subscriber's share of its port's ICMP error budget (icmpErrRate,
// icmpErrBurst, replies.go), per worker: a subscriber's time exceeded
// (TTL 1) and fragmentation needed are sent within its own share first,
// then within the port's. A hostile-subscriber trial in the lab found
// that one subscriber sending TTL-1 packets as fast as it could spent the
// port's whole budget, and its neighbour's traceroute got 2 time-exceeded
// replies of 10 while it lasted (its path MTU discovery would have
// starved the same way). Now the flood spends its own share, icmpSubRate
// of the port's 100 a second, and its neighbours find the rest.
//
// A subscriber is its circuit and MAC (its MAC table key: only a bound
// subscriber's frames are routed, so only they get errors), hashed to two
// of icmpSubSlots buckets with a key drawn per worker, so that no
// subscriber can pick a neighbour's; the fuller is spent (the DHCP
// budget's scheme, dhcpBudget). A collision is two subscribers sharing a
// bucket: a neighbour sharing one of a flood's two still goes through its
// other, at half the share (a traceroute's three probes a hop fit); one
// sharing both (about one in 8 million pairs at 4096 buckets, and not the
// same pair on another worker or after a restart) shares the flood's
// share while it lasts. That is accepted: the alternative, a map of
// subscribers, allocates and grows on the hot path.
//
// The share is a burst of 10 (a traceroute's three probes at the first
// hop, several at once from a household behind one router) and 5 a
// second (mtr probes each hop once a second). icmpSubRate/icmpErrRate
// bounds what floods cost: 20 subscribers flooding at once through one
// worker's port take its whole budget again, and their neighbours share
// what refills with them. The port's budget stays, the box's bound
// (RFC 1812 §4.3.2.8). Refusals are counted per port and budget:
// ispmux_port_icmp_errors_limited_total{budget="subscriber"} here,
// {budget="port"} at the port's. Frames from an ISP (errors to the
// Internet) have the port's budget alone.
const (
	icmpSubRate  = 5 // per second
	icmpSubBurst = 10
	icmpSubSlots = 4096
)

// icmpShare returns the fuller of the two buckets of the subscriber whose
// MAC table key is key (each refilled at half of icmpSubRate, up to half
// of icmpSubBurst), and whether it holds a token; the caller takes it
// (p.icmpSubTokens[b]--) once the port's budget lets the error go.
func (p *Processor) icmpShare(key uint64) (b uint64, ok bool) {
	i, j := p.icmpSlots(key)
	b = fuller(p.icmpSubTokens[:], p.icmpSubLast[:], i, j, icmpSubRate, icmpSubBurst)
	return b, p.icmpSubTokens[b] >= 1
}

// icmpSlots returns the two buckets of the subscriber whose MAC table key
// is key among icmpSubSlots: a keyed hash's low and high halves.
func (p *Processor) icmpSlots(key uint64) (i, j uint64) {
	h := oatable.Mix64(key ^ p.icmpSeed)
	return h % icmpSubSlots, (h >> 32) % icmpSubSlots
}
