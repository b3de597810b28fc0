package hugemem

import (
	"bytes"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	hugePage = 2 << 20
	page     = 4 << 10
)

// Prepare readies b, a new allocation not yet shared (a make of Min bytes
// or more, zeroed), for use as a table: it marks b's 2 MiB-aligned
// interior for transparent huge pages, faults all of b in for writing
// (MADV_POPULATE_WRITE, Linux 5.14; before that, a write of zero to each
// page, which is what b already holds), then asks the kernel to collapse
// the interior's pages into huge pages now (MADV_COLLAPSE, Linux 6.1)
// where the THP mode is "always" or "madvise". Below Min it does
// nothing. It cannot fail: a kernel that refuses the advice or the
// collapse leaves 4 KiB pages, all of them resident.
//
// The collapse is what makes the advice hold for memory the Go heap
// reuses (see the package documentation). In bench micro's pipeline
// benchmark, whose 1M MAC table is made after smaller runs freed theirs,
// the table had 0–48 % of its pages on huge pages across runs (pagemap
// and kpageflags) before; with the collapse, all of its interior.
func Prepare(b []byte) {
	n := len(b)
	if n < Min {
		return
	}
	start := uintptr(unsafe.Pointer(&b[0]))
	lo := (start + hugePage - 1) &^ (hugePage - 1)
	hi := (start + uintptr(n)) &^ (hugePage - 1)
	if hi > lo {
		_ = unix.Madvise(b[lo-start:hi-start], unix.MADV_HUGEPAGE)
	}
	populate(b, start)
	if hi > lo && collapseAllowed() {
		_ = unix.Madvise(b[lo-start:hi-start], unix.MADV_COLLAPSE)
	}
}

// populate faults all of b in for writing.
func populate(b []byte, start uintptr) {
	n := len(b)
	// madvise wants a page-aligned start: the first partial page is
	// faulted by its write below.
	first := (start + page - 1) &^ (page - 1)
	if first-start < uintptr(n) && unix.Madvise(b[first-start:], unix.MADV_POPULATE_WRITE) == nil {
		if first != start {
			b[0] = 0
		}
		return
	}
	for i := 0; i < n; i += page {
		b[i] = 0
	}
	b[n-1] = 0
}

// thpEnabledPath is the kernel's THP mode; a variable for the tests.
var thpEnabledPath = "/sys/kernel/mm/transparent_hugepage/enabled"

// collapseAllowed says whether Prepare may collapse: the THP mode in
// thpEnabledPath is "always" or "madvise". MADV_COLLAPSE ignores the
// mode (the kernel collapses even under "never"), so Prepare reads it
// itself: an operator who set "never" gets no huge pages from ispmux,
// and neither does a kernel without THP or a sandbox that hides /sys.
// It is read at each call (a table is made rarely), so a change of mode
// applies to the next table made.
func collapseAllowed() bool {
	m := thpMode(thpEnabledPath)
	return m == "always" || m == "madvise"
}

// thpMode returns the bracketed word of the THP mode file at path
// ("always [madvise] never" → "madvise"), or "" if it cannot be read.
func thpMode(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	_, after, ok := bytes.Cut(data, []byte("["))
	if !ok {
		return ""
	}
	mode, _, ok := bytes.Cut(after, []byte("]"))
	if !ok {
		return ""
	}
	return string(mode)
}
