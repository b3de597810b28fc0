package dhcpproxy

import (
	"net/netip"
	"sync"
	"time"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
)

// Probes of a claimed binding's circuit. When another circuit claims the
// MAC of a live binding (endOtherCircuits), ispmux asks the holder's
// circuit whether the device is still there, as a BNG would: up to
// probeCount ARP requests, probeInterval apart, out of the binding's port
// and VLAN, Ethernet unicast to the bound MAC, from our MAC and the
// circuit's gateway address, for the bound address. The device must
// answer for the address it uses (the engine punts that reply alone,
// engine.probeReply): a reply there withdraws the claim, as a DHCP
// message of the holder does (moved_circuit_probe_answered); no reply
// probeInterval after the last probe lets the claim take the binding over
// at once (moved_circuit_probe_silent), for probeVerdict (past it, the
// claim's next message probes again), and a reply after that, while the
// claim stands (it has not taken the binding over yet), still withdraws
// it. A forger on the claiming circuit cannot answer on the holder's. One probe set per claim, within a budget
// per probed circuit (probeSetRate, probeSetBurst) and one over all of
// them (probeAllRate, probeAllBurst): a flood of claims does not make
// ispmux an ARP flooder; a claim over the budget
// (moved_circuit_probe_skipped, tried again at its next message), a probe
// that cannot be sent (moved_circuit_probe_unsent) and a restart (probes
// and claims are RAM) leave the client-lease rule alone to decide.
const (
	probeCount    = 3
	probeInterval = time.Second
	probeSetRate  = 1 // probe sets a second, per probed circuit
	probeSetBurst = 4
	// probeAllRate, probeAllBurst: probe sets a second over every
	// circuit (claims forging the MACs of devices on many circuits at
	// once): at most ~3 × 100 ARP requests a second in all.
	probeAllRate  = 100
	probeAllBurst = 200
	// probeVerdict: how long the probes' silence lets the claiming
	// circuit take the binding over (its DHCP client asks again within
	// it: RFC 2131 §4.1 backs off to 64 s ± 1 at most). Past it, the
	// holder may be back (its link was down for the probes' seconds)
	// with no reason to speak DHCP before its renewal, up to half a
	// client lease away: the claim's next message probes again.
	probeVerdict = 2 * time.Minute
)

// probeTable owns the probe sets in flight and the budgets; mu guards
// them and is held only inside these methods.
type probeTable struct {
	mu sync.Mutex
	// m holds the probe sets in flight by the probed binding's key (at
	// most probeSetBurst per circuit at a time, plus probeSetRate a
	// second: Run's tick walks them all).
	m      map[subKey]*probe
	budget map[circuitKey]*bucket
	all    bucket // over every circuit (probeAllRate)
}

// probe is one probe set: the address asked for, the probes sent, and
// when the next is due (the zero time: at the next tick).
type probe struct {
	ip   [4]byte
	sent int
	next time.Time
}

func (t *probeTable) init() {
	t.m = map[subKey]*probe{}
	t.budget = map[circuitKey]*bucket{}
}

// start begins a probe set of sk's binding of ip, within its circuit's
// budget; false if over it. One in flight already (its claim withdrawn
// and set again since) serves the new claim.
func (t *probeTable) start(sk subKey, ip [4]byte, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.m[sk]; ok {
		return true
	}
	b := t.budget[sk.circuit]
	if b == nil {
		b = &bucket{}
		t.budget[sk.circuit] = b
	}
	if !b.take(now, probeSetRate, probeSetBurst) || !t.all.take(now, probeAllRate, probeAllBurst) {
		return false
	}
	t.m[sk] = &probe{ip: ip}
	return true
}

// probeDue is a probe set whose next step is due: a probe to send, or
// (silent) its end without an answer.
type probeDue struct {
	sk     subKey
	ip     [4]byte
	silent bool
}

// due returns the probe sets whose step is due at now, and takes that
// step: a probe is counted sent, the next due probeInterval later; a set
// whose probes were all sent ends.
func (t *probeTable) due(now time.Time) []probeDue {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []probeDue
	for sk, pr := range t.m {
		if now.Before(pr.next) {
			continue
		}
		if pr.sent == probeCount {
			delete(t.m, sk)
			out = append(out, probeDue{sk, pr.ip, true})
			continue
		}
		pr.sent++
		pr.next = now.Add(probeInterval)
		out = append(out, probeDue{sk, pr.ip, false})
	}
	for k, b := range t.budget {
		if b.full(now, probeSetRate, probeSetBurst) {
			delete(t.budget, k)
		}
	}
	return out
}

// answered ends sk's probe set if it asks for ip, and reports whether
// it did.
func (t *probeTable) answered(sk subKey, ip [4]byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if pr, ok := t.m[sk]; ok && pr.ip == ip && pr.sent > 0 {
		delete(t.m, sk)
		return true
	}
	return false
}

// stop ends sk's probe set, if any.
func (t *probeTable) stop(sk subKey) {
	t.mu.Lock()
	delete(t.m, sk)
	t.mu.Unlock()
}

// probeClaim starts the probe set of h's circuit for the claim just set
// on it (endOtherCircuits), or counts why not.
func (p *Proxy) probeClaim(h held, now time.Time) {
	c := p.circuits[h.k.circuit]
	if c == nil || !c.Addr.Is4() || !p.probes.start(h.k, h.l.ip, now) {
		p.count("moved_circuit_probe_skipped")
		return
	}
	p.leases.setProbed(h.k)
}

// sendProbes takes the due steps of the probe sets (Run's tick): sends
// a probe, or, once the probes went unanswered, lets the claim take the
// binding over now. A set whose claim was withdrawn, or whose binding
// ended or changed address, stops.
func (p *Proxy) sendProbes(now time.Time) {
	for _, d := range p.probes.due(now) {
		if !p.leases.claimedAt(d.sk, d.ip) {
			p.probes.stop(d.sk)
			continue
		}
		if d.silent {
			if p.leases.claimNow(d.sk, now) {
				p.count("moved_circuit_probe_silent")
				p.log.Info("dhcp: no ARP answer on the binding's circuit: another circuit may take the MAC over",
					"mac", binding.MACString(d.sk.mac), "ip", netip.AddrFrom4(d.ip))
			}
			continue
		}
		if !p.sendProbe(d.sk, d.ip) {
			p.count("moved_circuit_probe_unsent")
			p.probes.stop(d.sk)
		}
	}
}

// sendProbe sends one ARP probe of ip to sk's MAC on sk's circuit.
func (p *Proxy) sendProbe(sk subKey, ip [4]byte) bool {
	c := p.circuits[sk.circuit]
	if c == nil {
		return false
	}
	var f [fib.MinFrameLen]byte
	n := fib.ARPProbe(f[:], sk.mac, c.MAC, ip4(c.Addr), ip4(netip.AddrFrom4(ip)), c.VLAN, c.VLAN != 0)
	return p.send.Inject(c.Port, f[:n])
}

// fromSubscriberARP handles an ARP frame from circuit c (the engine
// punts a bound subscriber's reply to our MAC and gateway address): the
// answer to a probe of its binding there withdraws the claim on it. An
// answer that comes after its probe set ended (late, once the probes were
// found unanswered) withdraws it too while it stands: the device is on
// its circuit, answering for its address, which no device on the
// claiming circuit can do.
func (p *Proxy) fromSubscriberARP(c *Circuit, pkt *classifier.Packet) {
	sk := subKey{circuitKey{c.Port, c.VLAN}, pkt.Src}
	ip := addr4(pkt.SPA).As4()
	if pkt.ARPOp != 2 || pkt.SHA != pkt.Src || pkt.THA != c.MAC || pkt.TPA != ip4(c.Addr) ||
		!p.probes.answered(sk, ip) && !p.leases.claimedAt(sk, ip) {
		p.count("arp_not_probe_answer")
		return
	}
	p.count("moved_circuit_probe_answered")
	if p.leases.heard(sk) {
		p.log.Info("dhcp: the binding's device answered ARP on its circuit: another circuit's claim withdrawn",
			"mac", binding.MACString(sk.mac), "access", c.Name)
	}
}

// setProbed records that a probe set was started for the claim on sk.
func (t *leaseTable) setProbed(sk subKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.claims[sk]; ok {
		c.probed = true
		t.claims[sk] = c
	}
}

// claimedAt reports whether sk holds a binding of ip with a claim on it.
func (t *leaseTable) claimedAt(sk subKey, ip [4]byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.m.Ptr(sk)
	_, ok := t.claims[sk]
	return ok && l != nil && l.ip == ip
}

// claimNow lets the claim on sk take the binding over from now, for
// probeVerdict (its holder did not answer the probes); false if there is
// no claim.
func (t *leaseTable) claimNow(sk subKey, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.claims[sk]
	if ok {
		c.silent = now
		t.claims[sk] = c
	}
	return ok
}
