package subscribers

import (
	"testing"
)

// A copy of a restored copy (or a store that crashed during two Backups)
// has two gaps in its event numbers. The log's trim by count must still
// count only the numbers given out: with 6 events and a retention of 10,
// nothing may be trimmed.
func TestCopyOfCopyKeepsLog(t *testing.T) {
	opts := Options{NoSync: true, EventRetention: 10}
	s, _ := openTest(t, opts)
	addEvents(t, s, 3, "alpha")
	c1, _ := restoreCopy(t, s, opts)
	addEvents(t, c1, 2, "alpha")
	c2, _ := restoreCopy(t, c1, opts)
	addEvents(t, c2, 1, "alpha")
	evs, err := c2.Events(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, e := range evs {
		seqs = append(seqs, e.Seq)
	}
	if len(evs) != 6 {
		t.Fatalf("copy of a copy after 1 new event holds %v; want all 6 events (retention 10)", seqs)
	}
	// SeqBefore (ctl events --last) over both gaps.
	last, _ := c2.LastEventSeq()
	if got := c2.SeqBefore(last, 4); got != seqs[1] {
		t.Errorf("SeqBefore(newest, 4) = %d, want %d (the 2nd event: the newest 4 follow it); log %v", got, seqs[1], seqs)
	}
}
