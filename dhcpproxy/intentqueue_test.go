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
// Completed one at a time (done) and a batch of completeBatch at a time
// (doneAll, completeIntents: a tick's path, the one a backlog takes).
func TestIntentMapsShrinkAfterBacklog(t *testing.T) {
	t.Run("done", func(t *testing.T) {
		intentMapsShrink(t, func(q *intentQueue, ids []uint64) {
			for _, id := range ids {
				q.done(id)
			}
		})
	})
	t.Run("doneAll", func(t *testing.T) {
		intentMapsShrink(t, func(q *intentQueue, ids []uint64) {
			for len(ids) > 0 {
				b := ids[:min(completeBatch, len(ids))]
				ids = ids[len(b):]
				q.doneAll(b)
			}
		})
	})
}

func intentMapsShrink(t *testing.T, complete func(q *intentQueue, ids []uint64)) {
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
	var ids []uint64
	for _, id := range q.due(t0.Add(time.Second), n) {
		if id <= n-5 {
			ids = append(ids, id)
		}
	}
	complete(&q, ids)
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
		pi, ok, busy := q.takeUnsent("beta")
		if !ok || busy || pi.in.ID != id {
			t.Fatalf("beta's next unsent: %d %v (busy %v), want %d", pi.in.ID, ok, busy, id)
		}
	}
	if _, ok, _ := q.takeUnsent("alpha"); ok {
		t.Error("alpha has an unsent intent")
	}
	runtime.KeepAlive(&q)
}

// TestTakeUnsentClaims: takeUnsent claims the intent it returns, in the
// same hold of the lock (a sender of the subscriber's next message,
// flushIntentsOf, then finds it claimed and waits), and returns one
// another goroutine is sending as busy, leaving that claim alone; once
// put back and unclaimed it is taken and claimed again, oldest first.
func TestTakeUnsentClaims(t *testing.T) {
	var q intentQueue
	q.init()
	for id := uint64(1); id <= 3; id++ {
		q.add(subscribers.Intent{ID: id, ISP: "alpha", MAC: [6]byte{2, 0, 0, 0, 0, byte(id)}}, false)
	}
	pi, ok, busy := q.takeUnsent("alpha")
	if !ok || busy || pi.in.ID != 1 {
		t.Fatalf("takeUnsent: %d %v busy %v, want intent 1 claimed", pi.in.ID, ok, busy)
	}
	if c, done := q.claim(1); c || done {
		t.Errorf("intent 1 taken by a round: claim gives %v, done %v; want it claimed already (not done)", c, done)
	}
	// Intent 2 claimed by another sender (a relay's flushIntentsOf).
	if c, _ := q.claim(2); !c {
		t.Fatal("intent 2 not claimed")
	}
	q.markSent(1, time.Now())
	pi, ok, busy = q.takeUnsent("alpha")
	if !ok || !busy || pi.in.ID != 2 {
		t.Fatalf("takeUnsent: %d %v busy %v, want intent 2 busy", pi.in.ID, ok, busy)
	}
	q.putBack(pi)
	if !q.sending[2] {
		t.Error("takeUnsent of a busy intent ended the other sender's claim")
	}
	q.unclaim(2) // the other sender failed: 2 stays pending, put back
	pi, ok, busy = q.takeUnsent("alpha")
	if !ok || busy || pi.in.ID != 2 {
		t.Fatalf("takeUnsent after putBack: %d %v busy %v, want intent 2 claimed", pi.in.ID, ok, busy)
	}
	if !q.sending[2] {
		t.Error("intent 2 taken but not claimed")
	}
}

// TestDoneAll: doneAll forgets each intent of a batch as done does, the
// others kept (their MAC's list, their send state).
func TestDoneAll(t *testing.T) {
	var q intentQueue
	q.init()
	mac := [6]byte{2, 0, 0, 0, 0, 1}
	for id := uint64(1); id <= 5; id++ {
		q.add(subscribers.Intent{ID: id, ISP: "alpha", MAC: mac}, false)
		q.claim(id)
		q.markSent(id, time.Unix(1_000_000, 0))
	}
	q.doneAll([]uint64{1, 3, 5, 9})
	if q.len() != 2 {
		t.Fatalf("%d pending, want 2", q.len())
	}
	got := q.ofMAC(binding.MAC48(mac))
	if len(got) != 2 || got[0].in.ID != 2 || got[1].in.ID != 4 {
		t.Errorf("intents of the MAC: %v, want 2 and 4", got)
	}
	for _, id := range []uint64{1, 3, 5} {
		if !q.onWire(id) || q.queued(id) {
			t.Errorf("intent %d: not done", id)
		}
	}
	if !q.queued(2) || !q.queued(4) {
		t.Error("intents 2 and 4 no longer sent")
	}
}
