package subscribers

import (
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestEventsOfMACMatchesFilter: on random logs spread over several
// events-by-mac spans (ISP names that are prefixes of each other, events
// of no ISP and of no MAC, a log trimmed by count), EventsOfMAC and
// NewestEventsOfMAC return, for the operator and for each ISP, exactly
// what a filter of EventsPage by MAC gives: the same events, in order,
// with the same ISPSeqs, for every after and limit.
func TestEventsOfMACMatchesFilter(t *testing.T) {
	isps := []string{"", "a", "ab", "b"}
	for round := range 4 {
		r := rand.New(rand.NewPCG(uint64(round), 7))
		s, _ := openTest(t, Options{NoSync: true, EventRetention: 40})
		for i := range 150 {
			if r.IntN(12) == 0 {
				// Jump to a later span (the log's numbers skip).
				jump := uint64(r.IntN(3*(1<<macSpanBits))) + 1
				if err := s.db.Update(func(tx *bolt.Tx) error {
					bk := tx.Bucket(bucketEvents)
					return bk.SetSequence(bk.Sequence() + jump)
				}); err != nil {
					t.Fatal(err)
				}
			}
			m := mac(1 + r.IntN(3))
			if r.IntN(10) == 0 {
				m = MAC{}
			}
			if _, err := s.AddEvent(Event{Kind: EventRenewed, MAC: m, ISP: isps[r.IntN(len(isps))], Reason: string(rune('A' + i%26))}); err != nil {
				t.Fatal(err)
			}
		}
		checkEventIndex(t, s)
		// Then events still pending in the binding journal (read
		// without a checkpoint: mergePending; an AddEvent would
		// checkpoint them).
		for range 30 {
			b := testBinding(1 + r.IntN(3))
			if _, err := s.CommitBindingEvent(b, Event{Kind: EventBound, MAC: b.MAC, ISP: b.ISP, IP: b.IP}); err != nil {
				t.Fatal(err)
			}
		}
		if len(s.pendingEvents()) == 0 {
			t.Fatal("no event pending: mergePending not exercised")
		}
		for _, isp := range append(isps, "isp-0", "isp-1") {
			all, _, _, err := s.EventsPage(isp, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			for mi := range 4 {
				m := mac(1 + mi)
				var want []Event
				for _, e := range all {
					if e.MAC == m {
						want = append(want, e)
					}
				}
				key := func(e Event) uint64 {
					if isp == "" {
						return e.Seq
					}
					return e.ISPSeq
				}
				afters := []uint64{0}
				for _, e := range want {
					afters = append(afters, key(e)-1, key(e))
				}
				for _, after := range afters {
					for _, limit := range []int{0, 1, 2, 5} {
						var w []Event
						for _, e := range want {
							if key(e) > after && (limit <= 0 || len(w) < limit) {
								w = append(w, e)
							}
						}
						got, _, _, err := s.EventsOfMAC(m, isp, after, limit)
						if err != nil {
							t.Fatal(err)
						}
						if !reflect.DeepEqual(norm(got), norm(w)) {
							t.Fatalf("round %d: EventsOfMAC(%v, %q, %d, %d) = %v, want %v", round, m, isp, after, limit, seqPairs(got), seqPairs(w))
						}
					}
				}
				for _, limit := range []int{0, 1, 2, 5} {
					w := want
					if limit > 0 && len(w) > limit {
						w = w[len(w)-limit:]
					}
					got, _, _, err := s.NewestEventsOfMAC(m, isp, limit)
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(norm(got), norm(w)) {
						t.Fatalf("round %d: NewestEventsOfMAC(%v, %q, %d) = %v, want %v", round, m, isp, limit, seqPairs(got), seqPairs(w))
					}
				}
			}
		}
		s.Close()
	}
}

func norm(evs []Event) []Event {
	if len(evs) == 0 {
		return nil
	}
	return evs
}

func seqPairs(evs []Event) [][2]uint64 {
	var out [][2]uint64
	for _, e := range evs {
		out = append(out, [2]uint64{e.Seq, e.ISPSeq})
	}
	return out
}

// TestMACIndexLongISP: an event whose ISP name fits the events-by-isp
// key but not, with the span, MAC and low bits around it, an events-by-mac
// key (bbolt's keys hold at most 32768 bytes) is appended, and a
// schema-10 file holding one migrates: the event gets no events-by-mac
// entry (as one without a MAC) instead of the append, or the Open, failing
// with bbolt's ErrKeyTooLarge.
func TestMACIndexLongISP(t *testing.T) {
	long := strings.Repeat("x", bolt.MaxKeySize-12) // events-by-isp key: +9
	s, path := openTest(t, Options{NoSync: true})
	e, err := s.AddEvent(Event{Kind: EventRenewed, MAC: mac(1), ISP: long})
	if err != nil {
		t.Fatalf("AddEvent with a %d-byte ISP: %v", len(long), err)
	}
	if _, err := s.AddEvent(Event{Kind: EventRenewed, MAC: mac(1), ISP: "alpha"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	downgradeToV10(t, path)
	// Schema 10's entry of the long ISP's event (span, MAC, low bits).
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		m := mac(1)
		k := append(binary.BigEndian.AppendUint64(nil, e.Seq>>macSpanBits), m[:]...)
		return tx.Bucket(bucketEventMACIndex).Put(binary.BigEndian.AppendUint16(k, uint16(e.Seq)), binary.BigEndian.AppendUint64(nil, e.ISPSeq))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatalf("Open of a schema-10 file with a %d-byte ISP's event: %v", len(long), err)
	}
	defer s.Close()
	evs, _, _, err := s.EventsOfMAC(mac(1), "", 0, 0)
	if err != nil || len(evs) != 1 || evs[0].ISP != "alpha" {
		t.Errorf("the operator's read after the migration: %d events, %v; want alpha's one", len(evs), err)
	}
}
