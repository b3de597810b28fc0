package dhcpproxy

import (
	"crypto/rand"
	"maps"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
)

// Ending a binding that the ISP must hear about (a RELEASE or DECLINE from
// the subscriber, a revocation) is a three-step transition:
//
//  1. one store transaction removes the binding, stores an intent (the
//     exact DHCP message about to be sent, with the client identifier and
//     the Option 82 of the lease) and appends the event;
//  2. the binding leaves the tables, and the message is queued to every
//     server of the ISP;
//  3. the intent is completed (deleted) by the next tick at least
//     intentSettle later, once the queued frames are surely on the wire
//     (with the other due intents, completeBatch to a store commit:
//     flushIntents); or before that by the subscriber's next binding at the same ISP,
//     before it is committed (completeAnswered).
//
// A subscriber's pending intents are sent before any new message of it is
// relayed, so the ISP always hears the old RELEASE first; and its answer
// to that message proves them sent, so they are completed before the
// binding it grants is stored. Ordering is by the store's commits, never
// by the wall clock (which a start on a box without an RTC, or an NTP
// step, moves back or forth).
//
// The DECLINE of an address the ISP ACKed but another subscriber holds
// (decline) is an intent too, with no binding to remove in step 1 (the
// address was never bound): stored before the DECLINE and the subscriber's
// NAK are sent, so a crash or a failed send leaves it pending and the ISP's
// lease of the address in conflict is still declined. So is the RELEASE
// of a lease an ISP's server committed in an ACK ispmux did not bind
// (IntentReleaseUnbound: an ACK refused, releaseRefused; a rapid-commit
// ACK the client does not use, releaseUnused), sent to that server only
// (intentServers); before it is sent, at once or later, the address is
// checked again (installedAt): if a binding ispmux installed holds it now,
// the subscriber's or another's, the intent is completed unsent, since the
// RELEASE would free that binding's lease.
//
// A crash before 1 leaves the binding, which the subscriber still holds; a
// crash after 1 finds the intent pending at start, and it is sent again
// (replay) once the ISP's next hop is resolved. So ispmux never forwards
// for a lease it told the ISP to free (no phantom), and a lease it meant to
// free stays at the ISP only until the next start. An intent that cannot
// be sent now (no next hop) stays pending and is retried by Run.

// PendingIntents returns how many messages to ISPs are recorded but not yet
// known to be sent.
func (p *Proxy) PendingIntents() int { return p.intents.len() }

// loadIntents queues the intents a previous run left pending (step 1 done,
// step 3 not): flushIntents sends them again. None was followed by a
// binding at its ISP that its message preceded: bindAndAck completes those
// before it commits that binding (completeAnswered); an older build's
// were not, and supersedeLegacy completes those.
func (p *Proxy) loadIntents() error {
	ins, err := p.store.Intents()
	for _, in := range ins {
		p.intents.add(in, true)
		p.holdIdentifier(in)
	}
	if len(ins) > 0 {
		p.log.Info("dhcp: messages to ISPs pending from before the restart are sent again", "intents", len(ins))
	}
	return err
}

// supersedeLegacy completes, without sending them again, the intents an
// older ispmux left pending (ID below the store's IntentsOrderedFrom)
// beside a binding of the subscriber at the intent's ISP written after it
// (Updated later than the intent's Created). That build did not complete
// a subscriber's intents before committing the binding the ISP granted
// after them (completeAnswered), so such a binding is its proof that the
// RELEASE went out first, as it judged at its own start: sending it again
// would free that lease (a phantom). The wall clock decides for these
// only, once: the intents of this build, the restore's own among them,
// are ordered by the store's commits and all sent.
func (p *Proxy) supersedeLegacy() {
	os, ok := p.store.(interface{ IntentsOrderedFrom() uint64 })
	if !ok {
		return
	}
	from := os.IntentsOrderedFrom()
	var done []uint64
	for _, pi := range p.intents.unsent() {
		isp := p.isps[pi.in.ISP]
		if !pi.replay || pi.in.ID >= from || isp == nil {
			continue
		}
		for _, h := range p.leases.ofMAC(binding.MAC48(pi.in.MAC)) {
			// Only a binding at the intent's own ISP: another ISP's
			// exchange was never held back by it (flushIntentsOf).
			if h.l.isp == isp.Index && h.l.updated > pi.in.Created.UnixNano() {
				p.count("intent_superseded")
				done = append(done, pi.in.ID)
				break
			}
		}
	}
	// completeBatch to a commit: a crash between two leaves the rest
	// pending, and the next start judges them again the same way.
	p.completeIntents(done, func() {})
}

// completeAnswered completes, durably, the intents of t's subscriber to
// t's ISP whose message was queued before t's was relayed (ID at most
// t's intentsBefore, flushIntentsOf): the ISP answered t's message, which
// the same uplink queue carried after them, so they are on the wire. Run
// before the binding the answer grants is committed, so that a restart
// never finds a RELEASE pending beside the lease granted after it (sending
// it again would free that lease, the same address often). The order is
// the store's commit order, not the wall clock's: a clock stepped back
// between the RELEASE and the new exchange (a box without an RTC, NTP
// stepping) made a comparison of the intent's Created with the binding's
// Updated replay such a RELEASE, and one stepped forward at start
// completed, unsent, RELEASEs recorded by the restore itself.
func (p *Proxy) completeAnswered(t *txn) error {
	upTo := p.tx.intentsBeforeOf(t)
	if upTo == 0 {
		return nil
	}
	var ids []uint64
	for _, pi := range p.intents.ofMAC(t.sub.mac) {
		if pi.in.ISP != t.isp.Name || pi.in.ID > upTo || !p.intents.queued(pi.in.ID) {
			continue
		}
		ids = append(ids, pi.in.ID)
	}
	// One subscriber's (a few): one commit, before the binding's.
	if err := p.store.CompleteIntents(ids); err != nil {
		return err
	}
	for _, id := range ids {
		p.intents.done(id)
		p.count("intent_superseded")
	}
	return nil
}

// endBinding runs step 1 and 2 (and 3 when it can send now) for the
// binding of sk (l, nil if ispmux holds none), with intent in (nil: nothing
// to tell the ISP, as for an expiry or a NAK) and the state-change event e.
// It returns false if the store refused: then nothing changed.
func (p *Proxy) endBinding(sk subKey, access string, in *subscribers.Intent, e subscribers.Event) bool {
	defer p.lockSub(sk.mac).Unlock()
	return p.endBindingLocked(sk, access, in, e)
}

// endBindingLocked is endBinding with sk's stripe of subMu held. A
// binding's end moves the subscriber to a new generation: once it is
// committed, an ACK of a transaction started before it binds nothing
// (bindAndAck); refused, it ends nothing.
func (p *Proxy) endBindingLocked(sk subKey, access string, in *subscribers.Intent, e subscribers.Event) bool {
	return p.endBindingTx(sk, access, in, e, in != nil)
}

// endBindingKeepTx is endBinding keeping the subscriber's transactions in
// flight, intent or not: an ISP's NAK ends a binding whose client has
// moved on (a DISCOVER under way, whose OFFER is awaited), and the
// RELEASE of the address it left (endByNak) is no reason to drop that.
// The generation the end moves on keeps an ACK of an older one from
// binding (bindAndAck).
func (p *Proxy) endBindingKeepTx(sk subKey, access string, in *subscribers.Intent, e subscribers.Event) bool {
	defer p.lockSub(sk.mac).Unlock()
	return p.endBindingTx(sk, access, in, e, false)
}

// endBindingTx is endBindingLocked, dropping the subscriber's
// transactions in flight if drop.
func (p *Proxy) endBindingTx(sk subKey, access string, in *subscribers.Intent, e subscribers.Event, drop bool) bool {
	mark := p.endBeforeCommit(sk, drop)
	it, stored, _, err := p.store.EndBinding(access, sk.circuit.vlan, binding.MACBytes(sk.mac), in, e)
	if err != nil {
		p.endRefused(sk, mark)
		p.storeError("dhcp: binding end not committed; nothing changed", "mac", binding.MACString(sk.mac), "event", e.Kind, "err", err)
		return false
	}
	var stIn *subscribers.Intent
	if in != nil {
		stIn = &it
	}
	p.endCommitted(sk, mark)
	p.endedAfterCommit(sk, stIn, stored, mark.had)
	return true
}

// sendIntent sends an intent's message to the servers of its ISP
// (intentServers) and completes it; the RELEASE of an ACK not bound whose
// address a binding ispmux installed now holds is completed unsent. It
// reports false (the intent stays pending) when the ISP's next hop is not
// resolved, no frame could be queued, or another goroutine is sending it
// right now.
func (p *Proxy) sendIntent(pi pendingIntent) bool {
	claimed, done := p.intents.claim(pi.in.ID)
	if !claimed {
		// Done, or being sent by another goroutine: not known to be
		// on the wire yet, so a new message of the subscriber waits.
		return done
	}
	return p.sendClaimed(pi, nil)
}

// intentRound is what a timer round gathers of the intents it completes
// unsent (sendClaimed): their IDs, completed in batches, and the count of
// those dropped per ISP no longer configured, logged once per ISP at the
// round's end (a removed ISP's backlog, 100k intents, was 100k lines).
type intentRound struct {
	unsent []uint64
	gone   map[string]int
}

// sendClaimed is sendIntent for an intent the caller has claimed (claim;
// a round's takeUnsent, which claims in the same hold of the queue's
// lock): the claim ends when the message is queued (markSent) or the
// intent completed, or else here (unclaim). An intent to complete unsent
// (its ISP no longer configured, or superseded) is appended to r.unsent,
// its claim kept, when r is not nil: the caller completes it in a batch
// (completeIntents, which ends the claim), with the others of its round,
// and logs r.gone.
func (p *Proxy) sendClaimed(pi pendingIntent, r *intentRound) bool {
	in := pi.in
	complete := func() {
		if r != nil {
			r.unsent = append(r.unsent, in.ID)
		} else {
			p.completeIntent(in.ID)
		}
	}
	sent := false
	defer func() {
		if !sent {
			p.intents.unclaim(in.ID)
		}
	}()
	isp := p.isps[in.ISP]
	if isp == nil {
		// The ISP is no longer configured: there is nobody to tell.
		if r != nil {
			if r.gone == nil {
				r.gone = map[string]int{}
			}
			r.gone[in.ISP]++
		} else {
			p.log.Warn("dhcp: pending message to an ISP no longer configured dropped", "isp", in.ISP, "kind", in.Kind,
				"mac", binding.MACString(binding.MAC48(in.MAC)), "ip", in.IP)
		}
		sent = true
		complete()
		return true
	}
	if in.Kind == subscribers.IntentReleaseUnbound && p.installedAt(p.intentSub(&in), isp, in.IP) {
		// A binding ispmux installed holds the address now (a replay,
		// or a send deferred while it was bound): the RELEASE would
		// free it.
		p.log.Info("dhcp: pending RELEASE of an ACK not bound dropped: a binding holds the address now", "isp", in.ISP,
			"mac", binding.MACString(binding.MAC48(in.MAC)), "ip", in.IP)
		p.count("intent_superseded")
		sent = true
		complete()
		return true
	}
	gw, ok := p.nextHop(isp)
	if !ok {
		p.count("intent_deferred")
		return false
	}
	for _, srv := range intentServers(isp, &in) {
		if p.injectUDP(isp.Port, gw, isp.MAC, isp.VLAN, isp.Addr, srv, 67, 67, in.Message) {
			sent = true
		}
	}
	// sent: the claim ends in markSent below, not in unclaim.
	if !sent {
		p.count("inject_full")
		return false
	}
	if pi.replay {
		p.count("intent_replayed")
		failpoint.Hit(failpoint.ReplayAfterSend)
	} else {
		failpoint.Hit(failpoint.EndAfterSend)
	}
	p.count(intentSentCounter(in.Kind))
	p.intents.markSent(in.ID, time.Now())
	return true
}

// intentSentCounter is the counter of an intent of kind k sent
// ("intent_sent_release" …), built only for a kind unknown here: the
// concatenation was an allocation per intent sent.
func intentSentCounter(k subscribers.IntentKind) string {
	switch k {
	case subscribers.IntentRelease:
		return "intent_sent_release"
	case subscribers.IntentDecline:
		return "intent_sent_decline"
	case subscribers.IntentReleaseUnbound:
		return "intent_sent_release_unbound"
	}
	return "intent_sent_" + string(k)
}

// intentSub is the subscriber of in (no circuit if in's access circuit
// is no longer configured).
func (p *Proxy) intentSub(in *subscribers.Intent) subKey {
	sk := subKey{mac: binding.MAC48(in.MAC)}
	if c := p.circuitByName(in.Access, in.VLAN); c != nil {
		sk.circuit = circuitKey{c.Port, c.VLAN}
	}
	return sk
}

// intentServers returns the servers of isp that in's message goes to:
// every one, but for the RELEASE of an ACK not bound
// (IntentReleaseUnbound) the one whose ACK committed the lease, which its
// server identifier names; every one if that is none of isp's (with RFC
// 5107's override it names ispmux), a server that holds no such lease of
// the client ignoring it.
func intentServers(isp *ISP, in *subscribers.Intent) []netip.Addr {
	if in.Kind != subscribers.IntentReleaseUnbound {
		return isp.Servers
	}
	var sid netip.Addr
	forEachOption(in.Message, func(code byte, data []byte) {
		if code == optServerID && len(data) == 4 {
			sid = netip.AddrFrom4([4]byte(data))
		}
	})
	if slices.Contains(isp.Servers, sid) {
		return []netip.Addr{sid}
	}
	return isp.Servers
}

func (p *Proxy) completeIntent(id uint64) {
	if err := p.store.CompleteIntent(id); err != nil {
		// Left pending in the store: sent again at the next start,
		// which a server takes as a repeat.
		p.log.Warn("dhcp: intent not completed", "id", id, "err", err)
	}
	p.intents.done(id)
}

// completeBatch is how many intents one store transaction completes
// (completeIntents): a round after a long outage of an ISP settles its
// whole backlog of RELEASEs, and one commit each (an fdatasync each) held
// the round for minutes at 100k, delaying the transactions' timeouts
// and the leases' expiry behind it. One transaction of completeBatch
// deletions is 10–20 ms with its fdatasync (BenchmarkRoundCompletingBacklog).
// A variable for the tests.
var completeBatch = 1024

// completeRound is how many of those commits one round makes at most: the
// due intents sent first, the others at the next ticks (a round of a 1M
// backlog would hold the timers for 10–20 s otherwise; an intent completed
// later is only resent if a crash comes first). A variable for the
// tests.
var completeRound = 16

// completeIntents completes ids, ascending, completeBatch to a durable
// store transaction (Store.CompleteIntents), calling after once each
// transaction is done. A batch the store refuses is left pending in the
// store, as completeIntent's one: sent again at the next start, which a
// server takes as a repeat.
func (p *Proxy) completeIntents(ids []uint64, after func()) {
	slices.Sort(ids)
	for len(ids) > 0 {
		batch := ids[:min(completeBatch, len(ids))]
		ids = ids[len(batch):]
		if err := p.store.CompleteIntents(batch); err != nil {
			p.log.Warn("dhcp: intents not completed", "intents", len(batch), "err", err)
		}
		p.intents.doneAll(batch)
		after()
	}
}

// flushIntents completes the intents whose message left a while ago
// (due: intentSettle after it was queued), completeBatch to a store
// commit and completeRound commits at most, and sends those not sent yet,
// as many at most, a fair share each ISP (sendRound; Run calls it on every
// tick). A crash between two commits leaves the intents of the later ones
// pending: each was sent, and is sent again after the restart, which a
// server takes as a repeat; none is deleted before its message was
// queued, intentSettle earlier.
func (p *Proxy) flushIntents(now time.Time) {
	due := p.intents.due(now, completeBatch*completeRound)
	p.completeIntents(due, func() {
		failpoint.Hit(failpoint.EndAfterComplete)
		p.progress.Add(1) // a store commit each: a backlog is long (Progress)
	})
	p.sendRound()
}

// intentShare is how many intents of one ISP a round sends (or completes
// unsent) before the next ISP's turn: a backlog of one ISP (back from an
// outage, or removed) took a round's whole budget, and an intent to
// another, stored after it, waited ~62 rounds behind a million.
const intentShare = 64

// sendRound sends the intents not sent yet, or completes them unsent (an
// ISP no longer configured, a RELEASE of an ACK not bound that a binding
// holds now), oldest first within an ISP, ISP after ISP intentShare at a
// time (fewer when the budget left is short, an equal part each),
// completeBatch*completeRound in all at most (as many as a round
// completes; the rest next round), the ISPs' order turning each round.
// An ISP whose oldest cannot be sent (its next hop unresolved, the
// datapath's queue full, another goroutine sending it) is left until the
// next round: its backlog costs the round one attempt, not one each.
func (p *Proxy) sendRound() {
	isps := p.intents.unsentISPs()
	if len(isps) == 0 {
		return
	}
	turn := int(p.intentTurn.Add(1) % uint64(len(isps)))
	isps = append(isps[turn:], isps[:turn]...)
	var r intentRound
	commits := 0
	completeUnsent := func() {
		// Claimed until done: a sender of the subscriber's next message
		// waits for them (flushIntentsOf), as for any send under way.
		p.completeIntents(r.unsent, func() { commits++; p.progress.Add(1) })
		r.unsent = r.unsent[:0]
	}
	budget := completeBatch * completeRound
	for len(isps) > 0 && budget > 0 && commits < completeRound {
		active := isps[:0]
		share := max(1, min(intentShare, budget/len(isps)))
		for _, isp := range isps {
			left := true
			for range min(share, budget) {
				pi, ok, busy := p.intents.takeUnsent(isp)
				if !ok {
					left = false
					break
				}
				if busy || !p.sendClaimed(pi, &r) {
					// Being sent by another goroutine, or not sent
					// (unclaimed): back to its ISP's queue.
					p.intents.putBack(pi)
					left = false
					break
				}
				budget--
				p.progress.Add(1)
				if len(r.unsent) >= completeBatch {
					completeUnsent()
				}
			}
			if left {
				active = append(active, isp)
			}
			if budget == 0 || commits >= completeRound {
				// The rest next round, as for the due ones: a removed
				// ISP's backlog of a million held one round for ~1000
				// commits (a review). They are sent then too.
				break
			}
		}
		isps = active
	}
	completeUnsent()
	for _, isp := range slices.Sorted(maps.Keys(r.gone)) {
		p.log.Warn("dhcp: pending messages to an ISP no longer configured dropped", "isp", isp, "messages", r.gone[isp])
	}
}

// flushIntentsOf sends mac's pending intents now, before a new message of
// mac is relayed to isp: the ISP must hear the old RELEASE before the new
// DISCOVER or REQUEST (after a restart, a replayed RELEASE arriving after
// the client's new DORA would free the lease the ISP just granted again).
// It reports false when one of isp's could not be sent (the new message
// must wait), and upTo, the highest ID of isp's now queued or done (the
// ISP's answer to the new message proves them on the wire:
// completeAnswered). Another ISP's are tried too but hold nothing back: a
// RELEASE to the ISP a device left cannot free its lease at the new one,
// and that ISP may be the one that is unreachable.
func (p *Proxy) flushIntentsOf(mac uint64, isp string) (upTo uint64, ok bool) {
	ok = true
	for _, pi := range p.intents.ofMAC(mac) {
		sent := p.sendIntent(pi)
		if pi.in.ISP != isp {
			continue
		}
		if !sent {
			ok = false
		} else {
			upTo = max(upTo, pi.in.ID)
		}
	}
	return upTo, ok
}

// revokeMessage builds the DHCPRELEASE ispmux sends the ISP on a
// subscriber's behalf when it revokes its binding: the lease's address,
// client identifier, server identifier and Option 82, from our uplink
// address as giaddr, so the server finds and frees the lease it granted.
func (p *Proxy) revokeMessage(b subscribers.Binding, isp *ISP, c *Circuit, why string) []byte {
	op82 := b.Option82
	if len(op82) == 0 && c != nil {
		// A binding stored before schema 2 has no Option 82: the one
		// its relay would carry now.
		ri := p.relayInfo(c, isp, binding.MAC48(b.MAC), b.Customer, false)
		op82 = ri.encode()
	}
	var xid dhcpv4.TransactionID
	_, _ = rand.Read(xid[:])
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease),
		dhcpv4.WithTransactionID(xid),
		dhcpv4.WithHwAddr(net.HardwareAddr(b.MAC[:])),
		dhcpv4.WithClientIP(net.IP(b.IP.AsSlice())),
		dhcpv4.WithGatewayIP(net.IP(isp.Addr.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptMessage(why)),
	}
	if sid := b.ServerID; sid.IsValid() {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(sid.AsSlice()))))
	}
	if len(b.ClientID) > 0 {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, b.ClientID))
	}
	if len(op82) > 0 && len(op82) <= 255 {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, op82))
	}
	m, err := dhcpv4.New(mods...)
	if err != nil {
		return nil
	}
	m.HopCount = 1
	return m.ToBytes()
}

// releaseIntent is the intent to send isp revokeMessage's RELEASE of b
// (nil if it cannot be built).
func (p *Proxy) releaseIntent(b subscribers.Binding, isp *ISP, c *Circuit, why string) *subscribers.Intent {
	msg := p.revokeMessage(b, isp, c, why)
	if msg == nil {
		return nil
	}
	return &subscribers.Intent{Kind: subscribers.IntentRelease, ISP: isp.Name, MAC: b.MAC, Access: b.Access, VLAN: b.VLAN, IP: b.IP, Message: msg}
}

// revokeLocked ends the binding b (held under sk if ispmux holds it),
// sk's stripe of subMu held, because it no longer matches its registration
// or cannot forward: the ISP gets a RELEASE on the subscriber's behalf,
// through an intent. (A start's revocations are endEach's, in batches.)
func (p *Proxy) revokeLocked(sk subKey, b subscribers.Binding, why string) bool {
	in, e := p.revocationEnd(b, why)
	if !p.endBindingLocked(sk, b.Access, in, e) {
		return false
	}
	// The client still believes it holds the address: its next REQUEST
	// for it gets a NAK from ispmux (serveRequest: not its binding at its
	// ISP), never relayed (a new ISP's server that is not authoritative
	// would stay silent and strand it).
	p.noteRevoked(sk, b.IP)
	return true
}

// noteRevoked counts a revocation of sk's binding of ip, committed, and
// remembers the address: should its registration be gone too, its MAC is
// unknown, and its REQUEST for the address is NAKed all the same
// (revoked.go).
func (p *Proxy) noteRevoked(sk subKey, ip netip.Addr) {
	p.count("binding_revoked")
	now := p.now()
	p.revokedIPs.note(sk, ip, now.Add(p.leaseMaxFor(now)))
}

// addrOf is a 4-byte address as netip.Addr (invalid if not 4 bytes).
func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip.To4())
	return a
}
