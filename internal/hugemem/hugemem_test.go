//go:build linux

package hugemem

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resident counts the pages of b's page-aligned interior that are in
// memory (mincore), and how many pages it spans.
func resident(t *testing.T, b []byte) (in, pages int) {
	t.Helper()
	start := uintptr(unsafe.Pointer(&b[0]))
	lo := (start + page - 1) &^ (page - 1)
	hi := (start + uintptr(len(b))) &^ (page - 1)
	vec := make([]byte, (hi-lo)/page)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, lo, hi-lo, uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	for _, v := range vec {
		in += int(v & 1)
	}
	return in, len(vec)
}

// TestPrepareFaultsIn: a fresh table's pages are all resident after
// Prepare (none was before: fresh heap memory comes untouched from the
// kernel), and its contents are still zero.
func TestPrepareFaultsIn(t *testing.T) {
	b := make([]byte, 3*Min+123) // not a multiple of any page size
	before, pages := resident(t, b)
	Prepare(b)
	after, _ := resident(t, b)
	t.Logf("%d pages: %d resident before Prepare, %d after", pages, before, after)
	if after != pages {
		t.Errorf("%d of %d pages resident after Prepare", after, pages)
	}
	if before == pages {
		t.Logf("every page was resident before Prepare (reused heap memory): the test proves less")
	}
	for i, v := range b {
		if v != 0 {
			t.Fatalf("byte %d is %d after Prepare", i, v)
		}
	}
}
