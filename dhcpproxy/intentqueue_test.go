package dhcpproxy

import (
	"runtime"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/binding"
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

// TestIntentMapsShrinkAfterBacklog: once a backlog of 200k intents is
// completed but for a few, the queue's maps no longer keep the buckets
// that held them (they kept 27 MB after 200k here, ~140 MB at a
// million, for good), and what is left is as it was: the sent ones still sent, the
// unsent ones still queued for their ISP in order, each MAC's intents.
func TestIntentMapsShrinkAfterBacklog(t *testing.T) {
	heapAlloc := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var q intentQueue
	q.init()
	base := heapAlloc()
	const n = 200_000
	t0 := time.Unix(1_000_000, 0)
	mac := func(id uint64) [6]byte { return [6]byte{2, 0, byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)} }
	for id := uint64(1); id <= n; id++ {
		q.add(subscribers.Intent{ID: id, ISP: "alpha", MAC: mac(id)}, false)
		if c, _ := q.claim(id); !c {
			t.Fatalf("intent %d not claimed", id)
		}
		q.markSent(id, t0)
	}
	// Three never sent, for another ISP, and the last five sent stay.
	for id := uint64(n + 1); id <= n+3; id++ {
		q.add(subscribers.Intent{ID: id, ISP: "beta", MAC: mac(id)}, false)
	}
	full := heapAlloc()
	for _, id := range q.due(t0.Add(time.Second), n) {
		if id <= n-5 {
			q.done(id)
		}
	}
	after := heapAlloc()
	t.Logf("heap: %d B before, %d B with the backlog, %d B after", base, full, after)
	if after > base+4<<20 {
		t.Errorf("the queue keeps %d B for 8 intents after a backlog of %d (%d B with it)", after-base, n, full-base)
	}
	if q.len() != 8 {
		t.Fatalf("%d intents pending, want 8", q.len())
	}
	for id := uint64(n - 4); id <= n; id++ {
		if !q.queued(id) {
			t.Errorf("intent %d no longer sent", id)
		}
		if got := q.ofMAC(binding.MAC48(mac(id))); len(got) != 1 || got[0].in.ID != id {
			t.Errorf("intents of intent %d's MAC: %v", id, got)
		}
	}
	for id := uint64(n + 1); id <= n+3; id++ {
		pi, ok := q.takeUnsent("beta")
		if !ok || pi.in.ID != id {
			t.Fatalf("beta's next unsent: %d %v, want %d", pi.in.ID, ok, id)
		}
	}
	if _, ok := q.takeUnsent("alpha"); ok {
		t.Error("alpha has an unsent intent")
	}
	runtime.KeepAlive(&q)
}
