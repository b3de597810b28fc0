package datapath

import (
	"bytes"
	"testing"
	"time"
)

// injectRig is a worker over two in-memory ports whose handler forwards
// every frame to the other port (cross), with port 1's transmitted
// frames recorded.
type injectRig struct {
	w       *Worker
	in, out *MemQueue
	sent    [][]byte
}

func newInjectRig(t *testing.T, outFrames int) *injectRig {
	t.Helper()
	r := &injectRig{in: NewMemQueue(64, 2048), out: NewMemQueue(outFrames, 2048)}
	r.out.Sink = func(f []byte) { r.sent = append(r.sent, append([]byte(nil), f...)) }
	w, err := NewWorker(0, []Queue{r.in, r.out}, &cross{drops: map[TxDrop]map[uint8]int{}}, 64, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	r.w = w
	return r
}

// holdAll takes every free frame of q, as frames in flight do.
func holdAll(q *MemQueue) []Desc {
	var held []Desc
	for {
		d, ok := q.Alloc()
		if !ok {
			return held
		}
		held = append(held, d)
	}
}

func (r *injectRig) sentFrame(f []byte) int {
	n := 0
	for _, s := range r.sent {
		if bytes.Equal(s, f) {
			n++
		}
	}
	return n
}

// TestInjectedBeforeForwarded: the control plane's frame gets its port's
// last free frame before the forwarded frames of the same iteration do.
func TestInjectedBeforeForwarded(t *testing.T) {
	r := newInjectRig(t, 4)
	ctl := bytes.Repeat([]byte{0xc1}, 300)
	for range 8 {
		r.in.Inject(bytes.Repeat([]byte{0xf0}, 64))
	}
	if !r.w.Inject(1, ctl) {
		t.Fatal("inject")
	}
	r.w.RunOnce()
	if r.sentFrame(ctl) != 1 {
		t.Fatalf("the injected frame was not sent with 8 forwarded frames competing for 4 frames: sent %d frames", len(r.sent))
	}
	if len(r.sent) != 4 {
		t.Errorf("sent %d frames, want 4 (the injected one and 3 forwarded)", len(r.sent))
	}
}

// TestInjectedWaitsForFrame: an injected frame that finds no free frame
// of its port waits, ahead of the later ones of that port, and goes out
// once a frame is free; it is counted once as NoFrame.
func TestInjectedWaitsForFrame(t *testing.T) {
	r := newInjectRig(t, 8)
	held := holdAll(r.out)
	first, second := bytes.Repeat([]byte{1}, 100), bytes.Repeat([]byte{2}, 100)
	if !r.w.Inject(1, first) {
		t.Fatal("inject")
	}
	for range 5 {
		r.w.RunOnce()
	}
	if !r.w.Inject(1, second) {
		t.Fatal("inject")
	}
	r.w.RunOnce()
	if len(r.sent) != 0 {
		t.Fatalf("sent %d frames with no free frame", len(r.sent))
	}
	if got := r.w.injN.Load(); got != 2 {
		t.Fatalf("%d frames queued, want both waiting", got)
	}
	if s := r.out.Stats(); s.NoFrame != 0 {
		t.Errorf("NoFrame %d, want 0 (the frames wait, nothing is dropped)", s.NoFrame)
	}
	r.out.Free(held[0]) // one frame back: the first goes, the second still waits
	r.w.RunOnce()
	if len(r.sent) != 1 || !bytes.Equal(r.sent[0], first) {
		t.Fatalf("after one frame came back: sent %d, want the first injected frame", len(r.sent))
	}
	for _, d := range held[1:] {
		r.out.Free(d)
	}
	r.w.RunOnce()
	if len(r.sent) != 2 || !bytes.Equal(r.sent[1], second) {
		t.Fatalf("sent %d, want the second injected frame after the first", len(r.sent))
	}
	if r.w.injN.Load() != 0 || len(r.w.injFree) != injectCap {
		t.Errorf("queue not drained: %d queued, %d of %d buffers free", r.w.injN.Load(), len(r.w.injFree), injectCap)
	}
	if r.out.FreeFrames() != 8 {
		t.Errorf("frames leaked: %d of 8 free", r.out.FreeFrames())
	}
}

// TestInjectedHoldEnds: an injected frame that waited injectHold for a
// frame is dropped (its buffer back, the queue empty); so is one for a
// port in error, at once.
func TestInjectedHoldEnds(t *testing.T) {
	defer func(h time.Duration) { injectHold = h }(injectHold)
	injectHold = 20 * time.Millisecond
	r := newInjectRig(t, 8)
	held := holdAll(r.out)
	if !r.w.Inject(1, make([]byte, 60)) {
		t.Fatal("inject")
	}
	r.w.RunOnce()
	if r.w.injN.Load() != 1 {
		t.Fatal("the frame did not wait")
	}
	time.Sleep(2 * injectHold)
	r.w.RunOnce()
	if r.w.injN.Load() != 0 || len(r.w.injFree) != injectCap {
		t.Errorf("after the hold: %d queued, %d of %d buffers free", r.w.injN.Load(), len(r.w.injFree), injectCap)
	}
	if s := r.out.Stats(); s.NoFrame != 1 {
		t.Errorf("NoFrame %d, want 1: the dropped frame", s.NoFrame)
	}
	for _, d := range held {
		r.out.Free(d)
	}
	r.w.RunOnce()
	if len(r.sent) != 0 {
		t.Errorf("a dropped frame was sent")
	}

	// A port in error does not hold it.
	held = holdAll(r.out)
	r.w.qerr[1] = true
	if !r.w.Inject(1, make([]byte, 60)) {
		t.Fatal("inject")
	}
	r.w.drainInjected()
	if r.w.injN.Load() != 0 {
		t.Errorf("a frame for a port in error waits")
	}
	for _, d := range held {
		r.out.Free(d)
	}
}

// TestInjectedWaitAllocs: an iteration with a waiting injected frame
// allocates nothing.
func TestInjectedWaitAllocs(t *testing.T) {
	r := newInjectRig(t, 8)
	holdAll(r.out)
	if !r.w.Inject(1, make([]byte, 60)) {
		t.Fatal("inject")
	}
	if a := testing.AllocsPerRun(100, func() { r.w.RunOnce() }); a != 0 {
		t.Errorf("%.1f allocations per iteration", a)
	}
}
