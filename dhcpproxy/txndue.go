package dhcpproxy

import "math"

// The pending transactions' deadlines, earliest first (txns.dues): expire
// looks at the transactions due, not at every one pending. It walked the
// whole table at every tick under txns.mu, which every DHCP message takes:
// at dhcp.max_pending's bound (1M), 0.11–0.46 s a tick of four a second,
// in an outage's recovery, when the lock is busiest.
//
// A transaction has one valid entry at a time, at or before its earliest
// due (its deadline, or the due of the REQUEST it took over): the entry
// whose seq is its qSeq. Whatever moves a due later leaves the entry as
// it is: it comes up early, finds nothing due and queues the transaction
// again (expire). Whatever may move one earlier queues it again at once
// (dueEarlier: begin's new message, an OFFER, a REQUEST taken over, a
// parked exchange's history carried). An entry whose transaction ended,
// or was queued again, stays until it comes up, or until the heap holds
// twice the transactions and shrinkFloor more and is rebuilt from the
// table (rebuildDues, as the moves' heap, rebuildCuts); shrink rebuilds it
// with the table. Entries hold a key and a sequence number, no pointer: a
// transaction ended is not kept alive by its entry, and the GC has
// nothing to scan in the heap.

// noDue is the due of a transaction with no deadline set yet.
const noDue = math.MaxInt64

// dueEntry is a pending transaction's earliest due (monoNanos) in
// txns.dues: the one under pk, if its qSeq is still seq.
type dueEntry struct {
	at  int64
	seq uint64
	pk  pendKey
}

// earliestDue is when t next needs expire's look: its deadline, or the
// due of the REQUEST it took over if that is earlier (noDue: neither set).
func earliestDue(t *txn) int64 {
	d := t.deadline
	if o := t.overtook; o != nil && !o.due.IsZero() && (d.IsZero() || o.due.Before(d)) {
		d = o.due
	}
	if d.IsZero() {
		return noDue
	}
	return monoNanos(d)
}

// queueDue gives t, pending under t.pk, a new entry at its earliest due,
// which makes its others stale (x.mu held).
func (x *txns) queueDue(t *txn) {
	x.dueSeq++
	t.qSeq, t.qAt = x.dueSeq, earliestDue(t)
	if t.qAt == noDue {
		return
	}
	if len(x.dues) >= 2*len(x.pending)+shrinkFloor {
		x.rebuildDues() // t's entry among them
		return
	}
	x.dues = pushAt(x.dues, dueEntry{t.qAt, t.qSeq, t.pk})
}

// dueEarlier queues t again if its earliest due is now before its entry
// (x.mu held). A transaction no longer pending is left alone.
func (x *txns) dueEarlier(t *txn) {
	if x.pending[t.pk] == t && earliestDue(t) < t.qAt {
		x.queueDue(t)
	}
}

// rebuildDues remakes the heap from the table, an entry for each
// transaction with a due, in room for twice as many (x.mu held).
func (x *txns) rebuildDues() {
	x.dues = make([]dueEntry, 0, 2*len(x.pending))
	for _, t := range x.pending {
		x.dueSeq++
		t.qSeq, t.qAt = x.dueSeq, earliestDue(t)
		if t.qAt != noDue {
			x.dues = append(x.dues, dueEntry{t.qAt, t.qSeq, t.pk})
		}
	}
	heapifyAt(x.dues)
}

func (e dueEntry) dueAt() int64 { return e.at }

// rapidAt is a rapid-commit win (w, under pk) at its time (monoNanos of
// its until) in txns.rapidAt.
type rapidAt struct {
	at int64
	pk pendKey
	w  *rapidWin
}

func (e rapidAt) dueAt() int64 { return e.at }

// winRapid remembers w under pk until its time, when expire forgets it
// (x.mu held). A win replaced under pk before then leaves its entry, which
// expire passes over; each win has one, so the heap holds no more entries
// than wins were made within dhcp.timeout.
func (x *txns) winRapid(pk pendKey, w *rapidWin) {
	x.rapid[pk] = w
	x.rapidAt = pushAt(x.rapidAt, rapidAt{monoNanos(w.until), pk, w})
}
