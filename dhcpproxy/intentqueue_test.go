package dhcpproxy

import (
	"testing"
	"time"

	"github.com/ispmux/ispmux/subscribers"
)

// TestSentOrderShrinksAfterBacklog: once a backlog of 100k intents sent
// at once is completed, the queue of sent intents no longer keeps the
// array that held them, while intents go on being sent (one a tick, so
// that it is never empty when the tick looks). It kept its capacity
// (115k entries, 3.7 MB here, ~40 MB at a million) for good.
func TestSentOrderShrinksAfterBacklog(t *testing.T) {
	var q intentQueue
	q.init()
	const n = 100_000
	t0 := time.Unix(1_000_000, 0)
	for id := uint64(1); id <= n; id++ {
		q.add(subscribers.Intent{ID: id, ISP: "alpha", MAC: [6]byte{2, 0, byte(id >> 16), byte(id >> 8), byte(id)}}, false)
		if c, _ := q.claim(id); !c {
			t.Fatalf("intent %d not claimed", id)
		}
		q.markSent(id, t0)
	}
	next := uint64(n + 1)
	now := t0
	for tick := 0; tick < 200; tick++ {
		now = now.Add(time.Second)
		// An intent sent just now, not due yet: the queue holds one
		// at every tick's end.
		q.add(subscribers.Intent{ID: next, ISP: "alpha", MAC: [6]byte{4, 0, byte(next >> 16), byte(next >> 8), byte(next)}}, false)
		q.claim(next)
		q.markSent(next, now)
		next++
		for _, id := range q.due(now, 16384) {
			q.done(id)
		}
	}
	if q.len() != 1 {
		t.Fatalf("%d intents pending, want 1 (the last one sent)", q.len())
	}
	if c := cap(q.sentOrder); c > 2*sentOrderKeep {
		t.Errorf("sentOrder keeps a capacity of %d for %d intents", c, len(q.sentOrder)-q.sentHead)
	}
}
