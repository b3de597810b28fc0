package subscribers

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/ispmux/ispmux/internal/uring"
)

// TestJournalSyncVia: the journal syncs through io_uring wherever the
// kernel offers it (so that the group commit's leader holds no P while it
// waits), and says so.
func TestJournalSyncVia(t *testing.T) {
	want := "io_uring"
	if r, err := uring.New(); err != nil {
		t.Logf("io_uring not available (%v): the journal falls back to fdatasync", err)
		want = "fdatasync"
	} else {
		r.Close()
	}
	s, err := Open(filepath.Join(t.TempDir(), "s.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.JournalSync(); got != want {
		t.Errorf("JournalSync = %q, want %q", got, want)
	}
	// The journal's appends go through it.
	if err := s.CommitBinding(testBinding(1)); err != nil {
		t.Fatal(err)
	}
	if want == "io_uring" && s.jr.ring.Seq() == 0 {
		t.Error("a binding was committed without a sync through the ring")
	}
	s.Close()
	n, err := Open(filepath.Join(t.TempDir(), "n.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if got := n.JournalSync(); got != "none" {
		t.Errorf("NoSync: JournalSync = %q, want none", got)
	}
}

// TestJournalSyncFallback: where io_uring is refused, the journal syncs
// with fdatasync(2), and its records are durable as before.
func TestJournalSyncFallback(t *testing.T) {
	defer func(f func() (*uring.Ring, error)) { newRing = f }(newRing)
	newRing = func() (*uring.Ring, error) { return nil, errors.New("refused") }
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.JournalSync(); got != "fdatasync" {
		t.Errorf("JournalSync = %q, want fdatasync", got)
	}
	b := testBinding(1)
	if err := s.CommitBinding(b); err != nil {
		t.Fatal(err)
	}
	if s.pendingN.Load() != 1 {
		t.Fatalf("%d records pending, want the binding's in the journal", s.pendingN.Load())
	}
	s.Close()
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Binding(b.Access, b.VLAN, b.MAC)
	if err != nil || got.IP != b.IP {
		t.Fatalf("binding after reopen: %+v, %v", got, err)
	}
}
