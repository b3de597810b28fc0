package dhcpproxy

import (
	"net/netip"
	"sync"
	"time"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// The client identifier rule at the ACK (bindAndAck). checkClientID runs
// when a subscriber's DISCOVER or REQUEST is relayed, not when the ISP's
// ACK binds, so it alone let two bindings hold one identifier at one ISP:
// two MACs asking with one identifier, each found free when relayed (its
// holder's binding revoked by a reclaim, say, and the owner's and the
// holder's next exchanges under way together), were both bound by their
// ACKs, until the owner's next message reclaimed it again (a review). So
// the ACK applies the rule too, as the relay did, against the bindings
// made meanwhile (clientIDHolder, the same index): an identifier another
// MAC's live binding holds at the ISP is refused, unless it is the
// asker's own hardware identifier; then the holder's binding is revoked
// (its RELEASE recorded, client_id_reclaimed), within the bound of
// mayReclaim, and the ACK binds. A holder whose lease ran out is ended
// as the tick would end it, whatever the identifier (lapsed_holder.go:
// client_id_lapsed), and the ACK decided again. Refused (ack_client_id_taken, or the bound's
// client_id_reclaim_refused and client_id_reclaim_limited), nothing is
// bound and the ACK is not delivered: the subscriber is NAKed (it starts
// over, and its DISCOVER meets the relay's rule, which says why in the
// same way), a rejected event names the holder, and the lease the ISP
// committed is released through an intent, stored before anything is
// sent (releaseRefused: not if a binding holds its address; an ISP that
// keys leases by the identifier alone gives the two one address, which
// the address check, bind_conflict, refuses first).
//
// ACKs with one identifier at one ISP are decided one at a time: a stripe
// of cidMu, by the identifier's key, is held from the check to the
// binding's commit and its entry in the index, and across the holder's
// revocation or end (taken before any subscriber's stripe, never under one). Two
// ACKs of different identifiers share a stripe one time in cidStripes,
// and one then waits for the other's commit (a group commit window): the
// subscriber's stripe (64 of them), held across the commit too, bounds
// the commits under way more.

// cidStripes is the number of stripes of Proxy.cidMu (8 KiB of them).
const cidStripes = 1024

// cidLocks serialises the ACKs that bind one client identifier at one
// ISP, by its cidKey.
type cidLocks [cidStripes]sync.Mutex

// lock locks key's stripe; the caller unlocks it.
func (l *cidLocks) lock(key uint32) *sync.Mutex {
	m := &l[key%cidStripes]
	m.Lock()
	return m
}

// ackCID is what the client identifier rule says of an ACK (ackClientID).
type ackCID uint8

const (
	ackCIDFree    ackCID = iota // no other MAC's binding holds it: bind
	ackCIDRefused               // another's holds it: not bound (counted, told)
	ackCIDReclaim               // the asker's own: revoke the holder's, then bind
	ackCIDLapsed                // the holder's lease ran out: end it, then decide again
)

// ackClientID applies the client identifier rule to t's ACK of ip
// (subject subj) at t's ISP, with t's subscriber's stripe of subMu held.
// A holder whose lease ran out (lapsedCID) is no obstacle: ackCIDLapsed
// (only if do.cidLapsed), to be ended as the tick would, whatever the
// identifier; unended, the holder whose end the store refused, is told
// as such. A holder whose lease is live meets the rule: do.reclaim
// false, the asker's own identifier held by another is refused too (the
// holder was revoked already, or could not be: unrevoked, the holder
// whose revocation the store refused, is told as such). On
// ackCIDReclaim it returns the holder and the bound's verdict, on
// ackCIDLapsed the holder.
func (p *Proxy) ackClientID(t *txn, subj subject, ip netip.Addr, do passes, unrevoked, unended held) (held, reclaimVerdict, ackCID) {
	mac := t.sub.mac
	h, taken := p.clientIDHolder(t.isp.Index, cidKey(t.isp.Index, t.clientID), t.clientID, mac)
	if !taken {
		return held{}, 0, ackCIDFree
	}
	if lapsedCID(h) {
		if do.cidLapsed {
			return h, 0, ackCIDLapsed
		}
		if h.is(unended) {
			// Its lease ran out, and the store refused to end it
			// (store_error, logged): not "found free" either.
			p.refuse(subscribers.EventRejected, subj, ip, "client identifier of subscriber "+binding.MACString(h.k.mac)+
				"'s binding at this ISP, whose lease ran out; not ended: the store refused to end that binding; not bound")
			return held{}, 0, ackCIDRefused
		}
		// Another lapsed holder after the first's end (two bindings
		// with one identifier): the rule as for a live one.
	}
	if hardwareID(t.clientID, mac) && do.reclaim {
		v := p.mayReclaim(t.circuit, t.reg, t.isp, h, mac, p.now(), "not bound")
		if v == reclaimRefused {
			return held{}, v, ackCIDRefused
		}
		return h, v, ackCIDReclaim
	}
	if h.is(unrevoked) {
		// The reclaim was made, and the store refused ending the
		// holder's binding (store_error, logged): not "found free".
		p.refuse(subscribers.EventRejected, subj, ip, "client identifier is this subscriber's hardware address, held by subscriber "+
			binding.MACString(h.k.mac)+"'s binding at this ISP; not reclaimed: the store refused to end that binding; not bound")
		return held{}, 0, ackCIDRefused
	}
	p.count("ack_client_id_taken")
	p.refuse(subscribers.EventRejected, subj, ip, "client identifier of subscriber "+binding.MACString(h.k.mac)+
		"'s binding at this ISP, found free when this exchange was relayed; not bound")
	return held{}, 0, ackCIDRefused
}

// reclaimAtACK revokes holder h's binding (held by t's subscriber's
// identifier, its own hardware one; v the bound's verdict), as
// checkClientID does, with cidMu's stripe held and no subscriber's. It
// reports whether h still holds that lease, not revoked: the store
// refused (logged). Either way the ACK is decided again.
func (p *Proxy) reclaimAtACK(t *txn, h held, v reclaimVerdict) bool {
	why := "its client identifier is subscriber " + binding.MACString(t.sub.mac) +
		"'s hardware address, and the ISP acknowledged that subscriber's lease with it"
	if !p.reclaimHeld(h, why, v, p.now()) {
		l, ok := p.leases.get(h.k) // or it ended meanwhile
		return ok && l.same(&h.l)
	}
	// The subscriber's next messages with the identifier wait for the
	// holder's RELEASE, as after a reclaim at the relay.
	p.waitForHolder(t.isp, t.clientID, h.k.mac)
	return false
}

// reclaimHeld revokes holder h's binding for a reclaim of its client
// identifier (why: the revocation's reason; v: the bound's verdict, at
// now), as checkClientID and reclaimAtACK do: only if h still holds that
// lease (revokeHeld: it may have ended meanwhile, and revoked again its
// ISP would get a second RELEASE). It reports whether it revoked it.
func (p *Proxy) reclaimHeld(h held, why string, v reclaimVerdict, now time.Time) bool {
	if !p.revokeHeld(h, why) {
		return false
	}
	p.count("client_id_reclaimed")
	if v == reclaimBounded {
		p.reclaimed.note(h.k.mac, now)
	}
	return true
}

// waitForHolder has identifier cid at isp wait for holder's intents to
// isp not yet queued (reclaimWaits), and reports whether there were any.
// The holder's intents to another ISP (that ISP unreachable) hold nothing
// of isp's back (a review: it held the owner for as long as the other ISP
// was down).
func (p *Proxy) waitForHolder(isp *ISP, cid []byte, holder uint64) bool {
	var ids []uint64
	for _, pi := range p.intents.ofMAC(holder) {
		if pi.in.ISP == isp.Name && !p.intents.onWire(pi.in.ID) {
			ids = append(ids, pi.in.ID)
		}
	}
	if len(ids) == 0 {
		return false
	}
	p.reclaims.wait(isp.Index, cid, ids, 0)
	return true
}
