package dhcpproxy

import (
	"cmp"
	"slices"
	"time"

	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/registry"
)

// Moves, make-before-break. When a device's registration moves to another
// ISP (a tenant move, attach or claim; a reload), its binding at the old
// ISP keeps forwarding: the device renews within its client lease's half
// (at most ClientLeaseMax / 2), and that REQUEST is NAKed by ispmux
// (serveRequest: not its binding at its current ISP), which first ends the
// old binding through an intent (a RELEASE to the old ISP, the revoked
// event at the old ISP, never naming the new one). Its DISCOVER, a
// SELECTING REQUEST, RELEASE or DECLINE end it the same way. A device that
// never asks (unplugged) has its old binding ended ClientLeaseMax after the
// move, when every lease ispmux gave it has run out (no ACK is given to a
// moved device: renewals are NAKed, and an ISP's ACK of an exchange begun
// before the move binds nothing, bindAndAck). The deadline is in RAM: at a
// restart, Restore keeps a moved device's old binding, forwarding, with
// the deadline ClientLeaseMax from the restore (every lease ispmux gave it
// before has run out by then), whether the move was pending at the
// restart or made while ispmux was down, and whether the device is pinned
// to its access or not (RestoreLoaded): a restart changes nothing the
// subscriber sees. The NAK rule being stateless, its next message ends
// the old binding all the same. Ended at once instead, a pinned device
// lost its service until its next renewal (up to ClientLeaseMax / 2),
// then a DORA at the new ISP; and for a device registered for any access,
// the binding is what holds its circuit against the others
// (endOtherCircuits): ended, the MAC was bound nowhere and the first
// circuit to DISCOVER it was served, a device forging the MAC on another
// circuit as well, which then held the service by answering ARP there.
//
// Blocked, suspended, detached and deleted devices, and moves the operator
// wants cut at once (RevalidateMACsImmediate), end at once, as before.

// RevalidateMACsImmediate is RevalidateMACs with a moved device's old
// binding ended at once (the operator's immediate cut): the RELEASE goes
// to the old ISP now and the device's next REQUEST is NAKed.
func (p *Proxy) RevalidateMACsImmediate(macs []uint64) int { return p.revalidateMACs(macs, true) }

func (p *Proxy) revalidateMACs(macs []uint64, immediate bool) int {
	now := time.Now()
	var todo []held
	seen := make(map[uint64]bool, len(macs))
	for _, mac := range macs {
		if seen[mac] {
			continue // listed twice (a reload's): its leases once
		}
		seen[mac] = true
		p.endBlockedOnboarding(mac)
		todo = append(todo, p.leases.ofMAC(mac)...)
	}
	// In batches (revalidateBatch): one after the other a bulk
	// suspension (an import of 50k lines) revoked ~310 bindings a second,
	// one fsync each, and side by side through the group commit ~6k a
	// second (trials).
	n := 0
	todo = p.byStripe(todo)
	for len(todo) > 0 {
		k := min(revokeBatch, len(todo))
		n += p.revalidateBatch(todo[:k], immediate, now)
		todo = todo[k:]
	}
	return n
}

// revalidate ends the binding h if it no longer matches its registration,
// or, for a device moved to another ISP (unless immediate), lets it
// forward until the device's next message or ClientLeaseMax from now. It
// reports whether h no longer matches.
func (p *Proxy) revalidate(h held, immediate bool, now time.Time) bool {
	why := p.staleHeld(h)
	if why == "" {
		p.leases.clearCut(h.k) // moved back before it asked
		return false
	}
	if !immediate && p.onlyMoved(h) {
		p.setMoveCut(h.k, now)
		return true
	}
	return p.revokeHeld(h, why)
}

// revokeHeld is revoke of h if its subscriber still holds exactly h's
// lease, and reports whether it revoked it: a bulk revalidation lists the
// leases before it ends them side by side, and one may have ended
// meanwhile (its expiry, another circuit's claim); revoked again, its ISP
// got a second RELEASE and its stream a second revoked event (a review).
func (p *Proxy) revokeHeld(h held, why string) bool {
	defer p.lockSub(h.k.mac).Unlock()
	if l, ok := p.leases.get(h.k); !ok || !l.same(&h.l) {
		return false
	}
	return p.revokeLocked(h.k, p.full(h), why)
}

// setMoveCut has the old binding sk of a device moved at now end at the
// latest ClientLeaseMax later (the first move's deadline holds).
func (p *Proxy) setMoveCut(sk subKey, now time.Time) {
	if p.leases.setCut(sk, now.Add(p.leaseMaxFor(now))) {
		p.count("move_pending")
	}
}

// onlyMoved reports whether h's registration is in force and only names
// another ISP (not blocked, static, or elsewhere). A customer suspended at
// the new ISP is still a move: the old ISP serves the device until its
// next message (it was cut at once, a switching trial).
func (p *Proxy) onlyMoved(h held) bool {
	mac := h.k.mac
	if p.isStatic(mac) {
		return false
	}
	access, isp := p.names(h)
	reg, ok := p.reg.Lookup(mac)
	return ok && !reg.Blocked && reg.ISP != isp && (reg.Access == "" || reg.Access == access)
}

// endMoved ends the binding want of a moved device through an intent (a
// RELEASE to its old ISP) if it still holds exactly it (a later binding,
// made since, is left alone). False: the store refused, nothing changed.
func (p *Proxy) endMoved(sk subKey, want lease) bool { return p.endHeld(sk, want, "") }

// endHeld is endMoved with the reason why ("": the registration's
// staleness, else "subscriber moved to another ISP").
func (p *Proxy) endHeld(sk subKey, want lease, why string) bool {
	defer p.lockSub(sk.mac).Unlock()
	l, ok := p.leases.get(sk)
	if !ok || !l.same(&want) {
		return true
	}
	h := held{sk, l}
	if why == "" {
		why = p.staleHeld(h)
	}
	if why == "" {
		why = "subscriber moved to another ISP"
	}
	return p.revokeLocked(sk, p.full(h), why)
}

// endOtherCircuits lets a message of sk's MAC asking for a lease on c
// (DISCOVER, REQUEST) take the MAC over from the live bindings it holds
// on other circuits (a device registered for any access, plugged in
// elsewhere), and reports whether the message may go on. A binding is
// taken over only once its holder, without a word on its own circuit
// (which withdraws the claim, serveRequest), has let the client lease
// ispmux last gave it run out, and at the latest ClientLeaseMax from the
// first such message (claim): a device still there renews before its
// lease ends (RFC 2131 §4.4.5), and one that let it end has stopped
// using the address. The claim also has the holder's circuit probed by
// ARP (probeClaim): a holder that answers there withdraws it, one silent
// through the probes lets it take the binding over within seconds.
// Until then the message is refused
// (moved_circuit_refused, a rejected event): the other circuit may be a
// device forging the MAC, and the ISP's ACK of its DORA would prove
// nothing (it answers any client with that MAC). Taken over, the binding
// is revoked with a RELEASE to its ISP (sent before the new message,
// flushIntentsOf). Left in place, it forwarded to a port the device is no
// longer on until its lease ended, and the ISP, seeing the same client,
// ACKed it that binding's address again, which ispmux refused as another
// subscriber's. False: refused, or one could not be ended (the client
// retransmits). An onboarding lease the MAC holds on another circuit is
// taken over as takeOnboarding says (after its lease time, or its
// handover's hold, without a word there).
func (p *Proxy) endOtherCircuits(c *Circuit, sk subKey, reg *registry.Entry, now time.Time) bool {
	if len(p.ob.pools) > 0 && !p.takeOnboarding(c, regSubject(sk.mac, c, *reg), now) {
		return false
	}
	for _, h := range p.leases.ofMAC(sk.mac) {
		if h.k == sk || !h.l.endsAfter(now) {
			continue
		}
		if at, unprobed := p.leases.claim(h.k, now, p.leaseMaxFor(now)); now.Before(at) {
			if unprobed {
				p.probeClaim(h, now)
			}
			access, _ := p.names(h)
			p.count("moved_circuit_refused")
			p.refuseMisplaced(regSubject(sk.mac, c, *reg),
				"bound on access "+access+", where its lease is in use: not served on "+c.Name+
					" unless that lease lapses unrenewed")
			return false
		}
		if !p.endHeld(h.k, h.l, "the device asked for a lease on access "+c.Name+
			" and did not renew this one") {
			return false
		}
		p.count("moved_circuit")
	}
	return true
}

// claim is another circuit's claim on a binding's MAC (endOtherCircuits).
type claim struct {
	// at: when that circuit may take the MAC over at the latest (the
	// first claim's ClientLeaseMax later).
	at time.Time
	// probed: a probe set was started for it (one per claim, and one
	// more once its silence is stale).
	probed bool
	// silent: when the probes of the holder's circuit went unanswered
	// (probes.go, claimNow): the claim may take the binding over from
	// then, for probeVerdict; zero if they did not.
	silent time.Time
}

// claim records that another circuit asked at now for sk's MAC: it may
// take it over wait later (the first claim's, if one is pending), or when
// the client lease ispmux last gave sk's holder runs out if that is
// sooner (its clientEnd, when known), or at once within probeVerdict of
// the probes of the holder's circuit going unanswered, unless the holder
// is heard from first (heard). Silence older than that is forgotten (the
// holder may be back, with no reason to speak DHCP before its renewal),
// and the claim is probed again. It returns when that circuit may, the
// zero time (now) if sk holds no binding any more, and whether no probe
// set was started for the claim yet (probeClaim).
func (t *leaseTable) claim(sk subKey, now time.Time, wait time.Duration) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.m.Ptr(sk)
	if l == nil {
		return time.Time{}, false
	}
	c, ok := t.claims[sk]
	if !ok {
		c = claim{at: now.Add(wait)}
	}
	if !c.silent.IsZero() && now.Sub(c.silent) > probeVerdict {
		c.silent, c.probed = time.Time{}, false
	}
	t.claims[sk] = c
	if !c.silent.IsZero() {
		return c.silent, false
	}
	if end, ok := l.clientEndAt(); ok && end < c.at.UnixNano() {
		return time.Unix(0, end), !c.probed
	}
	return c.at, !c.probed
}

// heard notes a message of sk's holder on its own circuit: it withdraws
// the claim on sk's binding and reports whether there was one, and
// forgets the client lease last given (a device asking again, a DISCOVER
// or a renewal not yet answered, is there whatever that lease: another
// circuit waits ClientLeaseMax from its claim, until ispmux gives the
// holder a lease again, gaveClient or a new binding).
func (t *leaseTable) heard(sk subKey) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.m.Ptr(sk); l != nil {
		l.clientEnd = 0
	}
	_, ok := t.claims[sk]
	delete(t.claims, sk)
	return ok
}

// gaveClient records that the client lease ispmux gave sk's holder on
// its binding want runs out at end (clientEnd), if sk still holds that
// version of it.
func (t *leaseTable) gaveClient(sk subKey, want lease, end time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.m.Ptr(sk); l != nil && l.same(&want) {
		l.setClientEnd(end)
	}
}

// clientEnd is when a client lease of lt given at from runs out, as
// lease.clientEnd counts it: a second later, as the client may count it
// from the ACK's arrival (lease times are whole seconds).
func clientEnd(from time.Time, lt time.Duration) time.Time {
	return from.Add(lt + time.Second)
}

// cutMoves ends the old bindings of moved devices that did not ask within
// ClientLeaseMax of the move (Run's tick); one moved back meanwhile keeps
// its binding. They end revokeBatch to a store transaction (revokeEach):
// a bulk move (an ISP's devices moved at once) has all their deadlines
// due in one tick, which one commit each held for minutes.
func (p *Proxy) cutMoves(now time.Time) {
	due := p.byStripe(p.leases.cutsDue(now))
	for len(due) > 0 {
		k := min(revokeBatch, len(due))
		n := p.revokeEach(due[:k], func(h held) string {
			why := p.staleHeld(h)
			if why == "" {
				p.leases.clearCut(h.k)
				return ""
			}
			failpoint.Hit(failpoint.MoveCutBeforeEnd)
			return why
		})
		for range n {
			p.count("move_cut")
		}
		p.progress.Add(1) // a store commit each (Progress)
		due = due[k:]
	}
}

// setCut records that sk's binding ends at the latest at; false if it was
// already recorded (the first move's deadline holds) or sk holds none.
func (t *leaseTable) setCut(sk subKey, at time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m.Ptr(sk) == nil {
		return false
	}
	if _, ok := t.cuts[sk]; ok {
		return false
	}
	t.cuts[sk] = at
	t.cutsMem.note(len(t.cuts))
	if len(t.cutsAt) >= 2*len(t.cuts)+shrinkFloor {
		t.rebuildCuts() // sk's entry among them
	} else {
		t.cutsAt = pushAt(t.cutsAt, cutEntry{monoNanos(at), sk})
	}
	return true
}

// rebuildCuts remakes the deadlines' heap from cuts, dropping the entries
// of cuts cleared or ended, which otherwise stay until their deadline: a
// device moved and moved back (or asking, which ends the cut) again and
// again within ClientLeaseMax left one a cycle, without bound (100K
// cycles of one device: 100K entries). setCut calls it once the heap holds
// twice the cuts and shrinkFloor more, so it is paid for by as many
// setCuts as it walks (t.mu held).
func (t *leaseTable) rebuildCuts() {
	t.cutsAt = t.cutsAt[:0]
	for k, at := range t.cuts {
		t.cutsAt = append(t.cutsAt, cutEntry{monoNanos(at), k})
	}
	heapifyAt(t.cutsAt)
}

// cutPending reports whether sk's binding has a move's deadline.
func (t *leaseTable) cutPending(sk subKey) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.cuts[sk]
	return ok
}

// clearCut forgets sk's deadline.
func (t *leaseTable) clearCut(sk subKey) {
	t.mu.Lock()
	delete(t.cuts, sk)
	t.mu.Unlock()
}

// cutsDue returns the bindings whose deadline is at or before now, from
// the deadlines' heap (cutsAt): linear in the moves due, not in those
// pending. It walked every pending move at each tick under the lease
// table's lock, which every DHCP message takes: with a bulk move of 1M
// devices pending, 254 ms a tick, so the lock was held nearly all the
// time for ClientLeaseMax; now 20 ns when none is due (BenchmarkCutsDue:
// 10K pending 431 µs → 20 ns). A due cut stays due until cutMoves clears it or its
// binding ends, as before: returned at every tick till then (a refused
// end is tried again).
func (t *leaseTable) cutsDue(now time.Time) []held {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []held
	var again []cutEntry
	n := monoNanos(now)
	for len(t.cutsAt) > 0 && t.cutsAt[0].at <= n {
		var e cutEntry
		e, t.cutsAt = popAt(t.cutsAt)
		at, ok := t.cuts[e.k]
		if !ok || monoNanos(at) != e.at {
			continue // cleared, or its binding ended: stale
		}
		again = append(again, e)
	}
	if len(again) > 1 {
		// A cut cleared and set again with the same deadline (a clock
		// read twice alike) has two entries that both match it: one
		// is kept, and the binding comes up once, as from the map.
		slices.SortFunc(again, func(a, b cutEntry) int {
			return cmp.Or(cmp.Compare(a.k.mac, b.k.mac), cmp.Compare(a.k.circuit.port, b.k.circuit.port),
				cmp.Compare(a.k.circuit.vlan, b.k.circuit.vlan))
		})
		again = slices.CompactFunc(again, func(a, b cutEntry) bool { return a.k == b.k })
	}
	for _, e := range again {
		t.cutsAt = pushAt(t.cutsAt, e)
		if l, ok := t.m.Get(e.k); ok {
			out = append(out, held{e.k, l})
		}
	}
	if t.cutsMem.due(len(t.cuts)) {
		t.cuts = remade(t.cuts)
	}
	t.cutsAt = shrunkAt(t.cutsAt)
	return out
}

// cutEntry is a move's deadline (monoNanos) in leaseTable.cutsAt.
type cutEntry struct {
	at int64
	k  subKey
}

// cutHeap orders the moves' deadlines, earliest first (atheap.go). An
// entry whose cut was cleared, or whose binding ended, stays until it
// comes up, and is dropped then (cutsDue), or until setCut finds the heap
// holding twice the cuts and rebuilds it (rebuildCuts).
type cutHeap []cutEntry

func (e cutEntry) dueAt() int64 { return e.at }

// MovesPending returns how many old bindings of moved devices still
// forward (make-before-break), waiting for the device's next REQUEST.
func (p *Proxy) MovesPending() int {
	p.leases.mu.Lock()
	defer p.leases.mu.Unlock()
	return len(p.leases.cuts)
}

// names returns the access and ISP names of h's binding.
func (p *Proxy) names(h held) (access, isp string) {
	if c := p.circuits[h.k.circuit]; c != nil {
		access = c.Name
	}
	if i := p.ispAt[h.l.isp]; i != nil {
		isp = i.Name
	}
	return access, isp
}

// staleHeld is stale for a lease of the table.
func (p *Proxy) staleHeld(h held) string {
	access, isp := p.names(h)
	why := p.stale(h.k.mac, access, isp)
	if why != "" && p.leases.cutPending(h.k) {
		// Moved away before (its moved event told the ISP): what
		// became of it since is the new ISP's (its registration
		// deleted there, say), not this one's to read.
		why = "subscriber moved to another ISP"
	}
	return why
}
