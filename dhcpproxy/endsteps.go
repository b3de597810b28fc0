package dhcpproxy

import (
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
)

// A binding's end in memory, around its store commit (endBindingTx, and
// the batches: endBatch, endStartBatch): endBeforeCommit, with the
// subscriber's stripe of subMu held, moves its generation on and takes
// its transactions; then endCommitted and endedAfterCommit once the end
// is durable, or endRefused, which leaves the binding and its exchanges
// in flight as they were (those with room left in the table), if the
// store refused it.

// endMark is what endBeforeCommit did, for endCommitted or endRefused.
type endMark struct {
	gen     uint64      // the end's generation (bumpGen)
	had     bool        // ispmux held a lease of the subscriber
	dropped droppedTxns // its transactions taken (dropSub)
}

// endBeforeCommit is a binding end's steps before its commit, sk's
// stripe held (until endCommitted or endRefused): the subscriber moves
// to a new generation (a transaction begun from now on, while the end
// is being committed, is after it) and, if drop, its transactions in
// flight are taken (a RELEASE, DECLINE or revocation: answers to them,
// a renewal sent just before, must not bind it again; parked,
// dropSub). The mark says whether ispmux holds a lease of sk.
//
// None of it ends anything yet: endCommitted does, after the commit
// (a transaction begun before the end no longer current, those taken
// forgotten), while endRefused, the store having refused the end, puts
// the transactions back (within the table's bound). (Before, a refused end had moved the
// generation on and dropped the transactions all the same: the ACK of a
// renewal relayed just before, of a binding that stood, was dropped,
// ack_after_end, and a refused batch of ends, endBatch, did it to up to
// revokeBatch subscribers.) An answer that comes while the end is being
// committed finds no transaction (no_transaction), as it did, committed
// or refused: the client retransmits.
func (p *Proxy) endBeforeCommit(sk subKey, drop bool) endMark {
	m := endMark{gen: p.leases.bumpGen(sk)}
	_, m.had = p.leases.get(sk)
	if drop {
		m.dropped = p.tx.dropSub(sk)
	}
	return m
}

// endCommitted is a binding end's first step after its commit, sk's
// stripe held since endBeforeCommit (m): the transactions begun before
// the end are no longer current (an ACK of one binds nothing,
// ack_after_end), and those taken are forgotten.
func (p *Proxy) endCommitted(sk subKey, m endMark) {
	p.leases.commitGen(sk, m.gen)
	p.tx.unpark(sk, m.dropped, false, 0, 0, time.Time{}, 0)
	if len(m.dropped.keys) > 0 {
		p.count("transactions_dropped_at_end")
	}
}

// endRefused undoes endBeforeCommit (m) of an end the store refused,
// sk's stripe held since: the binding stands, the transactions taken
// (not answered meanwhile) are pending again, and the subscriber's
// generation, moved on, is still current for a transaction begun before
// it (leaseTable.current): the ACK of a renewal relayed just before
// binds. A transaction taken finds no room when the table, or its ISP's
// share of it, filled while the end was being committed (the slots it
// freed taken by other clients' messages): it is dropped, as begin drops
// a new one (counted transactions_dropped_pending_full), and its answer
// finds no transaction; the client retransmits. One put back has the
// ISP's time (the Timeout) again from now: an answer while it was parked
// went unheard (txn.putBack).
func (p *Proxy) endRefused(sk subKey, m endMark) {
	lim := p.lim.Load()
	for range p.tx.unpark(sk, m.dropped, true, lim.MaxPending, oneShare(lim.MaxPending, len(p.isps)), p.now(), lim.Timeout) {
		p.count("transactions_dropped_pending_full")
	}
}

// endedAfterCommit is a binding end's steps after its commit (of sk's
// binding, with intent in as stored, nil if none, and the event ev as
// stored), sk's stripe held: the lease and forwarding entry removed (had:
// ispmux held a lease), the event logged, the intent queued and sent.
func (p *Proxy) endedAfterCommit(sk subKey, in *subscribers.Intent, ev subscribers.Event, had bool) {
	if in != nil {
		failpoint.Hit(failpoint.EndAfterIntent)
	}
	if had {
		p.leases.remove(sk)
		p.tables.Unbind(sk.circuit.port, sk.circuit.vlan, sk.mac)
	}
	p.logEvent(ev)
	if in != nil {
		p.intents.add(*in, false)
		p.sendIntent(pendingIntent{*in, false})
	}
}

// droppedTxns is what dropSub took of a subscriber: its transactions'
// keys (parked) and the OFFER it remembered, for unpark.
type droppedTxns struct {
	keys     []pendKey
	offer    offer
	hadOffer bool
}

// dropSub takes every transaction of subscriber sk from pending, as its
// binding's end (its own RELEASE or DECLINE, or a revocation) is about to
// be committed: an answer to a REQUEST it sent just before must not bind
// it again — the ISP processed that REQUEST before the RELEASE and holds
// no lease any more. They are parked until the end's commit is known
// (unpark): a refused end ends nothing, and they are put back. It finds
// them through the index by subscriber (txns.bySub): its cost is the
// subscriber's transactions', not the table's. A key another
// subscriber's end still has parked (the same MAC and xid on another
// circuit) is parked for this one now: that end's unpark leaves it alone.
func (x *txns) dropSub(sk subKey) droppedTxns {
	x.mu.Lock()
	defer x.mu.Unlock()
	d := droppedTxns{keys: x.keysOf(sk)}
	for _, k := range d.keys {
		x.parked[k] = x.pending[k]
		x.parkMem.note(len(x.parked))
		x.del(k)
	}
	d.offer, d.hadOffer = x.offered[sk]
	delete(x.offered, sk)
	return d
}

// unpark ends the parking of the transactions dropSub took (d), once
// their subscriber's end is committed (restore false: they are
// forgotten) or refused (restore true: each not answered meanwhile goes
// back to pending, unless a retransmission began another under its key,
// which takes what it would have of it (carryParked), and the OFFER
// remembered is remembered again unless another was). A
// transaction put back counts against the table's bound as begin's do
// (max in all, share at its ISP, oneShare): one that finds no room (the
// slots freed by dropSub taken meanwhile) is dropped, the transactions
// begun meanwhile being live exchanges; unpark returns how many. One put
// back has its deadline measured from now (timeout, as begin gives a new
// message; resume).
func (x *txns) unpark(sk subKey, d droppedTxns, restore bool, max, share int, now time.Time, timeout time.Duration) (full int) {
	if len(d.keys) == 0 && !d.hadOffer {
		return 0
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, k := range d.keys {
		t, ok := x.parked[k]
		if !ok || t.sub != sk {
			// Answered meanwhile, or parked since by another
			// subscriber's end (the same MAC and xid on another
			// circuit, dropSub), which is that end's to unpark.
			continue
		}
		x.unparkKey(k)
		if !restore {
			continue
		}
		if n := x.pending[k]; n != nil {
			if n.sub == t.sub {
				carryParked(n, t)
				x.dueEarlier(n) // the REQUEST taken over, due
			}
			continue
		}
		if x.noRoom(k, max, share) {
			full++
			continue
		}
		x.put(k, t)
		resume(t, now, timeout)
	}
	if _, again := x.offered[sk]; restore && d.hadOffer && !again {
		// Behind later ones in offerQ: forgotten once those are, up to
		// offerMemory late (begin reads its age).
		x.remember(sk, d.offer)
	}
	return full
}

// resume gives t, put back at now after a park, the ISP's time to answer
// (timeout) from now, where its deadline (and the due of a REQUEST it took
// over) ran from its relay: an answer while it was parked found no
// transaction and went unheard (no_transaction), and a deadline passed
// meanwhile reported the ISP silent as soon as it was put back (a
// review). Its retransmissions' copies before the park wait with it (no
// second timeout of their own, txn.resent), and its timeout says it was
// put back (txn.putBack; the REQUEST's, overtaken.putBack). relayed
// stays its first relay (the ISP's answer time, answered): a copy the
// client sends once it is back waits deadline-relayed (expire), longer
// than timeout by the time before the put-back (x.mu held).
func resume(t *txn, now time.Time, timeout time.Duration) {
	t.deadline = later(t.deadline, now.Add(timeout))
	if o := t.overtook; o != nil && !o.due.IsZero() {
		o.due = later(o.due, now.Add(timeout))
		o.putBack = true
	}
	t.resent = time.Time{}
	t.putBack = true
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}

// carryParked gives n, a transaction a retransmission of the subscriber
// began under the key of t while t was parked (an end being committed),
// the end refused, what begin would have kept of t had t been pending
// (begin): a DISCOVER that follows a REQUEST notes the REQUEST it took
// over (overtaken: the REQUEST's late answer is not the DISCOVER's, its
// silence still a timeout); one that follows a DISCOVER is the same
// selection (the server whose OFFER t took stays chosen, the rapid-commit
// RELEASEs sent are not sent again, the REQUEST t took over is still
// t's); a REQUEST or INFORM keeps the server chosen. A retransmission of
// t's message (the same type) also keeps its history, as begin keeps a
// retransmission's (carryHistory). What n learnt itself meanwhile (an
// OFFER taken, a REQUEST it took over, a refusal or a note of its own)
// stands (x.mu held).
//
// n that moved on to another message meanwhile (txn.retyped) is no
// retransmission of t's, even if it came back to t's type: begin, t
// pending, would have started that message's history afresh (a REQUEST
// after a DISCOVER after t's REQUEST is a new exchange), and a DISCOVER
// after another message a new selection, with the REQUEST it took over
// its own. Before, such a REQUEST took the refusal of t's (its silence
// then never reported as a timeout) and t's first relay, and such a
// DISCOVER the server whose OFFER t had taken (every other server's
// OFFER refused).
func carryParked(n, t *txn) {
	if n.msgType == t.msgType && !n.retyped {
		carryHistory(n, t)
	}
	switch {
	case n.retyped && n.msgType == dhcpv4.MessageTypeDiscover:
	case n.msgType == dhcpv4.MessageTypeDiscover && t.msgType == dhcpv4.MessageTypeRequest:
		if n.overtook == nil {
			n.overtook = overtakenOf(t)
		}
	case n.msgType == dhcpv4.MessageTypeDiscover && t.msgType == dhcpv4.MessageTypeDiscover:
		if !n.offerFrom.IsValid() && !n.serverID.IsValid() {
			n.serverID, n.offerFrom = t.serverID, t.offerFrom
		}
		if len(n.released) == 0 {
			n.released = t.released
		}
		if n.overtook == nil {
			n.overtook = t.overtook
		}
	case n.msgType != dhcpv4.MessageTypeDiscover:
		if !n.serverID.IsValid() {
			n.serverID, n.offerFrom = t.serverID, t.offerFrom
		}
	}
}

// carryHistory gives n, a retransmission of t's message begun while t was
// parked, what begin keeps of the message's exchange across a
// retransmission: when it was first relayed (relayed: the ISP's answer
// time, answered, and the REQUEST-to-ACK time are the exchange's, not the
// latest copy's), an answer refused (refused: its end is no silence of
// the ISP, and reported as rejected already), a DISCOVER's NAK (nakBy:
// its end says the ISP refused, not that it was silent) and the notes its
// timeout names (unreach, unlisted, malformed, otherNak). Before, they were lost: a
// refused OFFER's or a NAKed DISCOVER's end was reported as the ISP's
// silence, and the answer time counted from the retransmission. n's
// deadline and resent stay its own: from its relay, heard since, where an
// answer to t while it was parked went unheard (resume). A later copy of
// n's waits deadline-relayed (expire), longer than the ISP's time by n's
// relay less t's, as one after a put-back does (x.mu held).
func carryHistory(n, t *txn) {
	if !t.relayed.IsZero() && t.relayed.Before(n.relayed) {
		n.relayed = t.relayed
	}
	n.refused = n.refused || t.refused
	if !n.nakBy.IsValid() {
		n.nakBy = t.nakBy
	}
	if n.unreach.at.IsZero() {
		n.unreach = t.unreach
	}
	if !n.unlisted.IsValid() {
		n.unlisted = t.unlisted
	}
	if !n.malformed.IsValid() {
		n.malformed = t.malformed
	}
	if !n.otherNak.IsValid() {
		n.otherNak = t.otherNak
	}
}
