package subscribers

import (
	"path/filepath"
	"testing"
)

func TestCommitStats(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "s.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := s.CommitStats()
	if _, err := s.AddEvent(Event{Kind: EventUnknown}); err != nil {
		t.Fatal(err)
	}
	after := s.CommitStats()
	if after.Transactions != before.Transactions+1 || after.Writes != before.Writes+1 || after.Latency.Count != before.Latency.Count+1 || after.Latency.Sum <= before.Latency.Sum {
		t.Fatalf("before %+v after %+v", before, after)
	}
}
