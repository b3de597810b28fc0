package oatable

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugeMin is the slot-array size from which a table asks for transparent
// huge pages: at a million entries a table spans tens of MB, thousands of
// 4 KiB pages, more than the TLB holds, so nearly every probe would also
// pay a page walk (the start-up's bulk loads probe every entry). The
// advice is only a hint (THP "madvise" mode honours it, "never" ignores
// it), given before the memory is first touched (see internal/lfmap).
const hugeMin = 4 << 20

func adviseHuge(p unsafe.Pointer, n uintptr) {
	if n < hugeMin {
		return
	}
	const huge = 2 << 20
	start := uintptr(p)
	lo := (start + huge - 1) &^ (huge - 1)
	hi := (start + n) &^ (huge - 1)
	if hi <= lo {
		return
	}
	b := unsafe.Slice((*byte)(p), n)
	_ = unix.Madvise(b[lo-start:hi-start], unix.MADV_HUGEPAGE)
}
