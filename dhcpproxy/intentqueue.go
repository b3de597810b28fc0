package dhcpproxy

import (
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// intentQueue owns the intents not yet completed; mu guards it and is held
// only inside these methods.
//
// A tick's work is what it sends and completes, not the backlog (a
// review: a tick copied and sorted every pending intent, 5 s at a
// million with an ISP's next hop unresolved, ~2 µs now:
// BenchmarkTickIntentBacklog): the intents not sent yet
// wait in one queue per ISP, oldest (lowest ID) first (toSend), and
// those sent in the order they were queued to the datapath (sentOrder),
// so a tick takes the front of each.
type intentQueue struct {
	mu      sync.Mutex
	pending map[uint64]pendingIntent
	byMAC   map[uint64][]uint64 // intent IDs by subscriber MAC
	sending map[uint64]bool     // claimed by a sender
	// sentAt holds the intents whose message was handed to the datapath
	// and when: completed by the tick once intentSettle has passed (a
	// frame queued for the worker is not on the wire yet; a crash before
	// the completion replays it, which a server takes as a repeat).
	sentAt map[uint64]time.Time
	// toSend holds, per ISP name, the IDs of its intents not sent yet, a
	// min-heap: every pending intent not in sentAt is in its ISP's (but
	// the one a round has taken, until it is sent, completed or put back:
	// takeUnsent, putBack); an ID sent or completed since is dropped
	// when it reaches the front.
	toSend map[string]*idHeap
	// sentOrder holds the intents of sentAt in the order markSent saw
	// them, with their time (sentAt's, or stale: dropped at the front).
	sentOrder []sentMark
	sentHead  int // sentOrder[:sentHead] is consumed
	// mem is the most intents pending since the maps were last made:
	// Go maps keep the buckets of their largest size, so once a backlog
	// has gone the maps are made again (shrinkLocked), at an eighth of it.
	mem mapMem
}

// sentMark is an intent's message queued at at.
type sentMark struct {
	id uint64
	at time.Time
}

// intentSettle is how long after its message was queued an intent is
// completed: far longer than the worker takes to put a queued frame on the
// wire.
const intentSettle = 200 * time.Millisecond

// pendingIntent is an intent and whether it was loaded at start (replay).
type pendingIntent struct {
	in     subscribers.Intent
	replay bool
}

// claim marks intent id as being sent by the caller: not claimed when
// another goroutine is sending it, or when it is done (the tick and a
// relay may both try: one send only, or a duplicate RELEASE could reach
// the ISP after a new REQUEST and free the lease it just granted again).
func (q *intentQueue) claim(id uint64) (claimed, done bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, claimed, done = q.claimLocked(id)
	return claimed, done
}

// claimLocked is claim with mu held, returning the intent too (pi, when
// not done): takeUnsent claims what it takes in the same hold.
func (q *intentQueue) claimLocked(id uint64) (pi pendingIntent, claimed, done bool) {
	pi, ok := q.pending[id]
	if !ok {
		return pi, false, true
	}
	if _, sent := q.sentAt[id]; sent {
		return pi, false, true // queued before anything the caller sends
	}
	if q.sending[id] {
		return pi, false, false
	}
	q.sending[id] = true
	return pi, true, false
}

// markSent records that id's message was queued at now (ending the claim).
func (q *intentQueue) markSent(id uint64, now time.Time) {
	q.mu.Lock()
	delete(q.sending, id)
	if _, ok := q.pending[id]; ok {
		q.sentAt[id] = now
		q.sentOrder = append(q.sentOrder, sentMark{id, now})
	}
	q.mu.Unlock()
}

// due returns up to limit of the intents sent at least intentSettle before
// now, in the order they were sent. It stops at the first one sent
// later: one queued a moment before another, whose markSent came first,
// waits for it (microseconds apart: the senders' time.Now).
func (q *intentQueue) due(now time.Time, limit int) []uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []uint64
	for q.sentHead < len(q.sentOrder) && len(out) < limit {
		m := q.sentOrder[q.sentHead]
		if at, ok := q.sentAt[m.id]; ok && at.Equal(m.at) {
			if now.Sub(at) < intentSettle {
				break
			}
			out = append(out, m.id)
		}
		q.sentOrder[q.sentHead] = sentMark{}
		q.sentHead++
	}
	if q.sentHead > len(q.sentOrder)/2 {
		// Consumed past half: the rest moved to the front, or to a
		// new array when the backing one is far larger than needs be
		// (a backlog of a million sent kept its 40 MB forever).
		rest := q.sentOrder[q.sentHead:]
		if c := cap(q.sentOrder); c > sentOrderKeep && c > 4*len(rest) {
			q.sentOrder = append(make([]sentMark, 0, 2*len(rest)), rest...)
		} else {
			q.sentOrder = append(q.sentOrder[:0], rest...)
		}
		q.sentHead = 0
	}
	return out
}

// sentOrderKeep is the capacity of sentOrder kept however few intents it
// holds; a larger one is given back once it is four times what it holds.
const sentOrderKeep = 4096

// unsentISPs returns the names of the ISPs with intents not sent yet (some
// maybe sent or completed since), sorted.
func (q *intentQueue) unsentISPs() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Sorted(maps.Keys(q.toSend))
}

// takeUnsent takes isp's oldest intent not sent yet off its queue and
// claims it for the caller (claim), in one hold of mu: the caller sends
// or completes it (sendClaimed), or puts it back (putBack) after ending
// the claim. busy reports that another goroutine is sending it right now
// (flushIntentsOf): it is returned unclaimed, to be put back.
func (q *intentQueue) takeUnsent(isp string) (pi pendingIntent, ok, busy bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	h := q.toSend[isp]
	for h != nil && len(*h) > 0 {
		pi, claimed, done := q.claimLocked(h.pop())
		if !done {
			return pi, true, !claimed
		}
	}
	delete(q.toSend, isp)
	return pendingIntent{}, false, false
}

// putBack returns pi, taken by takeUnsent and neither sent nor completed,
// to its ISP's queue.
func (q *intentQueue) putBack(pi pendingIntent) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.pending[pi.in.ID]; ok {
		q.pushUnsentLocked(pi.in)
	}
}

func (q *intentQueue) pushUnsentLocked(in subscribers.Intent) {
	h := q.toSend[in.ISP]
	if h == nil {
		h = &idHeap{}
		q.toSend[in.ISP] = h
	}
	h.push(in.ID)
}

// queued reports whether id's message was handed to the datapath.
func (q *intentQueue) queued(id uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, ok := q.sentAt[id]
	return ok
}

// onWire reports whether id's message was handed to the datapath, or the
// intent is done (sent and settled, or superseded unsent).
func (q *intentQueue) onWire(id uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, pending := q.pending[id]
	_, sent := q.sentAt[id]
	return !pending || sent
}

// unclaim ends a claim whose send failed (the intent stays pending).
func (q *intentQueue) unclaim(id uint64) {
	q.mu.Lock()
	delete(q.sending, id)
	q.mu.Unlock()
}

func (q *intentQueue) init() {
	q.pending = map[uint64]pendingIntent{}
	q.byMAC = map[uint64][]uint64{}
	q.sending = map[uint64]bool{}
	q.sentAt = map[uint64]time.Time{}
	q.toSend = map[string]*idHeap{}
	q.mem = mapMem{floor: intentMapsKeep, div: 8}
}

func (q *intentQueue) add(in subscribers.Intent, replay bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.pending[in.ID]; ok {
		return
	}
	q.pending[in.ID] = pendingIntent{in, replay}
	q.mem.note(len(q.pending))
	mac := binding.MAC48(in.MAC)
	q.byMAC[mac] = append(q.byMAC[mac], in.ID)
	q.pushUnsentLocked(in)
}

func (q *intentQueue) done(id uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.doneLocked(id)
	q.shrinkLocked()
}

// doneAll is done for each of ids, in one hold of mu (a batch a store
// commit completed: completeIntents).
func (q *intentQueue) doneAll(ids []uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, id := range ids {
		q.doneLocked(id)
	}
	q.shrinkLocked()
}

func (q *intentQueue) doneLocked(id uint64) {
	pi, ok := q.pending[id]
	if !ok {
		return
	}
	delete(q.pending, id)
	delete(q.sending, id)
	delete(q.sentAt, id)
	mac := binding.MAC48(pi.in.MAC)
	ids := slices.DeleteFunc(q.byMAC[mac], func(x uint64) bool { return x == id })
	if len(ids) == 0 {
		delete(q.byMAC, mac)
	} else {
		q.byMAC[mac] = ids
	}
}

// intentMapsKeep is the backlog below which the queue's maps are kept
// whatever they once held.
const intentMapsKeep = 4096

// shrinkLocked makes the maps again, and the ISPs' queues of unsent IDs
// far larger than what they hold, once the intents pending have fallen to
// an eighth of their peak (of at least intentMapsKeep): a Go map keeps
// the buckets of its largest size, so the maps of an ISP's 1M backlog
// (one after an outage) held ~140 MB for good once it was sent (27 MB
// after 200k: TestIntentMapsShrinkAfterBacklog). Each
// copy costs at most an eighth of the deletions since the last one, so
// it is linear over the completions.
func (q *intentQueue) shrinkLocked() {
	if !q.mem.due(len(q.pending)) {
		return
	}
	q.pending, q.byMAC, q.sending, q.sentAt = remade(q.pending), remade(q.byMAC), remade(q.sending), remade(q.sentAt)
	for isp, h := range q.toSend {
		if c := cap(*h); c > intentMapsKeep && c > 4*len(*h) {
			nh := append(make(idHeap, 0, 2*len(*h)), *h...)
			q.toSend[isp] = &nh
		}
	}
}

// unsent returns the intents whose message is not queued yet, oldest
// first: every one, copied and sorted (a start's supersedeLegacy, once).
func (q *intentQueue) unsent() []pendingIntent {
	q.mu.Lock()
	out := make([]pendingIntent, 0, len(q.pending))
	for id, pi := range q.pending {
		if _, sent := q.sentAt[id]; !sent {
			out = append(out, pi)
		}
	}
	q.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].in.ID < out[j].in.ID })
	return out
}

// ofMAC returns mac's pending intents, oldest first.
func (q *intentQueue) ofMAC(mac uint64) []pendingIntent {
	q.mu.Lock()
	defer q.mu.Unlock()
	ids := q.byMAC[mac]
	if len(ids) == 0 {
		return nil
	}
	out := make([]pendingIntent, 0, len(ids))
	for _, id := range ids {
		out = append(out, q.pending[id])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].in.ID < out[j].in.ID })
	return out
}

func (q *intentQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// idHeap is a min-heap of intent IDs. Written out rather than through
// container/heap, whose Pop returns an any: a uint64 boxed, an allocation
// per intent a round sends (BenchmarkSendRound).
type idHeap []uint64

func (h *idHeap) push(id uint64) {
	s := append(*h, id)
	for i := len(s) - 1; i > 0; {
		up := (i - 1) / 2
		if s[up] <= s[i] {
			break
		}
		s[up], s[i] = s[i], s[up]
		i = up
	}
	*h = s
}

// pop removes and returns the lowest ID (h not empty).
func (h *idHeap) pop() uint64 {
	s := *h
	id := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	for i := 0; ; {
		m := 2*i + 1
		if m >= n {
			break
		}
		if r := m + 1; r < n && s[r] < s[m] {
			m = r
		}
		if s[i] <= s[m] {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return id
}
