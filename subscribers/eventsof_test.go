package subscribers

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestEventsOfDamagedIndex: over an events-by-isp index with a stale
// entry, an entry whose event is gone, a malformed key and an event that
// does not decode, EventsOf and WebhookEvents return the same events and
// report the same damage, whatever the page.
func TestEventsOfDamagedIndex(t *testing.T) {
	numberFromOne(t)
	s, _ := openTest(t, Options{NoSync: true})
	// seq 1..10: alpha on odd, beta on even.
	for i := 1; i <= 10; i++ {
		isp := "beta"
		if i%2 == 1 {
			isp = "alpha"
		}
		if _, err := s.AddEvent(Event{Kind: EventBound, ISP: isp, MAC: mac(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// alpha's events are Seq 1, 3, 5, 7, 9: ISPSeq 1..5.
	putRaw(t, s, bucketEventIndex, eventIndexKey("alpha", 41), seqKey(2))           // stale: seq 2 is beta's
	putRaw(t, s, bucketEventIndex, eventIndexKey("alpha", 40), seqKey(40))          // no such event
	putRaw(t, s, bucketEventIndex, append(eventIndexKey("alpha", 2), 0), seqKey(3)) // malformed key, after ISPSeq 2's
	putRaw(t, s, bucketEvents, seqKey(7), []byte{3, 0xff})                          // alpha's seq 7 (ISPSeq 4) does not decode

	seqs := func(evs []Event) []uint64 {
		var out []uint64
		for _, e := range evs {
			out = append(out, e.ISPSeq)
		}
		return out
	}
	for _, c := range []struct {
		after uint64
		limit int
		want  []uint64
		bad   int // corrupt entries met
	}{
		{0, 0, []uint64{1, 2, 3, 5}, 2},
		{0, 2, []uint64{1, 2}, 0}, // the page ends before the damage
		{1, 1, []uint64{2}, 0},
		{1, 0, []uint64{2, 3, 5}, 2},
		{2, 0, []uint64{3, 5}, 1}, // the malformed key sorts before ISPSeq 3's
		{3, 1, []uint64{5}, 1},
		{5, 0, nil, 0},
		{41, 0, nil, 0},
		{^uint64(0), 0, nil, 0},
	} {
		name := fmt.Sprintf("after %d limit %d", c.after, c.limit)
		evs, err := s.EventsOf("alpha", c.after, c.limit)
		wevs, _, _, werr := s.WebhookEvents("alpha", c.after, c.limit)
		if !slices.Equal(seqs(evs), c.want) || !slices.Equal(wevs, evs) {
			t.Errorf("%s: EventsOf %v, WebhookEvents %v; want %v", name, seqs(evs), seqs(wevs), c.want)
		}
		for what, err := range map[string]error{"EventsOf": err, "WebhookEvents": werr} {
			if n := countCorrupt(err); n != c.bad {
				t.Errorf("%s: %s reports %d corrupt entries, want %d: %v", name, what, n, c.bad, err)
			}
		}
	}
}

// countCorrupt is the number of CorruptErrors in err's tree.
func countCorrupt(err error) int {
	if _, ok := err.(*CorruptError); ok {
		return 1
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return countCorrupt(u.Unwrap())
	case interface{ Unwrap() []error }:
		n := 0
		for _, e := range u.Unwrap() {
			n += countCorrupt(e)
		}
		return n
	}
	return 0
}

// TestISPSeqContinues: an ISP's events are numbered 1, 2, 3, ... in its
// own sequence whatever the other ISPs' events between them, through the
// journal and through bbolt transactions alike; the numbers a crash's
// replay gives the pending events are the ones returned, and the
// sequence goes on from them after the replay and after a clean restart.
func TestISPSeqContinues(t *testing.T) {
	numberFromOne(t)
	s, path := openTest(t, Options{})
	var want []uint64 // alpha's ISPSeqs as returned
	add := func(s *Store, i int, isp string, journal bool) {
		t.Helper()
		var e Event
		var err error
		if journal {
			b := testBinding(i)
			b.ISP = isp
			e, err = s.CommitBindingEvent(b, Event{Kind: EventBound, MAC: b.MAC, ISP: isp})
		} else {
			e, err = s.AddEvent(Event{Kind: EventCustomerCreated, ISP: isp})
		}
		if err != nil {
			t.Fatal(err)
		}
		if isp == "alpha" {
			want = append(want, e.ISPSeq)
		}
	}
	check := func(s *Store, what string) {
		t.Helper()
		evs, oldest, newest, err := s.EventsPage("alpha", 0, 0)
		var got []uint64
		for _, e := range evs {
			got = append(got, e.ISPSeq)
		}
		var consecutive []uint64
		for i := range want {
			consecutive = append(consecutive, uint64(i+1))
		}
		if err != nil || !slices.Equal(got, want) || !slices.Equal(want, consecutive) || oldest != 1 || newest != uint64(len(want)) {
			t.Fatalf("%s: alpha reads ISPSeqs %v (bounds %d..%d, %v); returned %v, want %v", what, got, oldest, newest, err, want, consecutive)
		}
		if last, err := s.LastEventSeqOf("alpha"); err != nil || last != uint64(len(want)) {
			t.Fatalf("%s: LastEventSeqOf(alpha) = %d, %v; want %d", what, last, err, len(want))
		}
	}
	for i := range 30 {
		add(s, i, "beta", i%2 == 0)
		if i%3 == 0 {
			add(s, 100+i, "alpha", i%2 == 1)
		}
	}
	for i := range 4 { // the last ones left pending (a bbolt write checkpoints)
		add(s, 150+i, []string{"beta", "alpha"}[i%2], true)
	}
	if s.pendingN.Load() != 4 {
		t.Fatalf("%d records pending in the journal, want 4", s.pendingN.Load())
	}
	check(s, "pending")

	// A crash now: the replay numbers the pending events as the leader did.
	c, cpath := crashCopy(t, path)
	check(c, "after the replay")
	add(c, 200, "alpha", true)
	add(c, 201, "beta", false)
	add(c, 202, "alpha", false)
	check(c, "after the replay, new events")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := Open(cpath, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	check(c, "after a restart")
	add(c, 203, "beta", true)
	add(c, 204, "alpha", true)
	check(c, "after a restart, new events")
}

// checkISPNumbering checks s, a store whose log trimmed nothing (after a
// crash and its replay): each ISP's events are numbered 1, 2, 3, ... in
// its sequence (no number skipped, none given twice), its sequence goes
// on after the last of them (LastEventSeqOf), and every event of returned
// (as AddEvent or CommitBindingEvent returned them to their callers) reads
// back with its Seq and ISPSeq, as the event it was.
func checkISPNumbering(t *testing.T, what string, s *Store, returned []Event) {
	t.Helper()
	all, err := s.Events(0, 0)
	if err != nil {
		t.Fatalf("%s: Events: %v", what, err)
	}
	bySeq := map[uint64]Event{}
	count := map[string]int{}
	for _, e := range all {
		bySeq[e.Seq] = e
		if e.ISP != "" {
			count[e.ISP]++
		}
	}
	ispSeqOf := map[uint64]uint64{} // Seq → ISPSeq, as the ISPs read them
	for isp, n := range count {
		evs, err := s.EventsOf(isp, 0, 0)
		if err != nil || len(evs) != n {
			t.Errorf("%s: EventsOf(%s): %d events, %v; the log holds %d", what, isp, len(evs), err, n)
			continue
		}
		// Numbered from the store's base (0: from 1), one by one.
		base := s.EventBase()
		for j, e := range evs {
			if e.ISPSeq != base+uint64(j+1) || e.ISP != isp {
				t.Errorf("%s: %s's event %d (seq %d, of %q) is numbered %d in its sequence, want %d: a gap or a number given twice", what, isp, j+1, e.Seq, e.ISP, e.ISPSeq, base+uint64(j+1))
				break
			}
			ispSeqOf[e.Seq] = e.ISPSeq
		}
		if last, err := s.LastEventSeqOf(isp); err != nil || last != base+uint64(n) {
			t.Errorf("%s: LastEventSeqOf(%s) = %d, %v; want %d (its newest)", what, isp, last, err, base+uint64(n))
		}
	}
	for _, r := range returned {
		got, ok := bySeq[r.Seq]
		if !ok || got.MAC != r.MAC || got.ISP != r.ISP || ispSeqOf[r.Seq] != r.ISPSeq {
			t.Errorf("%s: event returned as seq %d, %s's %d (%v) reads back as %s's %d (%v, found %v)", what, r.Seq, r.ISP, r.ISPSeq, r.MAC, got.ISP, ispSeqOf[r.Seq], got.MAC, ok)
		}
	}
}

// TestEventsPageISPSeq: a page of the whole log (the operator's,
// EventsPage with no ISP) gives each event of an ISP the number its ISP
// reads it by (EventsOf), whatever page it starts at (the index's binary
// search by Seq), for events in bbolt and pending in the journal, and
// with events trimmed; Events leaves it 0. An event with no ISP has 0.
func TestEventsPageISPSeq(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true, EventRetention: 40})
	isps := []string{"alpha", "beta", "", "alpha", "gamma", "alpha", "beta"}
	for i := range 60 {
		isp := isps[i%len(isps)]
		var err error
		if i%3 == 0 {
			b := testBinding(i)
			b.ISP = isp
			_, err = s.CommitBindingEvent(b, Event{Kind: EventBound, MAC: b.MAC, ISP: isp})
		} else {
			_, err = s.AddEvent(Event{Kind: EventCustomerCreated, ISP: isp})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 { // left pending
		b := testBinding(100 + i)
		b.ISP = isps[i]
		if _, err := s.CommitBindingEvent(b, Event{Kind: EventBound, MAC: b.MAC, ISP: b.ISP}); err != nil {
			t.Fatal(err)
		}
	}
	if s.pendingN.Load() == 0 {
		t.Fatal("no event pending in the journal")
	}
	want := map[uint64]uint64{} // Seq → ISPSeq, as the ISPs read them
	for _, isp := range []string{"alpha", "beta", "gamma"} {
		evs, err := s.EventsOf(isp, 0, 0)
		if err != nil || len(evs) == 0 {
			t.Fatalf("EventsOf(%s): %d, %v", isp, len(evs), err)
		}
		for _, e := range evs {
			want[e.Seq] = e.ISPSeq
		}
	}
	all, err := s.Events(0, 0)
	if err != nil || len(all) < 40 || all[0].Seq == 1 {
		t.Fatalf("Events: %d from %d, %v; want the log trimmed to about 40", len(all), all[0].Seq, err)
	}
	for _, e := range all {
		if e.ISPSeq != 0 {
			t.Fatalf("Events: seq %d has ISPSeq %d, want 0", e.Seq, e.ISPSeq)
		}
	}
	for _, after := range []uint64{0, all[0].Seq, all[5].Seq, all[len(all)-4].Seq, all[len(all)-2].Seq} {
		for _, limit := range []int{0, 1, 7} {
			evs, _, _, err := s.EventsPage("", after, limit)
			if err != nil || len(evs) == 0 {
				t.Fatalf("EventsPage(\"\", %d, %d): %d, %v", after, limit, len(evs), err)
			}
			for _, e := range evs {
				if e.ISPSeq != want[e.Seq] || (e.ISP == "") != (e.ISPSeq == 0) {
					t.Errorf("EventsPage(\"\", %d, %d): seq %d (%q) has ISPSeq %d, want %d", after, limit, e.Seq, e.ISP, e.ISPSeq, want[e.Seq])
				}
			}
		}
	}
}

// checkEventIndex checks that events-by-isp holds exactly one entry per
// stored event with an ISP, and events-by-mac one per stored event with a
// MAC, whose value is the event's ISPSeq (none for an event of no ISP).
func checkEventIndex(t *testing.T, s *Store) {
	t.Helper()
	evs, _, _, err := s.EventsPage("", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	wantMAC := map[string]uint64{}
	for _, e := range evs {
		if e.MAC != (MAC{}) {
			wantMAC[string(eventMACKey(e.MAC, e.ISP, e.Seq))] = e.ISPSeq
		}
	}
	nMAC := 0
	s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEventMACIndex).ForEach(func(k, v []byte) error {
			nMAC++
			n, ok := wantMAC[string(k)]
			var got uint64
			if len(v) == 8 {
				got = binary.BigEndian.Uint64(v)
			}
			if !ok || got != n || (n == 0) != (len(v) == 0) {
				t.Errorf("stale events-by-mac entry %x: %x (want %v, ISPSeq %d)", k, v, ok, n)
			}
			return nil
		})
	})
	if nMAC != len(wantMAC) {
		t.Errorf("events-by-mac has %d keys, want %d", nMAC, len(wantMAC))
	}
	want := map[string]bool{}
	for _, e := range evs {
		if e.ISP != "" {
			want[string(eventIndexKey(e.ISP, e.Seq))] = true
		}
	}
	n := 0
	s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEventIndex).ForEach(func(k, v []byte) error {
			n++
			i := bytes.IndexByte(k, 0)
			_, seq, ok := indexSeq(k, v, i+1)
			if i < 0 || !ok || !want[string(eventIndexKey(string(k[:i]), seq))] {
				t.Errorf("stale events-by-isp key %q", k)
			}
			return nil
		})
	})
	if n != len(want) {
		t.Errorf("events-by-isp has %d keys, want %d", n, len(want))
	}
}
