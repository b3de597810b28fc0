package bench

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/internal/hugemem/hugememtest"
)

// dirtyPages counts the pages of the file at path that are dirty in the
// page cache (written, not yet on disk): the file mapped, each page
// touched, its flags read (hugememtest.Walk, root only). A file on tmpfs
// has no disk to be clean on.
func dirtyPages(t *testing.T, path string) int {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC {
		t.Skipf("%s is on tmpfs", path)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() == 0 {
		return 0
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	ps := os.Getpagesize()
	for off := 0; off < len(mem); off += ps {
		pageSink += mem[off] // fault the page in
	}
	dirty := 0
	pages, resident := hugememtest.Walk(t, mem, func(flags uint64) {
		if flags&hugememtest.KPFDirty != 0 {
			dirty++
		}
	})
	if resident != pages {
		t.Fatalf("%d of the %d pages of %s resident after a read of each", resident, pages, path)
	}
	return dirty
}

// pageSink keeps dirtyPages' reads of the mapped pages (each faults one
// in) from being optimised away.
var pageSink byte

// TestDirtyPages: the probe itself sees a file just written as dirty, and
// clean once synced (else the tests below could not fail).
func TestDirtyPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if n := dirtyPages(t, path); n == 0 {
		t.Fatal("a file just written: no dirty page seen")
	}
	if err := syncPath(path); err != nil {
		t.Fatal(err)
	}
	if n := dirtyPages(t, path); n != 0 {
		t.Fatalf("synced: %d dirty pages", n)
	}
}

// TestSeedSynced: a seeded store is on disk when the seed returns
// (syncState), so that the first start's first fdatasync does not write
// it out inside first_start_s.
func TestSeedSynced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	if err := seedScaleStore(context.Background(), path, 2000, []string{"alpha"}, "acc0", true, false, func(string, int) {}); err != nil {
		t.Fatal(err)
	}
	if n := dirtyPages(t, path); n != 0 {
		t.Fatalf("seeded store: %d dirty pages", n)
	}
}

// TestCopyStoreFilesSynced: the seeded store a lapsed point copies back
// before each run is on disk when the copy returns, so that the run's
// first fdatasync does not write it out inside restart_s. Fails without
// copyStoreFiles' syncs (every page of the copy dirty).
func TestCopyStoreFilesSynced(t *testing.T) {
	from, to := t.TempDir(), t.TempDir()
	path := filepath.Join(from, appliance.StoreName)
	if err := seedScaleStore(context.Background(), path, 2000, []string{"alpha"}, "acc0", true, true, func(string, int) {}); err != nil {
		t.Fatal(err)
	}
	if err := copyStoreFiles(from, to); err != nil {
		t.Fatal(err)
	}
	copied := filepath.Join(to, appliance.StoreName)
	if st, err := os.Stat(copied); err != nil || st.Size() == 0 {
		t.Fatalf("copy: %v", err)
	}
	if n := dirtyPages(t, copied); n != 0 {
		t.Fatalf("copied store: %d dirty pages", n)
	}
}
