package datapath

import (
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The worker's idle wait: with nothing to receive, the loop parks its
// goroutine in the Go runtime's netpoller on an epoll instance of every
// queue's fd (poll(2) where that is unavailable), so that its P runs the
// other goroutines; wake and Stop ready it.

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

// pastDeadline is a read deadline that has always passed (wake).
var pastDeadline = time.Unix(1, 0)
