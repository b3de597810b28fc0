package engine

import (
	"syscall"
	"testing"

	"github.com/ispmux/ispmux/datapath"
)

// TestLaneFrameAtMemoryEnd runs frames that end where readable memory
// ends (the last bytes of a mapping followed by an inaccessible page, as a
// frame at the end of a UMEM can be) through Process, the lane on: every
// prefix of the lane's frames, up and down, untagged and tagged, and each
// with the slice's capacity its length or a few bytes more. A read past a
// frame's capacity (an 8-byte load at a frame's end: laneKeys reads each
// MAC in one) faults and kills the test.
func TestLaneFrameAtMemoryEnd(t *testing.T) {
	page := syscall.Getpagesize()
	mem, err := syscall.Mmap(-1, 0, 2*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Skip("mmap:", err)
	}
	defer syscall.Munmap(mem)
	if err := syscall.Mprotect(mem[page:], syscall.PROT_NONE); err != nil {
		t.Skip("mprotect:", err)
	}
	end := mem[:page] // its last byte is the last readable one
	r := gardenRig(t)
	p := r.s.NewProcessor()
	seeds := laneSeeds(t)
	n := 0
	for _, s := range append(seeds[:3:3], seeds[16:19]...) { // up and down, untagged and tagged
		for l := 0; l <= len(s.frame); l++ {
			for _, room := range []int{0, 2, 8} {
				at := page - l - room
				f := end[at : at+l : at+l+room]
				copy(f, s.frame)
				b := datapath.Batch{Port: s.port, Frames: [][]byte{f}, Out: make([]datapath.Verdict, 1)}
				p.Process(&b)
				for q := r.s.Punts.Next(); q != nil; q = r.s.Punts.Next() {
					r.s.Punts.Release(q)
				}
				n++
			}
		}
	}
	if !laneOn || n < 300 {
		t.Fatalf("%d frames, lane on %v", n, laneOn)
	}
}
