package dhcpproxy

import (
	"net/netip"
	"sync"
	"time"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

// The bound on a reclaim (checkClientID). A subscriber whose own hardware
// identifier (01 and its MAC) another MAC's binding holds takes it back by
// revoking that binding. Unbounded, that was a way to cut a neighbour off:
// a holder whose identifier is not its own hardware address (a device
// behind a bridge that rewrites MACs, or one given a cloned identifier 01+X
// on purpose) lost its lease to whoever had MAC X registered at the same
// ISP and asked as X, again at each of its rebinds (a security review).
// ispmux cannot tell from the wire which of the two is the device the
// identifier names, so a reclaim is made only if
//
//   - the holder is of the asker's own customer (its device, behind a
//     bridge before and on the access now: nothing is taken from another
//     subscriber), or the asker's registration is older than the holder's
//     hold on the identifier (registeredBefore holderSince: the asker's
//     Created, when its MAC was registered to its current customer,
//     against the earlier of the holder's Created and its binding's
//     start, Binding.Since): the identifier was a device's of the asker's
//     customer before the holder could have bound with it. A binding
//     follows its registration (a withdrawn registration, or a move to
//     another ISP, ends it), so the holder's registration is a lower
//     bound on when it began holding the identifier, but for a move to
//     another customer of its ISP while bound: the binding is kept, and
//     Created starts again at the move. Since does not (it is carried
//     over by every ACK at the ISP with the identifier: bindingSince), so
//     a registration made between the holder's binding and such a move
//     no longer reclaims from it. The earlier of the two, not Since
//     alone: Since starts again where the hold did not end for the
//     device (its binding taken over on another circuit, or lapsed and
//     bound again), and standing alone it would let a registration made
//     after the holder's, refused before, reclaim after such a restart;
//     the bound errs towards refusing, as it did. A binding stored
//     before Since was (format 5), renewed since or not, has it zero:
//     its registration alone stands, as before. A MAC registered to take
//     the identifier of a neighbour already bound with it is always
//     newer than both, and a device moved to another customer (its ISP's
//     or the operator's move, a claim from the device) counts, as an
//     asker, from its move: taking over an old record gains no age. Two
//     registrations stored before schema 3 and not written since have no
//     Created and are not ordered: nothing stored bounds when the
//     holder's was made from below (Updated is its last write), so either
//     order could hand one subscriber's lease to the other on no
//     evidence; the reclaim is refused, and the operator settles it
//     (docs/OPERATIONS.md).
//   - and, unless the asker's registration is older than the holder's,
//     the holder was not revoked by a reclaim within reclaimHoldoff
//     (reclaimHoldoffs): two devices of one customer that keep taking
//     one identifier from each other cut the holder off at most once in
//     that time. An older asker is not held off: a squatter its reclaim
//     revoked, binding with the identifier again before the owner's
//     exchange ended (between its DISCOVER and REQUEST), kept the owner
//     off for the hold-off (a review). Nor did the hold-off shield a
//     holder from an older registration made to cut it off: such an
//     asker, once bound, keeps the identifier by renewing it, and the
//     holder is refused it (client_id_taken) all the same; the hold-off
//     only spaced out the cut-offs of a holder that took the identifier
//     back whenever the asker let it go. So an older asker that never
//     binds now revokes such a holder at each of its rebinds, where it
//     could keep it off for good by binding.
//
// Refused, the asker's message is not relayed (the identifier stays with
// its holder, which the ISP's server keys the lease by), counted
// (client_id_reclaim_refused, client_id_reclaim_limited) and told in a
// rejected event of the asker that names the holder: two subscribers
// claim one identifier, which the operator settles (revoking or blocking
// one). The refusals lose an owner whose registration is newer than the
// holder's (a replaced device with the MAC a neighbour's clone already
// used; an older neighbour that began squatting a new subscriber's
// identifier): it is kept off, visibly, until the holder's lease ends or
// the operator acts, as before reclaims were made; the cut-offs they stop
// were the attacker's to make, again at each of the victim's rebinds.
//
// A holder whose binding no longer matches its registration (withdrawn,
// blocked, moved, suspended: its binding is ending anyway) is not
// bounded.

// reclaimHoldoff is how long after a reclaim revoked a holder's binding no
// other reclaim may revoke that holder's again, but one by a registration
// older than the holder's.
const reclaimHoldoff = time.Hour

// reclaimVerdict is what the bound says of one reclaim (mayReclaim).
type reclaimVerdict uint8

const (
	reclaimRefused reclaimVerdict = iota // not made: refused, counted and told
	reclaimFree                          // made, not bounded: a stale holder
	reclaimBounded                       // made: the holder's holdoff starts
)

// mayReclaim applies the bound above to the reclaim of identifier cid
// (mac's hardware identifier) from holder h at isp by subscriber mac
// (registration reg) on c, now: on a refusal it counts it and records the
// asker's rejected event naming the holder and what became of its message
// (refused: "not relayed" at the relay, "not bound" at the ACK).
func (p *Proxy) mayReclaim(c *Circuit, reg registry.Entry, isp *ISP, h held, mac uint64, now time.Time, refused string) reclaimVerdict {
	if p.staleHeld(h) != "" {
		return reclaimFree
	}
	holder := binding.MACString(h.k.mac)
	refuse := func(counter, why string) reclaimVerdict {
		p.count(counter)
		p.refuse(subscribers.EventRejected, regSubject(mac, c, reg), netip.Addr{},
			"client identifier is this subscriber's hardware address, held by subscriber "+holder+
				"'s binding at this ISP; not reclaimed: "+why+"; "+refused)
		return reclaimRefused
	}
	hreg, _ := p.reg.Lookup(h.k.mac) // not stale: registered, at isp
	sameCustomer := reg.CustomerID != "" && hreg.CustomerID == reg.CustomerID && hreg.ISP == reg.ISP
	until, heldOff := p.reclaimed.holdoff(h.k.mac, now)
	if sameCustomer && !heldOff {
		return reclaimBounded // its customer's own device: no order needed
	}
	// The age rule: it decides another customer's holder, and lifts the
	// hold-off from an owner registered before the holder.
	older, why := p.registeredBeforeHolder(mac, h)
	switch {
	case older:
		return reclaimBounded
	case !sameCustomer:
		return refuse("client_id_reclaim_refused", why)
	}
	return refuse("client_id_reclaim_limited", "the holder's binding was revoked by a reclaim less than "+
		reclaimHoldoff.String()+" ago (not again before "+until.UTC().Format(time.RFC3339)+")")
}

// registeredBeforeHolder reports whether subscriber mac's registration
// was made before holder h began holding its identifier (registeredBefore
// holderSince), read from the store; if not, why, for the asker's
// rejected event.
func (p *Proxy) registeredBeforeHolder(mac uint64, h held) (bool, string) {
	own, err := p.store.Registration(binding.MACBytes(mac))
	if err != nil {
		return false, "its registration unreadable (" + err.Error() + ")"
	}
	theirs, err := p.store.Registration(binding.MACBytes(h.k.mac))
	if err != nil {
		return false, "the holder's registration unreadable (" + err.Error() + ")"
	}
	// Not read from the store (it cannot be, but a read can fail): not
	// known, as for a binding stored before Since was.
	b, _ := p.stored(h)
	since, bound := holderSince(theirs.Created, b.Since)
	if !registeredBefore(own.Created, since) {
		why := "registered " + createdString(own.Created) + ", not before the holder (" + createdString(theirs.Created)
		if bound {
			why += "; bound with the identifier since " + createdString(b.Since) + ", before it was moved to its customer"
		}
		return false, why + ")"
	}
	return true, ""
}

// holderSince is when the age rule counts a holder's hold on its
// identifier from, for a holder registered to its customer at created
// (zero: before schema 3) whose binding began at since (zero: not known):
// the earlier of the two, since (bound) only if both are known and it is
// the earlier (the holder was moved to its customer while bound).
func holderSince(created, since time.Time) (time.Time, bool) {
	if !created.IsZero() && !since.IsZero() && since.Before(created) {
		return since, true
	}
	return created, false
}

// registeredBefore reports whether a registration created at a was made
// before one created at b. A zero Created (stored before schema 3, not
// written since) is before any other; two zeros are not ordered.
func registeredBefore(a, b time.Time) bool {
	switch {
	case a.IsZero():
		return !b.IsZero()
	case b.IsZero():
		return false
	}
	return a.Before(b)
}

// createdString is a registration's Created for an event.
func createdString(t time.Time) string {
	if t.IsZero() {
		return "before schema 3"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// reclaimHoldoffs holds, by holder MAC, when a reclaim last revoked its
// binding (mayReclaim), for reclaimHoldoff. Entries older than that are
// dropped by a note at least holdoffPruneEvery after the last that
// dropped them (holdoff reads an entry's age, so one kept a little
// longer changes nothing): the map holds the reclaims of about the last
// reclaimHoldoff, each of which took a subscriber asking with its own
// identifier (an older registration, or the holder's customer's). RAM
// only: a restart forgets them (one more reclaim of each holder per
// restart, which no subscriber can cause), while the age rule, read from
// the store, stands.
type reclaimHoldoffs struct {
	mu     sync.Mutex
	m      map[uint64]time.Time
	pruned time.Time // when a note last walked m
	walks  int       // the walks (tests)
}

// holdoffPruneEvery spaces reclaimHoldoffs' walks: each note walked the
// whole map, the reclaims of the last hour, so k reclaims within an hour
// cost k²/2 steps under the lock.
const holdoffPruneEvery = time.Minute

// note records that holder's binding was revoked by a reclaim at now.
func (r *reclaimHoldoffs) note(holder uint64, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[uint64]time.Time{}
	}
	if d := now.Sub(r.pruned); d >= holdoffPruneEvery || d < 0 {
		r.pruned = now
		r.walks++
		for m, at := range r.m {
			if now.Sub(at) >= reclaimHoldoff {
				delete(r.m, m)
			}
		}
	}
	r.m[holder] = now
}

// holdoff reports whether holder's binding was revoked by a reclaim less
// than reclaimHoldoff before now, and until when another may not be made.
func (r *reclaimHoldoffs) holdoff(holder uint64, now time.Time) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.m[holder]
	if !ok || now.Sub(at) >= reclaimHoldoff {
		return time.Time{}, false
	}
	return at.Add(reclaimHoldoff), true
}
