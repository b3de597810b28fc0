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

// fresh maps n bytes of anonymous memory no one has touched (the Go heap
// may hand back pages it already used, which would prove nothing).
func fresh(t *testing.T, n int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Munmap(b) })
	return b
}

// TestPrepareFaultsIn: a fresh table's pages are all resident after
// Prepare, none before, and its contents are still zero; also for a table
// that starts and ends inside a page.
func TestPrepareFaultsIn(t *testing.T) {
	for _, c := range []struct{ off, cut int }{{0, 0}, {1, 7}, {100, 4095}, {4095, 1}} {
		m := fresh(t, 3*Min+2*page)
		b := m[c.off : len(m)-c.cut]
		if in, _ := resident(t, m); in != 0 {
			t.Fatalf("offset %d: %d pages of fresh memory already resident", c.off, in)
		}
		Prepare(b)
		// Every page b touches, the partial ones at both ends included.
		first := c.off &^ (page - 1)
		last := (len(m) - c.cut + page - 1) &^ (page - 1)
		if in, pages := resident(t, m[first:last]); in != pages {
			t.Errorf("offset %d, cut %d: %d of %d pages resident after Prepare", c.off, c.cut, in, pages)
		}
		for i, v := range m {
			if v != 0 {
				t.Fatalf("offset %d: byte %d is %d after Prepare", c.off, i, v)
			}
		}
	}
}

// TestPrepareSmall: below Min, Prepare leaves the memory alone.
func TestPrepareSmall(t *testing.T) {
	m := fresh(t, Min-page)
	Prepare(m)
	if in, _ := resident(t, m); in != 0 {
		t.Errorf("%d pages resident after Prepare of %d bytes (< Min)", in, len(m))
	}
}
