package hugemem

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	hugePage = 2 << 20
	page     = 4 << 10
)

// Prepare readies b, a new allocation not yet touched, written or shared
// (a fresh make of Min bytes or more), for use as a table: it marks b's
// 2 MiB-aligned interior for transparent huge pages, then faults all of b
// in for writing (MADV_POPULATE_WRITE, Linux 5.14; before that, a write of
// zero to each page, which is what b already holds). Below Min it does
// nothing. It cannot fail: a kernel that refuses the advice leaves 4 KiB
// pages, faulted in by the writes.
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
