package subscribers

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// TestForeignJournalRefused: a store file removed with its journal left
// (an operator "starting fresh" by deleting ispmux.db alone): the new file
// Open creates is refused beside that journal, whose records are another
// store's, and removed, so a second Open refuses again; the journal's
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
