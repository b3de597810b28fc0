package subscribers

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/internal/privtest"
)

// sparseCopy copies the file src to dst as cp --sparse=always does: a
// 4 KiB block of zeros is skipped, left a hole.
func sparseCopy(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zero := make([]byte, 4096)
	for off := 0; off < len(b); off += len(zero) {
		blk := b[off:min(off+len(zero), len(b))]
		if bytes.Equal(blk, zero[:len(blk)]) {
			continue
		}
		if _, err := f.WriteAt(blk, int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

// unreserved returns how many bytes of the file p are holes (as the
// journal finds them: SEEK_HOLE), and whether its blocks cover its size
// (st_blocks, the file system's own count, which holds the unwritten
// extents too).
func unreserved(t *testing.T, p string) (holeBytes int64, covered bool) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	hs, err := holes(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		holeBytes += h.to - h.from
	}
	return holeBytes, st.Sys().(*syscall.Stat_t).Blocks*512 >= st.Size()
}

// TestJournalReservedAtOpen: Open reserves the journal's files again, so
// that a sparse copy of the state directory (cp --sparse=always, rsync -S,
// a restore: the zeros made holes again, the size kept) gets its
// reservation back before any append, keeping what the files hold; with
// fallocate, and with the zeros alone where the file system has none. It
// kept the size and reserved nothing: a full disk failed the appends of
// a journal so copied (a field trial).
func TestJournalReservedAtOpen(t *testing.T) {
	for _, fa := range []string{"fallocate", "no fallocate"} {
		t.Run(fa, func(t *testing.T) {
			calls := 0
			defer func(f func(*os.File, int64, int64) error) { allocate = f }(allocate)
			allocate = func(f *os.File, off, n int64) error {
				calls++
				if fa == "no fallocate" {
					return os.NewSyscallError("fallocate", syscall.EOPNOTSUPP)
				}
				return fallocate(f, off, n)
			}
			s, path := openTest(t, Options{})
			const n = 20
			for i := range n {
				if err := s.CommitBinding(testBinding(i)); err != nil {
					t.Fatal(err)
				}
			}
			// The files as a crash leaves them (the records pending),
			// copied sparsely.
			dst := filepath.Join(t.TempDir(), "s.db")
			was := map[string][]byte{}
			for _, suffix := range []string{"", ".journal", ".journal.1"} {
				sparseCopy(t, path+suffix, dst+suffix)
				was[suffix], _ = os.ReadFile(dst + suffix)
			}
			for _, suffix := range []string{".journal", ".journal.1"} {
				if h, _ := unreserved(t, dst+suffix); h == 0 {
					t.Fatalf("the sparse copy of %s has no hole: the file system keeps none, the test proves nothing", suffix)
				}
			}
			calls = 0
			c, err := Open(dst, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if calls < 2 {
				t.Errorf("Open called fallocate %d times, want once for each file", calls)
			}
			for _, suffix := range []string{".journal", ".journal.1"} {
				if h, covered := unreserved(t, dst+suffix); h != 0 || !covered {
					t.Errorf("%s after Open: %d bytes of holes, blocks covering its size %v; want it all reserved", suffix, h, covered)
				}
				// What the files held is kept (but for the first
				// header, zeroed once the records are replayed).
				now, _ := os.ReadFile(dst + suffix)
				if len(now) != len(was[suffix]) || !bytes.Equal(now[jrecHeader:], was[suffix][jrecHeader:]) {
					t.Errorf("%s: Open changed what it held past its first header (%d bytes, were %d)", suffix, len(now), len(was[suffix]))
				}
			}
			if all, err := c.Bindings(); err != nil || len(all) != n {
				t.Errorf("after the copy's Open: %d bindings, %v; want %d", len(all), err, n)
			}
		})
	}
}

// TestJournalGrowReserves: the journal's growth (past journalInitial)
// reserves its blocks as the first ones are (fallocate, then zeros).
func TestJournalGrowReserves(t *testing.T) {
	var got []span
	defer func(f func(*os.File, int64, int64) error) { allocate = f }(allocate)
	allocate = func(f *os.File, off, n int64) error {
		got = append(got, span{off, off + n})
		return fallocate(f, off, n)
	}
	s, path := openTest(t, Options{NoSync: true})
	got = nil
	b := testBinding(1)
	b.Circuit = string(bytes.Repeat([]byte{'c'}, 1000)) // ~1.1 KiB a record
	for i := 0; s.jr.sizes[0] == journalInitial; i++ {
		b.MAC = mac(i)
		if err := s.CommitBinding(b); err != nil {
			t.Fatal(err)
		}
	}
	if want := (span{journalInitial, journalInitial + journalGrow}); len(got) != 1 || got[0] != want {
		t.Errorf("fallocate calls of the growth %v, want %v", got, want)
	}
	if h, covered := unreserved(t, path+".journal"); h != 0 || !covered {
		t.Errorf("grown journal: %d bytes of holes, blocks covering its size %v", h, covered)
	}
}

// smallDisk mounts a tmpfs of size (mount's size= option: "32m") on a new
// directory and returns it. It is unmounted at the test's end (lazily:
// whatever the test left open in it), whether the test passed or not.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	privtest.Lab(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mount a tmpfs of %s: %v", size, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes the file dir/fill until the file system refuses more
// (ENOSPC), and returns its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "fill")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, n := range []int{1 << 20, 4096} {
		buf := bytes.Repeat([]byte{0xa5}, n)
		for err == nil {
			_, err = f.Write(buf)
		}
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("filling %s: %v, want ENOSPC", dir, err)
		}
		err = nil
	}
	return p
}

// TestJournalReservedOnFullDisk: a store restored with cp --sparse=always
// onto a small file system, which then fills up, still takes journal
// appends (its reservation is made again at Open) and closes cleanly (the
// zeroed first headers at Close are in reserved blocks). Appends failed
// with ENOSPC, and so did Close (a field trial).
//
// 32 MiB, not less: bbolt maps the store file with MAP_POPULATE, and on
// tmpfs that fills its holes (the file is 16 MiB long, sparse): on
// 8 MiB, Open alone filled the disk.
func TestJournalReservedOnFullDisk(t *testing.T) {
	disk := smallDisk(t, "32m")
	s, src := openTest(t, Options{})
	for i := range 3 {
		if err := s.CommitBinding(testBinding(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(disk, "state.db")
	for _, suffix := range []string{"", ".journal", ".journal.1"} {
		if out, err := exec.Command("cp", "--sparse=always", src+suffix, path+suffix).CombinedOutput(); err != nil {
			t.Fatalf("cp --sparse=always: %v: %s", err, out)
		}
	}
	if h, _ := unreserved(t, path+".journal.1"); h == 0 {
		t.Fatal("cp --sparse=always left the journal no hole: the test proves nothing")
	}

	// Opened and closed with nothing to checkpoint on the full disk:
	// Close writes only into the journal's reserved blocks.
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fill := fillDisk(t, disk)
	if err := s.Close(); err != nil {
		t.Errorf("Close on the full disk with nothing to checkpoint: %v", err)
	}

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("Open on the full disk with nothing to replay: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	const n = 2000 // ~300 KB of records, fewer than a checkpoint's
	for i := 3; i < n; i++ {
		if err := s.CommitBinding(testBinding(i)); err != nil {
			t.Fatalf("binding %d on the full disk: %v", i, err)
		}
	}
	c, _ := crashCopy(t, path)
	if all, err := c.Bindings(); err != nil || len(all) != n {
		t.Errorf("after a crash: %d bindings, %v; want %d", len(all), err, n)
	}
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close once the disk has room: %v", err)
	}
}

// TestJournalCloseOnFullDisk: a clean stop on a full disk, bindings
// pending in the journal, loses nothing and says so: Close's checkpoint
// cannot write the store file, so Close returns a *JournalKeptError (the
// store closed, the journal kept), and the next Open, once the disk has
// room, replays every binding. Close returned a plain error, and ispmux
// exited non-zero as if something was lost (a field trial).
func TestJournalCloseOnFullDisk(t *testing.T) {
	disk := smallDisk(t, "32m")
	path := filepath.Join(disk, "state.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	for i := range n {
		if err := s.CommitBinding(testBinding(i)); err != nil {
			t.Fatal(err)
		}
	}
	fill := fillDisk(t, disk)
	err = s.Close()
	var kept *JournalKeptError
	if !errors.As(err, &kept) || !kept.Replay || kept.Pending != n || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Close on the full disk: %v (%#v), want a JournalKeptError of %d records to replay, wrapping ENOSPC", err, kept, n)
	}
	for _, want := range []string{"100 binding journal records not written into the store file", "nothing is lost", "the next start replays"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Close's error %q does not say %q", err, want)
		}
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
	// The next start on the still full disk cannot replay, and keeps the
	// journal for the one after.
	if s, err := Open(path, Options{}); !errors.Is(err, syscall.ENOSPC) {
		if err == nil {
			s.Close()
		}
		t.Errorf("Open on the full disk: %v, want ENOSPC", err)
	}
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if all, err := s.Bindings(); err != nil || len(all) != n {
		t.Errorf("after the replay: %d bindings, %v; want %d", len(all), err, n)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close once the disk has room: %v", err)
	}
}

// TestJournalReopenAllocatesNothing: reopening a store whose journal is
// reserved (no holes) calls no fallocate: xfs reserves space for a
// fallocate's whole range before it looks at the blocks there, so one
// over the written files failed every start on a full xfs (a review).
func TestJournalReopenAllocatesNothing(t *testing.T) {
	calls := 0
	defer func(f func(*os.File, int64, int64) error) { allocate = f }(allocate)
	allocate = func(f *os.File, off, n int64) error {
		calls++
		return fallocate(f, off, n)
	}
	s, path := openTest(t, Options{})
	for i := range 20 {
		if err := s.CommitBinding(testBinding(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	calls = 0
	c, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if calls != 0 {
		t.Errorf("reopening a reserved journal called fallocate %d times, want 0", calls)
	}
}
