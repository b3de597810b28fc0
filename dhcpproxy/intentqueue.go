package dhcpproxy

import (
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// intentQueue owns the intents not yet completed; mu guards it and is held
// only inside these methods.
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
// another goroutine is sending it, or when it is done (the tick and a relay may both try: one send
// only, or a duplicate RELEASE could reach the ISP after a new REQUEST and
// free the lease it just granted again).
func (q *intentQueue) claim(id uint64) (claimed, done bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.pending[id]; !ok {
		return false, true
	}
	if _, sent := q.sentAt[id]; sent {
		return false, true // queued before anything the caller sends
	}
	if q.sending[id] {
		return false, false
	}
	q.sending[id] = true
	return true, false
}

// markSent records that id's message was queued at now (ending the claim).
func (q *intentQueue) markSent(id uint64, now time.Time) {
	q.mu.Lock()
	delete(q.sending, id)
	q.sentAt[id] = now
	q.mu.Unlock()
}

// due returns the intents sent at least intentSettle before now.
func (q *intentQueue) due(now time.Time) []uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []uint64
	for id, at := range q.sentAt {
		if now.Sub(at) >= intentSettle {
			out = append(out, id)
		}
	}
	return out
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
}

func (q *intentQueue) add(in subscribers.Intent, replay bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.pending[in.ID]; ok {
		return
	}
	q.pending[in.ID] = pendingIntent{in, replay}
	mac := binding.MAC48(in.MAC)
	q.byMAC[mac] = append(q.byMAC[mac], in.ID)
}

func (q *intentQueue) done(id uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
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

// unsent returns the intents whose message is not queued yet, oldest
// first.
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
