package subscribers

import (
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestForeignJournalRefused: a store file removed with its journal left
// (an operator "starting fresh" by deleting ispmux.db alone): Open refuses
// to make a new file beside that journal, whose records are another
// store's (checkForeignJournal: none is made, so no crash can leave one
// to take the journal at the next Open), and a second Open refuses again;
// the journal's
// bindings are not replayed into the new store. With the journal removed
// too, the store starts empty. Before, its bindings came back in the new
// store (and, numbered from the new store's clock base, its events made
// the replay fail with "event N is not after the log's newest").
func TestForeignJournalRefused(t *testing.T) {
	s, live := openTest(t, Options{})
	for i := range 3 {
		if _, err := s.CommitBindingEvent(testBinding(i), Event{Kind: EventBound, MAC: testBinding(i).MAC, ISP: "alpha"}); err != nil {
			t.Fatal(err)
		}
	}
	// A crash now: the records in the journal, not checkpointed.
	path := copyStore(t, live, nil)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	// Refused before any file is made (a crash then leaves none).
	if err := checkForeignJournal(path); !errors.As(err, new(ErrForeignJournal)) {
		t.Fatalf("checkForeignJournal of a missing file beside another store's journal: %v", err)
	}
	if err := checkForeignJournal(live); err != nil {
		t.Fatalf("checkForeignJournal of a store file that is there: %v", err)
	}
	for range 2 {
		_, err := Open(path, Options{})
		if !errors.As(err, new(ErrForeignJournal)) || !strings.Contains(err.Error(), "remove "+path+".journal and "+path+".journal.1") {
			t.Fatalf("Open of a new file beside another store's journal: %v", err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the refused new file is left: %v", err)
		}
	}
	for _, p := range journalPaths(path) {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if bs, err := s.Bindings(); err != nil || len(bs) != 0 {
		t.Errorf("a new store without the journal: %d bindings, %v", len(bs), err)
	}
}

// TestForeignJournalConcurrentOpen: two Opens of a missing store beside
// another store's journal (two ispmux started on one state_dir) both wait
// on the file the first creates; the first refuses the journal and removes
// that file. The second, given its lock, must not go on with the file
// unlinked from under it (replaying the journal into a file no one finds
// again: the records gone with it at the next start): it refuses the
// journal too, or is refused the lock. Before, the first removed the file
// after its lock was let go, and the second took the lock of the unlinked
// file (openLocked checked no new file's identity).
func TestForeignJournalConcurrentOpen(t *testing.T) {
	s, live := openTest(t, Options{})
	for i := range 3 {
		if err := s.CommitBinding(testBinding(i)); err != nil { // renewals: records without events
			t.Fatal(err)
		}
	}
	path := copyStore(t, live, nil)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		sts := make([]*Store, 2)
		start := make(chan struct{})
		for j := range 2 {
			wg.Go(func() {
				<-start
				sts[j], errs[j] = Open(path, Options{LockTimeout: 5 * time.Second})
			})
		}
		close(start)
		wg.Wait()
		for j, st := range sts {
			if st == nil {
				continue // refused (the journal, the lock, or a file being made): nothing taken
			}
			_, err := os.Stat(path)
			bs, _ := st.Bindings()
			st.Close()
			t.Fatalf("round %d: Open %d took the foreign journal (%d bindings) into a file unlinked from %s (stat: %v)", i, j, len(bs), path, err)
		}
	}
}
