// Package hugememtest tells the tests of internal/hugemem and its users
// how a table's memory is backed: which of its pages are resident and
// which of those are parts of transparent huge pages; and any test the
// kernel's flags of the pages a mapping spans (Walk: a file's dirty
// pages, say).
package hugememtest

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"
	"unsafe"

	"github.com/ispmux/ispmux/internal/privtest"
	"golang.org/x/sys/unix"
)

const page = 4 << 10

// Pagemap and kpageflags bits (Documentation/admin-guide/mm/pagemap.rst).
const (
	pmPresent   = 1 << 63
	pmPFN       = 1<<55 - 1
	kpfTHP      = 1 << 22
	kpfHead     = 1 << 15
	kpfTail     = 1 << 16
	kpfCompound = kpfHead | kpfTail
)

// Backing returns, for the 4 KiB pages b spans, how many there are, how
// many are resident, and how many of those belong to a transparent huge
// page (Walk).
func Backing(tb testing.TB, b []byte) (pages, resident, huge int) {
	tb.Helper()
	pages, resident = Walk(tb, b, func(f uint64) {
		if f&kpfTHP != 0 && f&kpfCompound != 0 {
			huge++
		}
	})
	return pages, resident, huge
}

// KPFDirty is the kpageflags bit of a page written and not yet on disk
// (a file's page in the page cache).
const KPFDirty = 1 << 4

// Walk calls fn with the kernel's flags (/proc/kpageflags: KPFDirty …)
// of each resident 4 KiB page that b spans, and returns how many pages b
// spans and how many are resident. It reads /proc/self/pagemap and
// /proc/kpageflags, which give page frames only to root: a privileged
// test's, as privtest.Require decides (it fails tb unless root, or skips
// it knowingly).
func Walk(tb testing.TB, b []byte, fn func(flags uint64)) (pages, resident int) {
	tb.Helper()
	privtest.Require(tb)
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		tb.Fatal(err)
	}
	defer pm.Close()
	kf, err := os.Open("/proc/kpageflags")
	if err != nil {
		tb.Fatal(err)
	}
	defer kf.Close()
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	var buf [8]byte
	for a := start &^ (page - 1); a < start+uintptr(len(b)); a += page {
		pages++
		if _, err := pm.ReadAt(buf[:], int64(a/page*8)); err != nil {
			tb.Fatal(err)
		}
		e := binary.LittleEndian.Uint64(buf[:])
		if e&pmPresent == 0 {
			continue
		}
		resident++
		pfn := e & pmPFN
		if pfn == 0 {
			tb.Skip("pagemap hides page frames (run as root)")
		}
		if _, err := kf.ReadAt(buf[:], int64(pfn*8)); err != nil {
			tb.Fatal(err)
		}
		fn(binary.LittleEndian.Uint64(buf[:]))
	}
	return pages, resident
}

// RequireCollapse skips tb unless hugemem.Prepare collapses tables into
// huge pages here: the THP mode is "always" or "madvise" and the kernel
// has MADV_COLLAPSE (Linux 6.1), tried on a mapping of its own.
func RequireCollapse(tb testing.TB) {
	tb.Helper()
	data, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil {
		tb.Skipf("THP mode: %v", err)
	}
	if !bytes.Contains(data, []byte("[always]")) && !bytes.Contains(data, []byte("[madvise]")) {
		tb.Skipf("THP mode %q: no collapse", bytes.TrimSpace(data))
	}
	const huge = 2 << 20
	m, err := unix.Mmap(-1, 0, 2*huge, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		tb.Fatal(err)
	}
	defer unix.Munmap(m)
	start := uintptr(unsafe.Pointer(&m[0]))
	off := int((start+huge-1)&^(huge-1) - start)
	in := m[off : off+huge]
	in[0] = 1
	if err := unix.Madvise(in, unix.MADV_HUGEPAGE); err != nil {
		tb.Skipf("MADV_HUGEPAGE: %v", err)
	}
	if err := unix.Madvise(in, unix.MADV_COLLAPSE); err == unix.EINVAL {
		tb.Skip("kernel without MADV_COLLAPSE")
	}
}
