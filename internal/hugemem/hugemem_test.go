//go:build linux

package hugemem

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/internal/hugemem/hugememtest"
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

// touched4K maps n fresh bytes and writes to every page with huge pages
// refused (MADV_NOHUGEPAGE, which Prepare's advice replaces): memory
// already faulted in on 4 KiB pages, as a make that reuses memory the Go
// heap has touched may get. Every page holds a pattern.
func touched4K(t *testing.T, n int) []byte {
	t.Helper()
	m := fresh(t, n)
	if err := unix.Madvise(m, unix.MADV_NOHUGEPAGE); err != nil {
		t.Fatal(err)
	}
	for i := range m {
		m[i] = byte(i / page)
	}
	return m
}

// checkPattern checks that m still holds touched4K's pattern, but for the
// byte at first: Prepare, given memory of zeros, faults a first partial
// page in by writing a zero to it.
func checkPattern(t *testing.T, m []byte, first int) {
	t.Helper()
	for i := range m {
		if want := byte(i / page); m[i] != want && i != first {
			t.Fatalf("byte %d is %d after Prepare, was %d", i, m[i], want)
		}
	}
}

// interior is the 2 MiB-aligned part of b, which Prepare advises.
func interior(b []byte) []byte {
	start := uintptr(unsafe.Pointer(&b[0]))
	lo := (start + hugePage - 1) &^ (hugePage - 1)
	hi := (start + uintptr(len(b))) &^ (hugePage - 1)
	return b[lo-start : hi-start]
}

// TestPrepareCollapses: memory already on 4 KiB pages ends up, in its
// 2 MiB-aligned interior, on huge pages, its contents kept. Before
// Prepare collapsed, the advice alone left such memory as it was (the
// 1M MAC table of bench micro's pipeline was on huge pages for 0–48 % of
// its pages across runs).
func TestPrepareCollapses(t *testing.T) {
	hugememtest.RequireCollapse(t)
	m := touched4K(t, 4*hugePage)
	b := m[page+100 : len(m)-7]
	in := interior(b)
	if pages, res, huge := hugememtest.Backing(t, m); res != pages || huge != 0 {
		t.Fatalf("before Prepare: %d of %d pages resident, %d huge; want all resident, none huge", res, pages, huge)
	}
	Prepare(b)
	if pages, res, huge := hugememtest.Backing(t, in); huge != pages || res != pages {
		t.Errorf("after Prepare: %d of the interior's %d pages resident, %d huge; want all huge", res, pages, huge)
	}
	checkPattern(t, m, page+100)
}

// TestPrepareNever: with THP "never" (or its mode unreadable) Prepare does
// not collapse, although MADV_COLLAPSE itself would: the memory stays on
// 4 KiB pages, all resident, its contents kept.
func TestPrepareNever(t *testing.T) {
	hugememtest.RequireCollapse(t) // else there is nothing to hold back
	dir := t.TempDir()
	never := filepath.Join(dir, "enabled")
	if err := os.WriteFile(never, []byte("always madvise [never]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { thpEnabledPath = "/sys/kernel/mm/transparent_hugepage/enabled" })
	for _, path := range []string{never, filepath.Join(dir, "missing")} {
		thpEnabledPath = path
		m := touched4K(t, 4*hugePage)
		b := m[page+100:]
		Prepare(b)
		if pages, res, huge := hugememtest.Backing(t, m); res != pages || huge != 0 {
			t.Errorf("mode file %s: %d of %d pages resident, %d huge; want all resident, none huge", path, res, pages, huge)
		}
		checkPattern(t, m, page+100)
	}
}

// TestTHPMode: the bracketed word of the mode file, "" when there is none.
func TestTHPMode(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		text, mode string
		collapse   bool
	}{
		{"always [madvise] never\n", "madvise", true},
		{"[always] madvise never\n", "always", true},
		{"always madvise [never]\n", "never", false},
		{"always madvise never\n", "", false},
		{"", "", false},
	} {
		p := filepath.Join(dir, "enabled")
		if err := os.WriteFile(p, []byte(c.text), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := thpMode(p); got != c.mode {
			t.Errorf("thpMode(%q) = %q, want %q", c.text, got, c.mode)
		}
	}
	if got := thpMode(filepath.Join(dir, "missing")); got != "" {
		t.Errorf("thpMode(missing file) = %q, want \"\"", got)
	}
}
