package lfmap

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePageMin is the slot-array size from which New asks for transparent
// huge pages: a table of a million entries spans 20 MB at New's 0.8 load
// (32 MB at 0.5), 5,000 (8,000) 4 KiB pages, more than the TLB holds, so
// nearly every lookup would also pay a page walk. The advice is only a hint
// (THP "madvise" mode honours it; "never" ignores it), and it is given
// before the memory is first touched.
const hugePageMin = 4 << 20

func adviseHuge(s []slot) {
	n := len(s) * slotBytes
	if n < hugePageMin {
		return
	}
	const huge = 2 << 20
	start := uintptr(unsafe.Pointer(&s[0]))
	lo := (start + huge - 1) &^ (huge - 1)
	hi := (start + uintptr(n)) &^ (huge - 1)
	if hi <= lo {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), n)
	_ = unix.Madvise(b[lo-start:hi-start], unix.MADV_HUGEPAGE)
}
