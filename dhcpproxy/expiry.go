package dhcpproxy

import (
	"time"

	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
)

// expiryHeap orders lease ends for the expiry scan (leaseTable.expired;
// atheap.go): finding the leases that ran out costs O(log n) each instead
// of a walk of every lease on every tick. Entries are never updated or removed in
// place: a lease renewed or ended leaves its old entry behind, recognised
// as stale when it comes up (its lease is gone or ends at another time),
// and the heap is rebuilt from the leases when stale entries outnumber
// them, so its size stays within a small multiple of the leases.
type expiryHeap []expiryEntry

type expiryEntry struct {
	at int64 // the lease's end, Unix nanoseconds
	k  subKey
}

func (e expiryEntry) dueAt() int64 { return e.at }

// noteExpiry records that sk's lease l ends (t.mu held).
func (t *leaseTable) noteExpiry(sk subKey, l *lease) {
	if len(t.exp) > 3*t.m.Len()+1024 {
		t.rebuildExpiry()
	}
	t.exp = pushAt(t.exp, expiryEntry{l.expires, sk})
}

// rebuildExpiry makes the heap hold one entry per lease (t.mu held).
func (t *leaseTable) rebuildExpiry() {
	h := t.exp[:0]
	if n := t.m.Len(); cap(h) < n {
		h = make(expiryHeap, 0, n+n/2)
	}
	t.m.Range(func(k subKey, l lease) bool {
		h = append(h, expiryEntry{l.expires, k})
		return true
	})
	heapifyAt(h)
	t.exp = h
}

// expiredAt returns the leases that ended at or before now, limit at
// most, each once, the oldest first (t.mu held). Stale entries are dropped; those of
// the leases returned go back on the heap, so a lease whose end the store
// refused comes up again at the next scan (once ended, its entry is
// stale), and those past limit stay on it for the next scans: a mass
// expiry (an area's power cut, a million leases due in one tick) costs a
// scan O(limit log n) under the table's lock, not a million pops and
// pushes.
func (t *leaseTable) expiredAt(now time.Time, limit int) []held {
	var out []held
	var due []expiryEntry
	var seen map[subKey]bool
	cut := now.UnixNano()
	for len(t.exp) > 0 && t.exp[0].at <= cut && len(out) < limit {
		var e expiryEntry
		e, t.exp = popAt(t.exp)
		if l, ok := t.m.Get(e.k); ok && l.expires == e.at && !seen[e.k] {
			// Once: a lease put again with the same end (its flags
			// changed) has two entries, and a batch of ends must not
			// hold it twice (two expired events).
			if seen == nil {
				seen = make(map[subKey]bool)
			}
			seen[e.k] = true
			out = append(out, held{e.k, l})
			due = append(due, e)
		}
	}
	for _, e := range due {
		t.exp = pushAt(t.exp, e)
	}
	return out
}

// expireLeases ends the leases that ran out (the ISP's ran out with them:
// nothing to tell it), revokeBatch to a store transaction (expireEach),
// expireRound transactions a tick at most, the oldest first: the rest at
// the next ticks.
//
// An area's power cut has its modems' leases, 100k to a million, run out
// within minutes, most of them in a few ticks. One transaction each, even
// 64 side by side through the store's group commit (~21 an fsync), held
// one tick, and the transactions' timeouts, probes and intents behind it,
// 7.9 s at 20k and 47 s at 100k (a trial, TestMassExpiryInBatches: 935
// and 4737 transactions). Batched, 100k take 196 transactions over 25
// ticks (14.8 s, none over 1 s, on the loaded test machine); a lease
// ended a few ticks late forwards that much past its end, as one the
// tick had not reached yet did before.
func (p *Proxy) expireLeases(now time.Time) {
	// The round's oldest leases, stripe by stripe: a batch of a mass
	// expiry holds a few stripes of subMu for its commit, not all 64.
	due := p.byStripe(p.leases.expired(now, expireRound*revokeBatch))
	for len(due) > 0 {
		k := min(revokeBatch, len(due))
		failpoint.Hit(failpoint.ExpireBeforeCommit)
		p.expireEach(due[:k])
		p.progress.Add(1) // a store commit each (Progress)
		due = due[k:]
	}
}

// expireRound is how many store transactions of expiries (expireEach,
// revokeBatch each) one tick commits at most: 4096 leases. A commit of
// 512 ends took 40–75 ms on the test machine under load (1 s for a
// tick's 8 at the worst; its CPU, ~10 ms, is the lesser part): the
// tick's other timers (a transaction's timeout is 1 s at the least) are
// held up that long at most (16 held them up to 1.4 s), and the leases
// still end at up to 16k a second, faster than the commits go
// (~7k a second measured). A variable for the tests.
var expireRound = 8

// expireEach ends each of hs, whose leases ran out, that its subscriber
// still holds in that version, all in one store transaction
// (Store.EndBindings), each with its expired event: a renewal the ISP
// answered late may have been committed between the scan and here, and
// the renewed binding must not end with the old lease's expiry
// (expiry_superseded; a lease ended meanwhile is not counted again). As
// revokeEach (endBatch), the stripes of hs's subscribers are
// taken in index order and held from the checks to the state changed
// after the commit: no ACK of a subscriber commits between its check and
// its end. It returns how many it ended (0 if the store refused: logged,
// and the leases come up again at the next tick).
func (p *Proxy) expireEach(hs []held) int {
	return p.endBatch(hs, "expiries", func(h held) (subscribers.BindingEnd, bool) {
		l, ok := p.leases.get(h.k)
		if !ok {
			// Ended meanwhile, and counted as what ended it: its
			// RELEASE, a revocation, or an ACK that ended it as
			// run out first (the subscriber's own, or another's of
			// its address or identifier: lapsed_holder.go), expired.
			return subscribers.BindingEnd{}, false
		}
		if !l.same(&h.l) || l.expires != h.l.expires {
			p.count("expiry_superseded")
			return subscribers.BindingEnd{}, false
		}
		h.l = l // its flags as they are now (leaseUnanswered)
		b := p.full(h)
		return subscribers.BindingEnd{Access: b.Access, VLAN: b.VLAN, MAC: b.MAC, Event: expiredEvent(h, b)}, true
	}, func(sk subKey, _ subscribers.BindingEnd, ev subscribers.Event, had bool) {
		p.endedAfterCommit(sk, nil, ev, had)
		p.count("expired")
	})
}

// expiredEvent is the expired event of h's binding b, whose lease ran
// out.
func expiredEvent(h held, b subscribers.Binding) subscribers.Event {
	why := "lease expired"
	if h.l.flags&leaseUnanswered != 0 {
		// After an ISP outage: the timeout events before this one say
		// when; this one says it is why the lease ran out (a trial
		// read "lease expired" as the device gone).
		why = "lease expired: the ISP did not answer the renewals relayed to it past its T1"
	}
	return bindingSubject(b).event(subscribers.EventExpired, b.IP, why)
}

// endExpiredLocked ends h, whose lease ran out, with its expired event
// (the subscriber's lock held); false: the store refused (logged).
func (p *Proxy) endExpiredLocked(h held) bool {
	b := p.full(h)
	return p.endBindingLocked(h.k, b.Access, nil, expiredEvent(h, b))
}
