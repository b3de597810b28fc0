package subscribers

import (
	"reflect"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestPendingEventsFollowers: followers of the event log (Events,
// EventsOf, WebhookEvents in a loop, as an event stream and a webhook
// worker read it) see every event once, in order, without a gap, while
// writers journal bound events and background checkpoints (every 16
// records here) move them into bbolt; and their reads never checkpoint
// through the group commit (its writes are the writers' alone).
func TestPendingEventsFollowers(t *testing.T) {
	numberFromOne(t)
	withMaxPending(t, 16, nil, nil)
	s, _ := openTest(t, Options{NoSync: true})
	const n = 1200
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := w; i < n; i += 3 {
				b := testBinding(i)
				if _, err := s.CommitBindingEvent(b, Event{Kind: EventBound, MAC: b.MAC, ISP: b.ISP, IP: b.IP}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	type seen struct {
		all  []Event
		isp  map[string][]Event
		hook []Event
	}
	var got seen
	got.isp = map[string][]Event{}
	// A follower that misses the pending events would wait forever for
	// the last ones (no checkpoint moves them): give up then.
	deadline := time.Now().Add(20 * time.Second)
	late := func(what string) bool {
		if time.Now().After(deadline) {
			t.Errorf("%s: not every event read in 20 s", what)
			return true
		}
		return false
	}
	var rg sync.WaitGroup
	rg.Go(func() { // the whole log, 37 at a time
		var cursor uint64
		for len(got.all) < n && !late("Events") {
			evs, err := s.Events(cursor, 37)
			if err != nil {
				t.Error(err)
				return
			}
			for _, e := range evs {
				if e.Seq != cursor+1 {
					t.Errorf("Events after %d: seq %d, a gap", cursor, e.Seq)
					return
				}
				cursor = e.Seq
			}
			got.all = append(got.all, evs...)
		}
	})
	rg.Go(func() { // one ISP through EventsOf
		var cursor uint64
		for len(got.isp["isp-0"]) < n/2 && !late("EventsOf") {
			evs, err := s.EventsOf("isp-0", cursor, 29)
			if err != nil {
				t.Error(err)
				return
			}
			for _, e := range evs {
				if e.ISPSeq != cursor+1 || e.ISP != "isp-0" {
					t.Errorf("EventsOf after %d: ISPSeq %d of %q", cursor, e.ISPSeq, e.ISP)
					return
				}
				cursor = e.ISPSeq
			}
			got.isp["isp-0"] = append(got.isp["isp-0"], evs...)
		}
	})
	rg.Go(func() { // the other through WebhookEvents
		var cursor uint64
		for len(got.hook) < n/2 && !late("WebhookEvents") {
			evs, oldest, newest, err := s.WebhookEvents("isp-1", cursor, 41)
			if err != nil {
				t.Error(err)
				return
			}
			if oldest != 1 || newest < cursor {
				t.Errorf("WebhookEvents bounds %d..%d with the cursor at %d", oldest, newest, cursor)
				return
			}
			for _, e := range evs {
				if e.ISPSeq != cursor+1 || e.ISP != "isp-1" || e.ISPSeq > newest {
					t.Errorf("WebhookEvents after %d: ISPSeq %d of %q (newest %d)", cursor, e.ISPSeq, e.ISP, newest)
					return
				}
				cursor = e.ISPSeq
			}
			got.hook = append(got.hook, evs...)
		}
	})
	wg.Wait()
	rg.Wait()
	if t.Failed() {
		return
	}
	if s.bgCheckpoints.Load() == 0 {
		t.Error("no background checkpoint ran")
	}
	if w := s.writes.Load(); w != n {
		t.Errorf("group commit wrote %d writes, want %d: a reader checkpointed", w, n)
	}
	// What the followers saw is what the log holds once checkpointed.
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	want, err := s.Events(0, 0)
	if err != nil || len(want) != n {
		t.Fatalf("Events after the checkpoint: %d, %v", len(want), err)
	}
	if !reflect.DeepEqual(got.all, want) {
		t.Error("Events read from the pending records differ from the checkpointed log")
	}
	w0, err := s.EventsOf("isp-0", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	w1, err := s.EventsOf("isp-1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.isp["isp-0"], w0) || !reflect.DeepEqual(got.hook, w1) {
		t.Error("EventsOf or WebhookEvents read from the pending records differ from the checkpointed log")
	}
}

// TestPendingEventsRead: events still pending in the journal are read
// without a checkpoint, and as the checkpointed log gives them.
func TestPendingEventsRead(t *testing.T) {
	numberFromOne(t)
	s, _ := openTest(t, Options{NoSync: true})
	const n = 300
	if err := s.CommitBinding(testBinding(n)); err != nil { // no event
		t.Fatal(err)
	}
	if _, err := s.AddEvent(Event{Kind: EventReleased, MAC: testBinding(n).MAC, ISP: "isp-1"}); err != nil { // in bbolt
		t.Fatal(err)
	}
	for i := range n {
		b := testBinding(i)
		if _, err := s.CommitBindingEvent(b, Event{Kind: EventBound, MAC: b.MAC, ISP: b.ISP, IP: b.IP}); err != nil {
			t.Fatal(err)
		}
	}
	writes := s.writes.Load()
	all, err := s.Events(0, 0)
	if err != nil || len(all) != n+1 {
		t.Fatalf("Events: %d, %v; want %d", len(all), err, n+1)
	}
	part, err := s.Events(100, 50)
	if err != nil || len(part) != 50 || part[0].Seq != 101 || part[49].Seq != 150 {
		t.Fatalf("Events(100, 50): %d, %v", len(part), err)
	}
	of, err := s.EventsOf("isp-1", 0, 0)
	if err != nil || len(of) != n/2+1 {
		t.Fatalf("EventsOf: %d, %v; want %d", len(of), err, n/2+1)
	}
	hook, oldest, newest, err := s.WebhookEvents("isp-1", 1, 20)
	if err != nil || len(hook) != 20 || oldest != 1 || newest != n/2+1 || hook[0].Seq != 3 || hook[0].ISPSeq != 2 {
		t.Fatalf("WebhookEvents: %d events from %d, bounds %d..%d, %v", len(hook), hook[0].Seq, oldest, newest, err)
	}
	// isp-1's events: the one in bbolt (seq 1, ISPSeq 1) and the
	// even-numbered pending ones (seqs 3, 5, ...: ISPSeqs 2, 3, ...).
	for _, c := range []struct {
		after uint64
		limit int
		want  int
	}{{0, 0, n/2 + 1}, {1, 0, n / 2}, {2, 0, n/2 - 1}, {3, 0, n/2 - 2}, {0, 10, 10}, {n/2 + 1, 0, 0}} {
		if got, err := s.CountEventsOf("isp-1", c.after, c.limit); err != nil || got != c.want {
			t.Fatalf("CountEventsOf(isp-1, %d, %d) = %d, %v; want %d", c.after, c.limit, got, err, c.want)
		}
	}
	// A malformed index key (short) among isp-1's is neither counted
	// nor a crash.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEventIndex).Put([]byte("isp-1\x00\x01"), nil)
	}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.CountEventsOf("isp-1", 0, 0); err != nil || got != n/2+1 {
		t.Fatalf("CountEventsOf with a malformed key = %d, %v; want %d", got, err, n/2+1)
	}
	if oldest, newest, err := s.EventBounds(); err != nil || oldest != 1 || newest != n+1 {
		t.Fatalf("EventBounds = %d, %d, %v; want 1, %d", oldest, newest, err, n+1)
	}
	if s.writes.Load() != writes || s.pendingN.Load() != n {
		t.Fatalf("the reads checkpointed (writes %d -> %d, %d pending)", writes, s.writes.Load(), s.pendingN.Load())
	}
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	want, err := s.Events(0, 0)
	if err != nil || !reflect.DeepEqual(all, want) {
		t.Fatalf("the pending events read differ from the checkpointed log (%v)", err)
	}
	wof, _ := s.EventsOf("isp-1", 0, 0)
	if !reflect.DeepEqual(of, wof) {
		t.Fatal("EventsOf from the pending events differs from the checkpointed log")
	}
	if got, err := s.CountEventsOf("isp-1", 1, 0); err != nil || got != n/2 {
		t.Fatalf("CountEventsOf after the checkpoint = %d, %v; want %d", got, err, n/2)
	}
}

// TestWebhookCursorNoCheckpoint: storing a webhook cursor (a write to
// none of the journal's buckets) does not checkpoint the journal, and a
// crash after it loses neither the cursor nor the pending records.
func TestWebhookCursorNoCheckpoint(t *testing.T) {
	s, path := openTest(t, Options{})
	for i := range 10 {
		b := testBinding(i)
		if _, err := s.CommitBindingEvent(b, Event{Kind: EventBound, MAC: b.MAC, ISP: b.ISP}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetWebhookCursor("isp-1", 7); err != nil {
		t.Fatal(err)
	}
	if n := s.pendingN.Load(); n != 10 {
		t.Fatalf("%d records pending after the cursor's write, want 10 (it checkpointed)", n)
	}
	c, _ := crashCopy(t, path)
	if seq, ok, err := c.WebhookCursor("isp-1"); err != nil || !ok || seq != 7 {
		t.Errorf("cursor after the crash: %d, %v, %v", seq, ok, err)
	}
	if all, err := c.Bindings(); err != nil || len(all) != 10 {
		t.Errorf("bindings after the crash: %d, %v", len(all), err)
	}
	// Any other write checkpoints, as before.
	if _, err := s.AddEvent(Event{Kind: EventReleased, MAC: testBinding(1).MAC}); err != nil {
		t.Fatal(err)
	}
	if n := s.pendingN.Load(); n != 0 {
		t.Errorf("%d records pending after AddEvent, want 0", n)
	}
}
