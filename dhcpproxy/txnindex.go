package dhcpproxy

import (
	"slices"
)

// The pending transactions' table and its index by subscriber: every
// change to txns.pending goes through put and del, which keep perISP and
// the index (bySub, bySubMore) in step with it, x.mu held; del also gives
// back the memory of a burst once it has drained (shrink), as unparkKey
// does for the transactions parked.

// put stores t under pk, replacing any transaction there (another
// circuit's, begin) (x.mu held).
func (x *txns) put(pk pendKey, t *txn) {
	old, had := x.pending[pk]
	switch {
	case !had:
		x.perISP[pk.isp]++
		x.index(t.sub, pk)
	case old.sub != t.sub:
		x.unindex(old.sub, pk)
		x.index(t.sub, pk)
	}
	x.pending[pk] = t
	x.mem.note(len(x.pending))
	t.pk = pk
	x.queueDue(t)
}

// del removes the transaction under pk, if any (x.mu held).
func (x *txns) del(pk pendKey) {
	if t, ok := x.pending[pk]; ok {
		delete(x.pending, pk)
		x.perISP[pk.isp]--
		x.unindex(t.sub, pk)
		x.shrink()
	}
}

// shrink remakes pending and its index (bySub, bySubMore) sized for what
// they hold once it has fallen to a quarter of their peak (x.mu held). A
// Go map never gives back the room it grew into: after an outage's burst
// of a million exchanges, each waiting out dhcp.timeout, then answered or
// timed out, the three maps kept a million entries' worth of memory for
// good (TestPendingReleasesMemory measures it). Remaking them copies the
// quarter left, paid for by the three quarters deleted since the peak (the
// peak is then what was copied): linear in the transactions, never a copy
// per operation, and a million drained in one go remakes the maps at
// 250K, 62K, 16K and 4K left. A loop over pending that deletes through
// del ranges on over the map it started with: its entries not yet reached
// are still pending in the new one. The deadlines' heap is rebuilt with
// them (rebuildDues), its entries of transactions ended dropped.
//
// The copy is made under x.mu: on the 2-CPU lab VM, 0.1–0.36 s for the
// 250K left of a peak of a million, once (expire's tick walked the whole
// table under the same lock, 0.11–0.46 s a tick with a million pending,
// until it took the transactions due from the heap, txndue.go). Measured with 200K transactions drained
// (TestPendingReleasesMemory), the heap after a GC kept 23 MB of the
// burst without the remaking, 0.4 MB with.
func (x *txns) shrink() {
	if x.mem.due(len(x.pending)) {
		x.pending, x.bySub, x.bySubMore = remade(x.pending), remade(x.bySub), remade(x.bySubMore)
		x.rebuildDues() // and the deadlines' heap, its stale entries dropped
	}
}

// unparkKey forgets the transaction parked under pk (x.mu held), and
// remakes parked sized for what it holds once that has fallen to a
// quarter of its peak, as shrink does pending. Its peak is the
// transactions of the ends being committed at once (one batch of
// revokeBatch subscribers, or one end a stripe of subMu), each as many as
// its subscriber has pending: a few hundred in an outage's burst, below
// shrinkFloor, but a subscriber may have a transaction under each xid it
// sent (up to its MACBurst within the ISP's timeout), and the ends of
// such subscribers park that many, up to dhcp.max_pending.
func (x *txns) unparkKey(pk pendKey) {
	delete(x.parked, pk)
	if x.parkMem.due(len(x.parked)) {
		x.parked = remade(x.parked)
	}
}

// noRoom reports whether a transaction new under pk would pass the
// table's bound: max pending in all, share at pk's ISP (begin, and unpark
// putting one back) (x.mu held).
func (x *txns) noRoom(pk pendKey, max, share int) bool {
	return len(x.pending) >= max || x.perISP[pk.isp] >= share
}

// index notes that sk has a transaction pending under pk (x.mu held).
func (x *txns) index(sk subKey, pk pendKey) {
	if _, ok := x.bySub[sk]; !ok {
		x.bySub[sk] = pk
		return
	}
	x.bySubMore[sk] = append(x.bySubMore[sk], pk)
}

// unindex forgets that sk has a transaction pending under pk (x.mu
// held): one of bySubMore's, if any, takes the place of bySub's.
func (x *txns) unindex(sk subKey, pk pendKey) {
	more := x.bySubMore[sk]
	if first, ok := x.bySub[sk]; ok && first == pk {
		if len(more) == 0 {
			delete(x.bySub, sk)
			return
		}
		x.bySub[sk] = more[len(more)-1]
		more = more[:len(more)-1]
	} else if i := slices.Index(more, pk); i >= 0 {
		more[i] = more[len(more)-1]
		more = more[:len(more)-1]
	} else {
		return
	}
	if len(more) == 0 {
		delete(x.bySubMore, sk)
	} else {
		x.bySubMore[sk] = more
	}
}

// keysOf returns the keys of sk's pending transactions, a copy (x.mu
// held).
func (x *txns) keysOf(sk subKey) []pendKey {
	first, ok := x.bySub[sk]
	if !ok {
		return nil
	}
	more := x.bySubMore[sk]
	keys := make([]pendKey, 0, 1+len(more))
	return append(append(keys, first), more...)
}
