package datapath

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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

// Sleeping reports whether the loop is in (or about to enter) its idle
// wait: with no frames and a long poll_timeout, a healthy worker may run
// no iteration for that long.
func (w *Worker) Sleeping() bool { return w.sleeping.Load() }
