package subscribers

import (
	"fmt"
	"slices"
	"testing"
)

// TestEventsOfDamagedIndex: over an events-by-isp index with a stale
// entry, an entry whose event is gone, a malformed key and an event that
// does not decode, EventsOf and WebhookEvents return the same events and
// report the same damage, whatever the page.
func TestEventsOfDamagedIndex(t *testing.T) {
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
	putRaw(t, s, bucketEventIndex, eventIndexKey("alpha", 2), nil)            // stale: seq 2 is beta's
	putRaw(t, s, bucketEventIndex, eventIndexKey("alpha", 40), nil)           // no such event
	putRaw(t, s, bucketEventIndex, append(eventIndexKey("alpha", 3), 0), nil) // malformed key, after seq 3's
	putRaw(t, s, bucketEvents, seqKey(7), []byte{3, 0xff})                    // alpha's seq 7 does not decode

	seqs := func(evs []Event) []uint64 {
		var out []uint64
		for _, e := range evs {
			out = append(out, e.Seq)
		}
		return out
	}
	for _, c := range []struct {
		after uint64
		limit int
		want  []uint64
		bad   int // corrupt entries met
	}{
		{0, 0, []uint64{1, 3, 5, 9}, 2},
		{0, 2, []uint64{1, 3}, 0}, // the page ends before the damage
		{1, 1, []uint64{3}, 0},
		{3, 0, []uint64{5, 9}, 1}, // the malformed key sorts before seq 4's
		{5, 1, []uint64{9}, 1},
		{9, 0, nil, 0},
		{10, 0, nil, 0},
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
