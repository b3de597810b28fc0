package datapath

import (
	"errors"
	"testing"
	"time"
)

// choke is an egress queue whose TX ring takes at most room frames per
// call; with down set its Service reports the port in error.
type choke struct {
	*MemQueue
	room int
	down bool
}

func (q *choke) Transmit(descs []Desc) int {
	return q.MemQueue.Transmit(descs[:min(len(descs), q.room)])
}

func (q *choke) Service() error {
	if q.down {
		return errors.New("down")
	}
	return nil
}

// cross forwards every frame from port p to port 1-p (a copy into the other
// UMEM) and records the TX drops the worker reports.
type cross struct {
	drops map[TxDrop]map[uint8]int
}

func (h *cross) Process(b *Batch) {
	for i, f := range b.Frames {
		b.Out[i] = Verdict{Action: Forward, Port: 1 - b.Port, Len: uint16(len(f))}
	}
}
func (h *cross) Flush() {}
func (h *cross) TxDropped(in uint8, why TxDrop, n int) {
	if h.drops[why] == nil {
		h.drops[why] = map[uint8]int{}
	}
	h.drops[why][in] += n
}

// TestTxDrops: a forwarded frame the worker cannot send is reported to the
// handler by ingress port and cause — no free frame in the egress UMEM, TX
// ring full, TX ring full on a port in error — and counted on the egress
// queue; an injected frame that cannot be sent is counted only there.
func TestTxDrops(t *testing.T) {
	in := NewMemQueue(64, 2048)
	out := &choke{MemQueue: NewMemQueue(64, 2048), room: 64}
	h := &cross{drops: map[TxDrop]map[uint8]int{}}
	w, err := NewWorker(0, []Queue{in, out}, h, 64, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 60)
	send := func(n int) {
		t.Helper()
		for range n {
			if !in.Inject(frame) {
				t.Fatal("inject")
			}
		}
		w.RunOnce()
	}
	want := func(why TxDrop, n int) {
		t.Helper()
		if got := h.drops[why][0]; got != n {
			t.Errorf("TxDrop %d from port 0: %d, want %d (all %v)", why, got, n, h.drops)
		}
	}

	// The egress UMEM has no free frame.
	var held []Desc
	for {
		d, ok := out.Alloc()
		if !ok {
			break
		}
		held = append(held, d)
	}
	send(3)
	want(TxNoFrame, 3)
	for _, d := range held {
		out.Free(d)
	}
	if s := out.Stats(); s.NoFrame != 3 {
		t.Errorf("egress NoFrame %d, want 3", s.NoFrame)
	}

	// The TX ring takes 2 of 5.
	out.room = 2
	send(5)
	want(TxRingFull, 3)

	// The port is in error: its TX ring takes nothing.
	out.room, out.down = 0, false
	w.RunOnce() // Service: fine
	out.down = true
	w.RunOnce() // Service: in error
	send(4)
	want(TxPortError, 4)
	want(TxRingFull, 3)

	// Injected frames that cannot be sent are not the handler's drops.
	if !w.Inject(1, frame) {
		t.Fatal("inject")
	}
	w.RunOnce()
	if len(h.drops[TxPortError]) != 1 || len(h.drops[TxRingFull]) != 1 || len(h.drops[TxNoFrame]) != 1 {
		t.Errorf("drops reported for another port: %v", h.drops)
	}
	if s := out.Stats(); s.TxFull != 3+4+1 {
		t.Errorf("egress TxFull %d, want 8 (the handler's 7 and the injected frame)", s.TxFull)
	}
	if in.FreeFrames() != 64 || out.FreeFrames() != 64 {
		t.Errorf("frames leaked: in %d out %d free of 64", in.FreeFrames(), out.FreeFrames())
	}

	// Without allocating.
	mq := NewMemQueue(64, 2048)
	w2, err := NewWorker(0, []Queue{in, mq}, h, 64, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	held = held[:0]
	for {
		d, ok := mq.Alloc()
		if !ok {
			break
		}
		held = append(held, d)
	}
	allocs := testing.AllocsPerRun(100, func() {
		for range 8 {
			in.Inject(frame)
		}
		w2.RunOnce()
	})
	if allocs != 0 {
		t.Errorf("dropping iteration allocates %.1f times", allocs)
	}
	if s := mq.Stats(); s.NoFrame != 808 {
		t.Errorf("egress NoFrame %d, want 808", s.NoFrame)
	}
}
