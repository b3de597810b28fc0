package datapath

import (
	"bytes"
	"encoding/binary"
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

// decTTLer forwards every frame to port out with Verdict.DecTTL set,
// replacing its 14-byte header with one of hdrLen bytes.
type decTTLer struct {
	out    uint8
	hdrLen uint8
}

func (h decTTLer) Process(b *Batch) {
	for i, f := range b.Frames {
		v := Verdict{Action: Forward, Port: h.out, Len: uint16(len(f)), DecTTL: true, HdrLen: h.hdrLen, Strip: 14}
		for k := range v.Hdr {
			v.Hdr[k] = 0xa0 + byte(k)
		}
		b.Out[i] = v
	}
}
func (decTTLer) Flush() {}

// TestVerdictDecTTL: the worker decrements the TTL and patches the header
// checksum of the IPv4 packet a DecTTL verdict keeps, whether it copies
// the frame to another port (with a header of the same length or a longer
// one) or sends it back in place; nothing else changes.
func TestVerdictDecTTL(t *testing.T) {
	ip := []byte{0x45, 0, 0, 28, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 100, 64, 0, 11, 198, 51, 100, 10,
		0x04, 0x00, 0x00, 0x09, 0x00, 0x08, 0x00, 0x00}
	binary.BigEndian.PutUint16(ip[10:12], ^ipSum(ip[:20]))
	frame := append([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x08, 0x00}, ip...)
	for _, c := range []struct {
		name   string
		out    uint8
		hdrLen uint8
	}{{"copy", 1, 14}, {"copy, longer header", 1, 18}, {"in place", 0, 18}, {"in place, same length", 0, 14}} {
		qs := []*MemQueue{NewMemQueue(16, 2048), NewMemQueue(16, 2048)}
		var got []byte
		qs[c.out].Sink = func(f []byte) { got = append([]byte(nil), f...) }
		w, err := NewWorker(0, []Queue{qs[0], qs[1]}, decTTLer{c.out, c.hdrLen}, 64, time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		qs[0].Inject(frame)
		w.RunOnce()
		off := int(c.hdrLen)
		if len(got) != off+len(ip) {
			t.Fatalf("%s: sent %d bytes, want %d", c.name, len(got), off+len(ip))
		}
		want := append([]byte(nil), ip...)
		want[8]--
		binary.BigEndian.PutUint16(want[10:12], 0)
		binary.BigEndian.PutUint16(want[10:12], ^ipSum(want[:20]))
		if !bytes.Equal(got[off:], want) {
			t.Errorf("%s: IPv4 packet sent\n% x, want\n% x", c.name, got[off:], want)
		}
		if !bytes.Equal(got[:off], []byte{0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0xb0, 0xb1}[:off]) {
			t.Errorf("%s: header not replaced: % x", c.name, got[:off])
		}
		if qs[0].FreeFrames() != 16 || qs[1].FreeFrames() != 16 {
			t.Errorf("%s: frames leaked", c.name)
		}
	}
}

// ipSum is the one's complement sum of h (even length).
func ipSum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
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

// TestBusyWorkerYields: with one P, a goroutine the worker readies (as it
// readies the control plane with a punted DHCP frame) runs within about
// yieldFrames more frames, not after the scheduler's 10 ms preemption
// (hundreds of thousands of MemQueue frames). Counted in frames, not
// timed.
func TestBusyWorkerYields(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	q := NewMemQueue(512, 2048)
	q.Source = func([]byte) int { return 60 } // always more traffic
	h := &readier{ready: make(chan struct{})}
	w, err := NewWorker(0, []Queue{q}, h, 64, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- w.Run() }()
	var worst uint64
	for range 20 {
		h.arm.Store(true)
		<-h.ready // readied by the handler's send
		worst = max(worst, h.frames.Load()-h.at.Load())
	}
	w.Stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("frames the worker handled before the goroutine it readied ran: at most %d", worst)
	if worst > 3*yieldFrames {
		t.Errorf("the readied goroutine waited %d frames (yield every %d): the busy worker holds the P", worst, yieldFrames)
	}
}

// readier drops every frame; once armed, its next batch sends on ready
// (to a goroutine waiting there) and notes the frame count at the time.
type readier struct {
	arm        atomic.Bool
	frames, at atomic.Uint64
	ready      chan struct{}
}

func (r *readier) Process(b *Batch) {
	for i := range b.Frames {
		b.Out[i] = Verdict{Action: Drop}
	}
	n := r.frames.Add(uint64(len(b.Frames)))
	if r.arm.CompareAndSwap(true, false) {
		r.at.Store(n)
		r.ready <- struct{}{}
	}
}
func (r *readier) Flush() {}

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

// TestEpollPeek checks the raw epoll_wait(0) against an eventfd: nothing
// ready, then its event, and the kernel's error for a descriptor that is
// not an epoll instance.
func TestEpollPeek(t *testing.T) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}); err != nil {
		t.Fatal(err)
	}
	ev := make([]unix.EpollEvent, 4)
	if n, err := epollPeek(ep, ev); n != 0 || err != nil {
		t.Fatalf("nothing ready: %d, %v", n, err)
	}
	if _, err := unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if n, err := epollPeek(ep, ev); n != 1 || err != nil || ev[0].Fd != int32(efd) || ev[0].Events&unix.EPOLLIN == 0 {
		t.Fatalf("eventfd readable: %d, %v, %+v", n, err, ev[0])
	}
	if n, err := epollPeek(efd, ev); n != 0 || err != unix.EINVAL {
		t.Fatalf("not an epoll fd: %d, %v; want EINVAL", n, err)
	}
	if n, err := epollPeek(ep, nil); n != 0 || err != nil {
		t.Fatalf("no room for events: %d, %v", n, err)
	}
}
