package subscribers

import (
	"bytes"
	"os"
	"syscall"
	"testing"
)

// unreserved returns how many bytes of the file p are holes (as the
// journal finds them: SEEK_HOLE), and whether its blocks cover its size
// (st_blocks, the file system's own count, which holds the unwritten
// extents too).
func unreserved(t *testing.T, p string) (holeBytes int64, covered bool) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	hs, err := holes(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		holeBytes += h.to - h.from
	}
	return holeBytes, st.Sys().(*syscall.Stat_t).Blocks*512 >= st.Size()
}

// TestJournalGrowReserves: the journal's growth (past journalInitial)
// reserves its blocks as the first ones are (fallocate, then zeros).
func TestJournalGrowReserves(t *testing.T) {
	var got []span
	defer func(f func(*os.File, int64, int64) error) { allocate = f }(allocate)
	allocate = func(f *os.File, off, n int64) error {
		got = append(got, span{off, off + n})
		return fallocate(f, off, n)
	}
	s, path := openTest(t, Options{NoSync: true})
	got = nil
	b := testBinding(1)
	b.Circuit = string(bytes.Repeat([]byte{'c'}, 1000)) // ~1.1 KiB a record
	for i := 0; s.jr.sizes[0] == journalInitial; i++ {
		b.MAC = mac(i)
		if err := s.CommitBinding(b); err != nil {
			t.Fatal(err)
		}
	}
	if want := (span{journalInitial, journalInitial + journalGrow}); len(got) != 1 || got[0] != want {
		t.Errorf("fallocate calls of the growth %v, want %v", got, want)
	}
	if h, covered := unreserved(t, path+".journal"); h != 0 || !covered {
		t.Errorf("grown journal: %d bytes of holes, blocks covering its size %v", h, covered)
	}
}
