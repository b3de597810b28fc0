package subscribers

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
	if via, why := s.JournalSync(); via != want || (want == "fdatasync") != (why != "") {
		t.Errorf("JournalSync = %q, %q; want %q (with why, for fdatasync)", via, why, want)
	}
	// The journal's appends go through it.
	if err := s.CommitBinding(testBinding(1)); err != nil {
		t.Fatal(err)
	}
	if r, ok := s.jr.ring.(*uring.Ring); want == "io_uring" && (!ok || r.Seq() < 2) {
		t.Error("a binding was committed without a sync through the ring")
	}
	s.Close()
	n, err := Open(filepath.Join(t.TempDir(), "n.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if via, why := n.JournalSync(); via != "none" || why != "" {
		t.Errorf("NoSync: JournalSync = %q, %q; want none", via, why)
	}
}

// recordSyncer records the files it is asked to sync, and fails as told.
type recordSyncer struct {
	synced []string
	fail   error
	closed bool
}

func (r *recordSyncer) Sync(f *os.File) error {
	r.synced = append(r.synced, f.Name())
	return r.fail
}

func (r *recordSyncer) Close() error { r.closed = true; return nil }

// TestJournalSyncsItsFile: each append syncs the file it wrote, before
// its writers are released; across a swap, the other file.
func TestJournalSyncsItsFile(t *testing.T) {
	defer func(f func() (syncer, error)) { newRing = f }(newRing)
	rec := &recordSyncer{}
	newRing = func() (syncer, error) { return rec, nil }
	s, err := Open(filepath.Join(t.TempDir(), "s.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 3 {
		if err := s.CommitBinding(testBinding(i)); err != nil {
			t.Fatal(err)
		}
		if len(rec.synced) != i+1 || rec.synced[i] != s.jr.paths[s.jr.cur] {
			t.Fatalf("after append %d synced %q, want %s last", i, rec.synced, s.jr.paths[s.jr.cur])
		}
	}
	s.mu.Lock()
	s.jr.swap()
	s.mu.Unlock()
	if err := s.CommitBinding(testBinding(3)); err != nil {
		t.Fatal(err)
	}
	if got := rec.synced[len(rec.synced)-1]; got != s.jr.paths[1] {
		t.Fatalf("after the swap synced %s, want %s", got, s.jr.paths[1])
	}
}

// TestJournalSyncFallback: where io_uring is refused, or its ring cannot
// run an fsync, the journal syncs with fdatasync(2) and its records are
// durable as before; an fsync's own error fails the append.
func TestJournalSyncFallback(t *testing.T) {
	defer func(f func() (syncer, error)) { newRing = f }(newRing)
	t.Run("refused", func(t *testing.T) {
		newRing = func() (syncer, error) { return nil, errors.New("refused") }
		path := filepath.Join(t.TempDir(), "s.db")
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if via, why := s.JournalSync(); via != "fdatasync" || why != "refused" {
			t.Errorf("JournalSync = %q, %q; want fdatasync, refused", via, why)
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
	})
	t.Run("not run", func(t *testing.T) {
		rec := &recordSyncer{fail: &uring.NotRunError{Err: syscall.ECANCELED}}
		newRing = func() (syncer, error) { return rec, nil }
		s, err := Open(filepath.Join(t.TempDir(), "s.db"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.CommitBinding(testBinding(1)); err != nil {
			t.Fatalf("commit whose io_uring fsync did not run: %v (want fdatasync instead)", err)
		}
		if !rec.closed || s.jr.ring != nil {
			t.Error("the ring that could not run an fsync was kept")
		}
		if via, why := s.JournalSync(); via != "fdatasync" || !strings.HasPrefix(why, "io_uring: fsync not run") {
			t.Errorf("JournalSync = %q, %q", via, why)
		}
		if err := s.CommitBinding(testBinding(2)); err != nil || len(rec.synced) != 1 {
			t.Fatalf("next commit: %v, ring asked %d times (want 1: dropped)", err, len(rec.synced))
		}
	})
	t.Run("fsync error", func(t *testing.T) {
		rec := &recordSyncer{fail: syscall.EIO}
		newRing = func() (syncer, error) { return rec, nil }
		s, err := Open(filepath.Join(t.TempDir(), "s.db"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.CommitBinding(testBinding(1)); !errors.Is(err, syscall.EIO) {
			t.Fatalf("commit whose fsync failed: %v, want EIO", err)
		}
		if s.jr.ring == nil {
			t.Error("an fsync's own error dropped the ring")
		}
	})
}
