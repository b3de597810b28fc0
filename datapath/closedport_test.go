package datapath

import (
	"testing"
	"time"
)

// TestClosedPortDropReason: a frame forwarded to a port whose queue is
// closed (link down or interface gone, CloseQueues) is reported as
// TxPortError (port_error), as reopen.go and docs/ARCHITECTURE.md promise
// ("what is forwarded to it is dropped as port_error"); it was TxNoFrame,
// which reads as UMEM exhaustion.
func TestClosedPortDropReason(t *testing.T) {
	in := NewMemQueue(64, 2048)
	// A queue as xskQueue.close leaves it: no socket, no UMEM, no free frame.
	closed := &xskQueue{frameSize: 2048, frames: frameStack{frameSize: 2048}}
	h := &cross{drops: map[TxDrop]map[uint8]int{}}
	w, err := NewWorker(0, []Queue{in, closed}, h, 64, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 60)
	w.RunOnce() // Service of the closed queue reports errClosed
	for range 3 {
		if !in.Inject(frame) {
			t.Fatal("inject")
		}
	}
	w.RunOnce()
	if got := h.drops[TxPortError][0]; got != 3 {
		t.Errorf("frames forwarded to a closed port: port_error %d, want 3 (all reports: %v)", got, h.drops)
	}
	if in.FreeFrames() != 64 {
		t.Errorf("leak: %d free of 64", in.FreeFrames())
	}
}
