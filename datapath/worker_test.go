package datapath

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestInjectWakesSleepingWorker: a worker asleep in poll (idle timeout far
// longer than the test) sends an injected frame at once, every time.
func TestInjectWakesSleepingWorker(t *testing.T) {
	q := NewMemQueue(64, 2048)
	var sent atomic.Int32
	q.Sink = func([]byte) { sent.Add(1) }
	w, err := NewWorker(0, []Queue{q}, wire{}, 64, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- w.Run() }()
	stop := func() {
		w.Stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	for i := range 50 {
		time.Sleep(time.Millisecond) // let it fall asleep (sometimes)
		if !w.Inject(0, make([]byte, 60)) {
			t.Fatal("inject refused")
		}
		deadline := time.Now().Add(2 * time.Second)
		for sent.Load() != int32(i+1) {
			if time.Now().After(deadline) {
				stop()
				t.Fatalf("injected frame %d not sent within 2s (worker asleep)", i)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	stop() // the queue is the worker's until it has stopped
	if q.FreeFrames() != 64 {
		t.Errorf("frames leaked: %d free of 64", q.FreeFrames())
	}
}

// retag rewrites every frame's L2 header in place on the port it came in
// on: push a tag (14 → 18 bytes) or pop it (18 → 14).
type retag struct{ push bool }

func (h retag) Process(b *Batch) {
	for i, f := range b.Frames {
		v := Verdict{Action: Forward, Port: b.Port, Len: uint16(len(f))}
		copy(v.Hdr[:12], f[:12])
		if h.push {
			v.Hdr[12], v.Hdr[13], v.Hdr[14], v.Hdr[15] = 0x81, 0x00, 0x00, 0x64
			v.Hdr[16], v.Hdr[17] = f[12], f[13]
			v.HdrLen, v.Strip = 18, 14
		} else {
			v.Hdr[12], v.Hdr[13] = f[16], f[17]
			v.HdrLen, v.Strip = 14, 18
		}
		b.Out[i] = v
	}
}
func (retag) Flush() {}

// TestInPlaceHeaderChange: a frame sent back out of its own port with a
// longer or shorter header is rebuilt in place (no copy to another UMEM),
// payload intact.
func TestInPlaceHeaderChange(t *testing.T) {
	payload := []byte("0123456789abcdefghijklmnopqrstuvwxyz-ispmux-payload")
	plain := append([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x08, 0x00}, payload...)
	for _, push := range []bool{true, false} {
		q := NewMemQueue(16, 2048)
		var got []byte
		q.Sink = func(f []byte) { got = append([]byte(nil), f...) }
		w, err := NewWorker(0, []Queue{q}, retag{push}, 64, time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		in := plain
		want := append(append(append([]byte(nil), plain[:12]...), 0x81, 0x00, 0x00, 0x64, 0x08, 0x00), payload...)
		if !push {
			in, want = want, plain
		}
		q.Inject(in)
		w.RunOnce()
		if string(got) != string(want) {
			t.Errorf("push=%v:\n got %x\nwant %x", push, got, want)
		}
		if q.FreeFrames() != 16 {
			t.Errorf("push=%v: frames leaked", push)
		}
	}
}
