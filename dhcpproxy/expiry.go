package dhcpproxy

import (
	"container/heap"
	"time"
)

// expiryHeap orders lease ends for the expiry scan (leaseTable.expired):
// finding the leases that ran out costs O(log n) each instead of a walk
// of every lease on every tick. Entries are never updated or removed in
// place: a lease renewed or ended leaves its old entry behind, recognised
// as stale when it comes up (its lease is gone or ends at another time),
// and the heap is rebuilt from the leases when stale entries outnumber
// them, so its size stays within a small multiple of the leases.
type expiryHeap []expiryEntry

type expiryEntry struct {
	at int64 // the lease's end, Unix nanoseconds
	k  subKey
}

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// noteExpiry records that sk's lease l ends (t.mu held).
func (t *leaseTable) noteExpiry(sk subKey, l *lease) {
	if len(t.exp) > 3*t.m.Len()+1024 {
		t.rebuildExpiry()
	}
	heap.Push(&t.exp, expiryEntry{l.expires, sk})
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
	heap.Init(&h)
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
		e := heap.Pop(&t.exp).(expiryEntry)
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
		heap.Push(&t.exp, e)
	}
	return out
}
