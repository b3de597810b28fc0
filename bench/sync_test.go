package bench

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/appliance"
)

// dirtyPages counts the pages of the file at path that are dirty in the
// page cache (written, not yet on disk): each page mapped and touched, its
// frame read from /proc/self/pagemap, its flags from /proc/kpageflags
// (KPF_DIRTY). Root only; a file on tmpfs has no disk to be clean on.
func dirtyPages(t *testing.T, path string) int {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: /proc/kpageflags")
	}
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
	pagemap, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer pagemap.Close()
	kflags, err := os.Open("/proc/kpageflags")
	if err != nil {
		t.Fatal(err)
	}
	defer kflags.Close()
	const kpfDirty = 1 << 4
	ps := os.Getpagesize()
	base := uintptr(unsafe.Pointer(&mem[0]))
	dirty := 0
	var b [8]byte
	for off := 0; off < len(mem); off += ps {
		pageSink += mem[off] // fault the page in
		if _, err := pagemap.ReadAt(b[:], int64((base+uintptr(off))/uintptr(ps))*8); err != nil {
			t.Fatal(err)
		}
		e := binary.LittleEndian.Uint64(b[:])
		if e&(1<<63) == 0 {
			t.Fatalf("page at %d of %s not present after a read", off, path)
		}
		pfn := e & (1<<55 - 1)
		if pfn == 0 {
			t.Skip("/proc/self/pagemap hides the frame numbers")
		}
		if _, err := kflags.ReadAt(b[:], int64(pfn)*8); err != nil {
			t.Fatal(err)
		}
		if binary.LittleEndian.Uint64(b[:])&kpfDirty != 0 {
			dirty++
		}
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
