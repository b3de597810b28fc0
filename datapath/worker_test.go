package datapath

import (
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// TestIdleWaitFreesP: with one P (GOMAXPROCS=1, as under taskset -c N),
// a goroutine the worker readies (here the receiver of what its sink
// sends, as the control plane receives punted DHCP frames) runs at once,
// not after sysmon retakes the P from a worker asleep in poll(2) (up to
// 10 ms). The worker waits through the netpoller; the poll(2) fallback's
// figures are logged for comparison.
func TestIdleWaitFreesP(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, netpoll := range []bool{true, false} {
		q := NewMemQueue(64, 2048)
		got := make(chan struct{}, 1)
		q.Sink = func([]byte) { got <- struct{}{} }
		w, err := NewWorker(0, []Queue{q}, wire{}, 64, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if netpoll != (w.epc != nil) {
			if netpoll {
				t.Fatal("the worker does not wait through the netpoller")
			}
		}
		if !netpoll {
			w.closeEpoll()
		}
		done := make(chan error)
		go func() { done <- w.Run() }()
		var lat []time.Duration
		for range 25 {
			time.Sleep(15 * time.Millisecond) // idle: sysmon backs off
			start := time.Now()
			if !w.Inject(0, make([]byte, 60)) {
				t.Fatal("inject refused")
			}
			<-got
			lat = append(lat, time.Since(start))
		}
		w.Stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		slices.Sort(lat)
		med, worst := lat[len(lat)/2], lat[len(lat)-1]
		t.Logf("netpoll=%v: inject → sink → receiver p50 %v, max %v", netpoll, med, worst)
		if netpoll && med > 2*time.Millisecond {
			t.Errorf("p50 %v with the netpoller wait: the sleeping worker holds the P", med)
		}
	}
}

// TestIdleWaitAllocs: going to sleep and waking allocates nothing.
func TestIdleWaitAllocs(t *testing.T) {
	q := NewMemQueue(64, 2048)
	w, err := NewWorker(0, []Queue{q}, wire{}, 64, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer w.closeEpoll()
	if w.epc == nil {
		t.Fatal("no netpoller wait")
	}
	w.wake()
	if err := w.sleep(); err != nil { // warm up (the deadline timer)
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		w.wake()
		if err := w.sleep(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per sleep", allocs)
	}
	// Parked in the netpoller, the loop is woken through its read
	// deadline, not the eventfd (a system call on each side).
	w.wake()
	var buf [8]byte
	if _, err := unix.Read(w.efd, buf[:]); err != unix.EAGAIN {
		t.Errorf("wake wrote the eventfd (read: %v)", err)
	}
	if err := w.sleep(); err != nil {
		t.Fatal(err)
	}
}
