package datapath

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/fib"
)

// Worker runs the receive–decide–transmit loop for one queue index over
// every port. Queues[i] is port i's queue; a nil entry is a port this
// worker does not serve.
type Worker struct {
	id     int
	queues []Queue
	h      Handler
	batch  int
	idle   time.Duration

	// Scratch space, owned by the loop (no allocation per iteration).
	b      Batch
	rx     []Desc
	frames [][]byte
	out    []Verdict
	tx     [MaxPorts][]Desc
	txIn   [MaxPorts][]uint8 // txIn[p][k]: ingress port of tx[p][k], or noIngress
	qerr   [MaxPorts]bool    // the queue's last Service reported an error
	txd    TxDropCounter     // h, if it counts TX drops
	umems  [MaxPorts][]byte
	fsize  [MaxPorts]int
	pfds   []unix.PollFd
	pidx   []int // pfds[i] polls queues[pidx[i]]; -1 = eventfd
	backof [MaxPorts]time.Time

	efd int // eventfd: wakes the poll(2) fallback for injections and Stop
	// ep is the idle wait's epoll instance (every queue's fd,
	// level-triggered; not the eventfd: wake sets a deadline instead),
	// itself registered with the Go
	// runtime's netpoller through epf, which owns ep once set: the idle
	// loop parks its goroutine there instead of blocking its thread in
	// poll(2), so its P runs the other goroutines (see sleep). nil epc:
	// poll(2) (epoll or the netpoller unavailable).
	ep       int
	epf      *os.File
	epc      syscall.RawConn
	epReady  func(uintptr) bool // w.epollReady, bound once (no allocation per wait)
	epEvents []unix.EpollEvent
	epGot    int            // events epollReady collected
	epIn     [MaxPorts]bool // queue i's fd is in ep
	epErr    error          // epoll_wait's error, from epollReady
	// epPeek: epollReady's next call may look at the RX rings instead of
	// calling epoll_wait (see epollReady); epFull: the last wait ended
	// on its deadline, not a kick, so the next one starts with
	// epoll_wait (defensive: see epollReady).
	epPeek, epFull bool
	// wakeF is epf while the netpoller wait is set up (nil after
	// closeEpoll): wake sets its read deadline in the past, which
	// readies the parked loop without a system call. kicked is set by
	// wake before that, and taken by the wait after arming its own
	// deadline, so a wake that comes before the wait is not lost.
	wakeF    atomic.Pointer[os.File]
	kicked   atomic.Bool
	stop     atomic.Bool
	sleeping atomic.Bool // set while the loop is (about to be) in poll

	// calls run on this thread between iterations: a port's queue
	// closed or re-opened after a link flap (reopen.go).
	calls callQueue

	// inj is the control plane's injection queue (frames to send).
	injMu   sync.Mutex
	inj     []injected
	injFree [][]byte
	injN    atomic.Int32

	// iterations and sleeps are loop counters for diagnostics.
	iterations, sleeps atomic.Uint64
}

type injected struct {
	port uint8
	buf  []byte
	held time.Time // when it first found no free frame (zero: never)
}

// injectHold is how long an injected frame waits for a free frame of its
// port (all of them in flight: forwarded frames not yet completed) before
// it is dropped. The control plane's frames are few and some are sent
// once only (a RELEASE to an ISP, recorded as sent once queued here):
// they wait for a frame rather than lose out to the forwarded traffic. A
// port in error drops them at once.
var injectHold = 100 * time.Millisecond

// injectCap bounds the control plane's queued frames per worker: a group commit
// can release hundreds of DHCP ACKs at once.
const injectCap = 1024

// NewWorker returns a worker for the given queues (indexed by port). batch
// is the most frames received per port per iteration; idle is how long the
// loop sleeps in poll when nothing happens.
func NewWorker(id int, queues []Queue, h Handler, batch int, idle time.Duration) (*Worker, error) {
	if len(queues) == 0 || len(queues) > MaxPorts {
		return nil, fmt.Errorf("worker %d: %d ports: want 1..%d", id, len(queues), MaxPorts)
	}
	batch = min(max(batch, 1), MaxBatch)
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("worker %d: eventfd: %w", id, err)
	}
	w := &Worker{
		id: id, queues: queues, h: h, batch: batch, idle: idle, efd: efd,
		rx:     make([]Desc, 0, batch),
		frames: make([][]byte, batch),
		out:    make([]Verdict, batch),
	}
	w.txd, _ = h.(TxDropCounter)
	for i, q := range queues {
		if q == nil {
			continue
		}
		w.tx[i] = make([]Desc, 0, MaxBatch*MaxPorts)
		w.txIn[i] = make([]uint8, 0, MaxBatch*MaxPorts)
		w.umems[i] = q.UMEM()
		w.fsize[i] = q.FrameSize()
	}
	for range injectCap {
		w.injFree = append(w.injFree, make([]byte, 0, 2048))
	}
	w.inj = make([]injected, 0, injectCap)
	w.ep = -1
	if err := w.openEpoll(); err != nil {
		// Not fatal: the idle wait falls back to poll(2), which holds
		// its thread's P while asleep (see sleep).
		w.closeEpoll()
	}
	return w, nil
}

// openEpoll builds the idle wait's epoll instance and hands it to the
// runtime's netpoller (an epoll fd is itself pollable: readable while any
// fd in it is ready).
func (w *Worker) openEpoll() error {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	w.ep = ep
	for i, q := range w.queues {
		if q == nil || q.FD() < 0 {
			continue
		}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, q.FD(), &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)}); err != nil {
			return err
		}
		w.epIn[i] = true
	}
	// os.NewFile registers a non-blocking descriptor with the netpoller.
	if err := unix.SetNonblock(ep, true); err != nil {
		return err
	}
	f := os.NewFile(uintptr(ep), "worker-epoll")
	w.epf = f // f owns ep now (never call f.Fd: it would make ep blocking)
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		return err // not pollable: os.ErrNoDeadline
	}
	if w.epc, err = f.SyscallConn(); err != nil {
		return err
	}
	w.epEvents = make([]unix.EpollEvent, max(1, len(w.queues)))
	w.epReady = w.epollReady
	w.wakeF.Store(f)
	return nil
}

func (w *Worker) closeEpoll() {
	w.wakeF.Store(nil)
	if w.epf != nil {
		w.epf.Close()
	} else if w.ep >= 0 {
		unix.Close(w.ep)
	}
	w.epf, w.epc, w.ep = nil, nil, -1
}

// Inject queues a copy of frame to be sent out of port by the worker (the
// control plane's only way to transmit). It reports false, dropping the
// frame, when the injection queue is full or the port is not served.
func (w *Worker) Inject(port uint8, frame []byte) bool {
	if int(port) >= len(w.queues) || w.queues[port] == nil {
		return false
	}
	w.injMu.Lock()
	n := len(w.injFree)
	if n == 0 {
		w.injMu.Unlock()
		return false
	}
	buf := append(w.injFree[n-1][:0], frame...)
	w.injFree = w.injFree[:n-1]
	w.inj = append(w.inj, injected{port: port, buf: buf})
	w.injN.Add(1)
	w.injMu.Unlock()
	// Only a sleeping worker needs a wake-up; a running one
	// sees injN at the end of its iteration. The worker sets sleeping
	// before its last look at injN, so one of the two always sees the
	// other (sequentially consistent atomics).
	if w.sleeping.Load() {
		w.wake()
	}
	return true
}

// wake ends the loop's idle wait, or its next one (Inject, Stop, call).
// Parked in the netpoller, the loop is woken by a read deadline in the
// past: the runtime readies it directly, where the eventfd took a write,
// the netpoller's epoll_wait, the loop's own epoll_wait and a read (bench
// dhcp at 2000/s: the eventfd write alone was ~4 % of ispmux's CPU). The
// poll(2) fallback uses the eventfd.
func (w *Worker) wake() {
	w.kicked.Store(true)
	if f := w.wakeF.Load(); f != nil {
		_ = f.SetReadDeadline(pastDeadline)
		return
	}
	var one = [8]byte{1}
	_, _ = unix.Write(w.efd, one[:])
}

// pastDeadline is a read deadline that has always passed (wake).
var pastDeadline = time.Unix(1, 0)

// Stop makes Run return after its current iteration.
func (w *Worker) Stop() {
	w.stop.Store(true)
	w.wake()
}

// Run loops until Stop. It does not lock its goroutine to an OS thread:
// it parks in the netpoller when idle (sleep), and a locked goroutine
// woken there must be handed to its own thread, two futex calls and a
// context switch per wake-up (bench dhcp at 2000/s, pinned to one CPU:
// 455 → 402 µs of CPU per DORA without the lock). Queue errors (a port that went down) are counted by the queue and do not stop
// the loop; the other ports keep working.
func (w *Worker) Run() error {
	defer unix.Close(w.efd)
	defer w.closeEpoll()
	busy := 0
	for !w.stop.Load() {
		if w.calls.n.Load() > 0 {
			w.runCalls()
		}
		if n := w.RunOnce(); n > 0 {
			if busy += n; busy >= yieldFrames {
				busy = 0
				runtime.Gosched()
			}
			continue
		}
		busy = 0
		if err := w.sleep(); err != nil {
			return err
		}
	}
	return nil
}

// yieldFrames is how many frames a worker handles without parking before
// it yields its P (runtime.Gosched). A worker under load never parks, and
// the Go scheduler preempts a running goroutine only after 10 ms: with one
// P per CPU (ispmux confined to as many CPUs as it has workers) the control
// plane, readied by a punted DHCP frame, would wait that long behind it.
// 2048 frames are ~0.1–0.5 ms of work; a yield costs under a microsecond
// (a little more when another P is idle: the scheduler wakes a thread for
// it).
const yieldFrames = 2048

// sleep waits until a queue or the eventfd is readable or the idle timeout
// passes. While frames are in flight it waits with a short timeout so
// completions are reaped and stalled TX rings kicked.
//
// The wait goes through the runtime's netpoller (waitNetpoll): the
// goroutine parks and its P runs the rest of the process. A thread blocked
// in poll(2) would keep its P until sysmon retakes it (20 µs to 10 ms
// later): with GOMAXPROCS=1 (ispmux pinned to one CPU) every goroutine this
// worker readied (the control plane with a punted DHCP frame) would wait
// that long behind the sleeping worker.
func (w *Worker) sleep() error {
	w.sleeping.Store(true)
	defer w.sleeping.Store(false)
	if w.injN.Load() > 0 {
		return nil // an injection raced with going to sleep
	}
	w.sleeps.Add(1)
	now := time.Now()
	if w.epc != nil {
		return w.waitNetpoll(now)
	}
	w.pfds = w.pfds[:0]
	w.pidx = w.pidx[:0]
	w.pfds = append(w.pfds, unix.PollFd{Fd: int32(w.efd), Events: unix.POLLIN})
	w.pidx = append(w.pidx, -1)
	timeout := w.idle
	for i, q := range w.queues {
		if q == nil {
			continue
		}
		if q.Pending() > 0 {
			timeout = min(timeout, time.Millisecond)
		}
		fd := q.FD()
		if fd < 0 || now.Before(w.backof[i]) {
			continue
		}
		w.pfds = append(w.pfds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
		w.pidx = append(w.pidx, i)
	}
	ms := int(timeout / time.Millisecond)
	_, err := unix.Poll(w.pfds, max(ms, 1))
	if err != nil && !errors.Is(err, unix.EINTR) {
		return fmt.Errorf("worker %d: poll: %w", w.id, err)
	}
	for k, p := range w.pfds {
		if p.Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 && w.pidx[k] >= 0 {
			// A port in error (its interface went away): stop polling it
			// for a while so it cannot spin the loop.
			w.backof[w.pidx[k]] = now.Add(time.Second)
		}
		if w.pidx[k] == -1 && p.Revents&unix.POLLIN != 0 {
			var buf [8]byte
			_, _ = unix.Read(w.efd, buf[:])
		}
	}
	return nil
}

// waitNetpoll is sleep through the netpoller: a look at the RX rings first
// (epoll_wait(0) on the worker's epoll instance after a wake-up or a
// deadline, epollReady), and if nothing is ready, park until the runtime
// sees the epoll instance readable or the deadline passes.
func (w *Worker) waitNetpoll(now time.Time) error {
	timeout := w.idle
	for i, q := range w.queues {
		if q == nil {
			continue
		}
		if q.Pending() > 0 {
			timeout = min(timeout, time.Millisecond)
		}
		// A port in error sat out its backoff: watch it again.
		if fd := q.FD(); fd >= 0 && !w.epIn[i] && !now.Before(w.backof[i]) {
			if unix.EpollCtl(w.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)}) == nil {
				w.epIn[i] = true
			}
		}
	}
	_ = w.epf.SetReadDeadline(now.Add(max(timeout, time.Millisecond)))
	// A wake (a deadline in the past) that came before the line above
	// was overwritten by it; it set kicked first.
	if w.kicked.Swap(false) {
		return nil
	}
	w.epGot, w.epErr = 0, nil
	w.epPeek = !w.epFull
	err := w.epc.Read(w.epReady)
	kicked := w.kicked.Swap(false) // a wake during the wait ended it
	w.epFull = err != nil && !kicked
	if w.epErr != nil {
		return fmt.Errorf("worker %d: epoll_wait: %w", w.id, w.epErr)
	}
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("worker %d: wait: %w", w.id, err)
	}
	for _, e := range w.epEvents[:w.epGot] {
		if i := int(e.Fd); e.Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 && i >= 0 && i < len(w.queues) && w.epIn[i] {
			// A port in error (its interface went away): stop
			// watching it for a while so it cannot spin the loop.
			_ = unix.EpollCtl(w.ep, unix.EPOLL_CTL_DEL, w.queues[i].FD(), nil)
			w.epIn[i] = false
			w.backof[i] = now.Add(time.Second)
		}
	}
	return nil
}

// epollReady collects what is ready without blocking; false (nothing)
// makes the runtime park the goroutine until the epoll fd is readable.
//
// Its first call in a wait looks at the RX rings instead of calling
// epoll_wait(0) (a system call before every park: ~5 % of ispmux's CPU in
// bench dhcp at 2000/s). That is enough: the runtime forgets a readiness
// it saw before RawRead reset the descriptor, so only a frame that arrived
// before that reset can be missed, and the rings show it (the reset is an
// atomic exchange, so the look reads a producer index at least as new as
// any wake-up already reported); every frame after it wakes the socket's
// wait queue (xsk_flush publishes the producer index, then calls
// sk_data_ready), hence ep's, hence the netpoller's edge-triggered
// registration of ep (ep_poll_callback wakes ep's pollers whether or not
// the socket already sat on ep's ready list). A call after a wake-up, and
// the first after a wait that ended on its deadline, use epoll_wait. That
// is defensive: Linux 6.18's xsk_poll reports nothing, not EPOLLERR, once
// a socket's interface is gone, but a queue of another kind, or another
// kernel, may report readiness that no ring shows.
func (w *Worker) epollReady(fd uintptr) bool {
	if w.epPeek {
		w.epPeek = false
		if ready, ok := w.ringsReady(); ok {
			return ready
		}
	}
	n, err := epollPeek(int(fd), w.epEvents)
	switch {
	case err == unix.EINTR:
		return false
	case err != nil:
		w.epErr = err
		return true
	}
	w.epGot = n
	return n > 0
}

// epollPeek is epoll_wait(2) with a timeout of 0, made as a raw system
// call: it cannot block, so it needs none of what syscall.Syscall adds for
// one that may (handing the P to another thread); and a Syscall made while
// the runtime's sysmon sleeps wakes it, to poll every 20 µs until all Ps
// are idle again (third_party/asavie-xdp/PATCHES.md, item 3). The sockets
// are bound without XDP_USE_NEED_WAKEUP, so xsk_poll does not transmit
// from here; with that flag it would, as the kick does.
// epoll_pwait with no signal mask is epoll_wait, and exists on every
// architecture.
func epollPeek(epfd int, events []unix.EpollEvent) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// rxPeeker is a queue whose RX ring can be looked at without a system
// call (xskQueue). The worker's look before it parks relies on two things
// an implementation must keep: rxReady is true whenever the queue's FD
// polls readable, and every change of the FD to readable wakes its wait
// queue (and so the worker's epoll instance).
type rxPeeker interface {
	// rxReady reports whether received frames wait in the RX ring.
	rxReady() bool
}

// ringsReady reports whether any queue watched by ep has received frames;
// ok is false when one of them cannot tell (epoll_wait must).
func (w *Worker) ringsReady() (ready, ok bool) {
	for i, q := range w.queues {
		if q == nil || !w.epIn[i] {
			continue
		}
		pk, can := q.(rxPeeker)
		if !can {
			return false, false
		}
		if pk.rxReady() {
			return true, true
		}
	}
	return false, true
}

// RunOnce runs one iteration: place the injected frames, receive and
// dispatch a batch on every port, transmit, service the queues. It returns the number
// of frames received and injected. Tests and benchmarks call it directly.
func (w *Worker) RunOnce() int {
	w.iterations.Add(1)
	work := 0
	// The control plane's frames first: they take their port's free
	// frames and the head of its TX batch before the forwarded ones.
	if w.injN.Load() > 0 {
		work += w.drainInjected()
	}
	for pi, q := range w.queues {
		if q == nil {
			continue
		}
		w.rx = q.Receive(w.rx[:0])
		n := len(w.rx)
		if n == 0 {
			continue
		}
		work += n
		w.dispatch(uint8(pi), q, n)
	}
	for pi, q := range w.queues {
		if q == nil {
			continue
		}
		if tx := w.tx[pi]; len(tx) > 0 {
			sent := q.Transmit(tx)
			for _, d := range tx[sent:] {
				q.Free(d)
			}
			if dropped := len(tx) - sent; dropped > 0 {
				countTxFull(q, dropped)
				why := TxRingFull
				if w.qerr[pi] {
					why = TxPortError
				}
				w.txDropped(w.txIn[pi][sent:], why)
			}
			w.tx[pi] = tx[:0]
			w.txIn[pi] = w.txIn[pi][:0]
		}
		w.qerr[pi] = q.Service() != nil
	}
	w.h.Flush()
	return work
}

// dispatch runs the handler over the n frames in w.rx received on port in
// and carries out the verdicts.
func (w *Worker) dispatch(in uint8, q Queue, n int) {
	umem := w.umems[in]
	fs := uint64(w.fsize[in])
	for i, d := range w.rx[:n] {
		w.frames[i] = umem[d.Addr : d.Addr+uint64(d.Len) : frameBase(d.Addr, fs)+fs]
		w.out[i] = Verdict{}
	}
	w.b = Batch{Port: in, Frames: w.frames[:n], Out: w.out[:n]}
	w.h.Process(&w.b)
	for i, d := range w.rx[:n] {
		v := &w.out[i]
		if v.Action != Forward || int(v.Port) >= len(w.queues) || w.queues[v.Port] == nil {
			q.Free(d)
			continue
		}
		f := w.frames[i][:cap(w.frames[i])]
		l := int(v.Len)
		if l > len(f) || int(v.Strip) > l {
			q.Free(d)
			continue
		}
		newLen := int(v.HdrLen) + l - int(v.Strip)
		if v.Port == in {
			// Out of the port it came in on: edit in place, no copy.
			if newLen > len(f) {
				q.Free(d)
				continue
			}
			if v.HdrLen != v.Strip {
				copy(f[v.HdrLen:], f[v.Strip:l])
			}
			copy(f, v.Hdr[:v.HdrLen])
			if v.DecTTL && newLen-int(v.HdrLen) >= 20 {
				fib.DecTTL(f[v.HdrLen:newLen])
			}
			d.Len = uint32(newLen)
			w.tx[in] = append(w.tx[in], d)
			w.txIn[in] = append(w.txIn[in], in)
			continue
		}
		eq := w.queues[v.Port]
		nd, ok := eq.Alloc()
		if !ok {
			countNoFrame(eq)
			if w.txd != nil {
				// A closed queue (link down, interface gone) has
				// no frames either: the cause is the port.
				why := TxNoFrame
				if w.qerr[v.Port] {
					why = TxPortError
				}
				w.txd.TxDropped(in, why, 1)
			}
			q.Free(d)
			continue
		}
		dst := w.umems[v.Port][nd.Addr : nd.Addr+uint64(w.fsize[v.Port])]
		if newLen > len(dst) {
			eq.Free(nd)
			q.Free(d)
			continue
		}
		// The received frame is only read (the header goes straight
		// into dst): writing into it just before copying it out was
		// slower than the second copy.
		if v.HdrLen != 0 {
			if len(dst) >= len(v.Hdr) {
				// All of Hdr in one fixed-size move, no memmove
				// call: the frame overwrites what lies past HdrLen.
				*(*[len(v.Hdr)]byte)(dst) = v.Hdr
			} else {
				copy(dst, v.Hdr[:v.HdrLen])
			}
		}
		copy(dst[v.HdrLen:], f[v.Strip:l])
		if v.DecTTL && l-int(v.Strip) >= 20 {
			fib.DecTTLTo(dst[v.HdrLen:newLen], f[v.Strip:l])
		}
		nd.Len = uint32(newLen)
		w.tx[v.Port] = append(w.tx[v.Port], nd)
		w.txIn[v.Port] = append(w.txIn[v.Port], in)
		q.Free(d)
	}
}

// drainInjected copies the queued injected frames into their ports' TX
// batches and returns how many it placed. A frame that finds no free
// frame of its port stays queued, in order
// with the later ones of that port, for up to injectHold (see there); one
// dropped then, or at once for a port in error, is counted as NoFrame.
func (w *Worker) drainInjected() int {
	w.injMu.Lock()
	defer w.injMu.Unlock()
	n, kept := 0, 0
	var waiting uint64 // a bit per port whose earlier frame waits (MaxPorts <= 64)
	var now time.Time
	for _, in := range w.inj {
		q := w.queues[in.port]
		bit := uint64(1) << in.port
		if waiting&bit == 0 {
			d, ok := q.Alloc()
			if ok && len(in.buf) <= w.fsize[in.port] {
				d.Len = uint32(copy(w.umems[in.port][d.Addr:d.Addr+uint64(w.fsize[in.port])], in.buf))
				w.tx[in.port] = append(w.tx[in.port], d)
				w.txIn[in.port] = append(w.txIn[in.port], noIngress)
				n++
				w.injFree = append(w.injFree, in.buf)
				continue
			}
			if ok { // larger than the port's frames
				q.Free(d)
				w.injFree = append(w.injFree, in.buf)
				continue
			}
		}
		if now.IsZero() {
			now = time.Now()
		}
		if in.held.IsZero() {
			in.held = now
		}
		if w.qerr[in.port] || now.Sub(in.held) >= injectHold {
			countNoFrame(q) // dropped: not sent for want of a frame
			w.injFree = append(w.injFree, in.buf)
			continue
		}
		waiting |= bit
		w.inj[kept] = in
		kept++
	}
	w.injN.Add(-int32(len(w.inj) - kept))
	clear(w.inj[kept:])
	w.inj = w.inj[:kept]
	return n
}

// noIngress marks a transmitted frame that was not received (injected).
const noIngress = 0xff

// txDropped reports frames the worker could not transmit to the handler, by
// ingress port: ins are their ingress ports, in runs (frames of one batch
// are consecutive).
func (w *Worker) txDropped(ins []uint8, why TxDrop) {
	if w.txd == nil {
		return
	}
	for len(ins) > 0 {
		in, n := ins[0], 1
		for n < len(ins) && ins[n] == in {
			n++
		}
		if in != noIngress {
			w.txd.TxDropped(in, why, n)
		}
		ins = ins[n:]
	}
}

// counted is implemented by queues whose counters the worker may bump for
// drops it decides (TX ring full, no free frame).
type counted interface{ counters() *queueCounters }

func (q *xskQueue) counters() *queueCounters { return &q.c }
func (q *MemQueue) counters() *queueCounters { return &q.c }

func countTxFull(q Queue, n int) {
	if c, ok := q.(counted); ok {
		c.counters().txFull.Add(uint64(n))
	}
}

func countNoFrame(q Queue) {
	if c, ok := q.(counted); ok {
		c.counters().noFrame.Add(1)
	}
}

// Loops reports how many iterations the worker ran and how many of them
// ended in poll.
func (w *Worker) Loops() (iterations, sleeps uint64) {
	return w.iterations.Load(), w.sleeps.Load()
}
