package datapath

// Re-opening a port whose interface flapped.
//
// A port's queues belong to the workers (worker q owns queue q of every
// port): only the owning worker may touch a queue's rings and UMEM. So a
// port is closed and re-opened by calls that run on the workers' threads,
// between two of their iterations (Worker.call): the control plane asks
// and waits, the worker does the work and goes on with its other ports.
//
//   - CloseQueues (link down or gone): each worker unregisters its queue's
//     socket from the port's program and closes it, rings and UMEM
//     unmapped (third_party/asavie-xdp). The queue is then closed: it
//     receives nothing, has no free frame, and frames forwarded to it are
//     dropped as port_error.
//   - Reopen (link back): the worker owning queue 0 re-links the port —
//     detaches the program from the interface it was attached to with the
//     flags used at attach, resolves the interface by name (a re-created
//     one has a new ifindex: its ownership lock is taken and the old one
//     released), turns receive VLAN stripping off and attaches the same
//     program (its maps kept) with the configured mode — and re-opens its
//     queue; then every other worker re-opens its own. A worker's epoll
//     set and cached UMEM follow its queue.
//
// Nothing here runs per packet: a worker looks at one atomic per iteration
// to see whether a call is waiting.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/internal/netnsrun"
)

var (
	errClosed = errors.New("xdp queue closed (its interface is down or gone)")
	errDown   = errors.New("xdp queue down (its last kernel call failed)")
)

// LinkStats count a port's closes and re-opens.
type LinkStats struct {
	// Closes: times its queues were closed (link down or gone).
	Closes uint64
	// Reopens: successful re-opens; Failures: failed attempts (each is
	// retried while the link is up).
	Reopens, Failures uint64
	// Recreated: re-opens on a re-created interface (a new ifindex).
	Recreated uint64
	// LastReopen is the time the last successful re-open spent in the
	// workers (their other ports waited that long).
	LastReopen time.Duration
}

type linkCounters struct {
	closes, reopens, failures, recreated atomic.Uint64
	lastReopen                           atomic.Int64
}

// LinkStats returns the port's close and re-open counters.
func (p *XDPPort) LinkStats() LinkStats {
	c := &p.counters
	return LinkStats{Closes: c.closes.Load(), Reopens: c.reopens.Load(), Failures: c.failures.Load(),
		Recreated: c.recreated.Load(), LastReopen: time.Duration(c.lastReopen.Load())}
}

// ReopenInfo says what a re-open found and did.
type ReopenInfo struct {
	// Ifindex is the interface's index now; OldIfindex the one before
	// (they differ when the interface was deleted and re-created).
	Ifindex, OldIfindex int
	// MAC and MTU are the interface's now. A MAC other than the port's
	// (XDPPort.MAC) is not adopted: ispmux keeps answering with the one
	// it started with.
	MAC net.HardwareAddr
	MTU int
	// Replaced is the id of a program found attached that was not ours
	// (replaced); 0 if none.
	Replaced uint32
	// ZeroCopy: the sockets were bound in zero-copy mode.
	ZeroCopy bool
	// VLANStripOff and VLANStripErr: as XDPPort's, for the interface now.
	VLANStripOff bool
	VLANStripErr error
	// Took is the time spent in the workers (summed over the queues).
	Took time.Duration
}

// CloseQueues closes every queue of the port (index pi in the workers),
// each in the worker that owns it: workers[q] must be the worker serving
// queue q. The program stays attached; the queues stay closed until
// Reopen. It returns when every worker has closed its queue, or when ctx
// ends.
func (p *XDPPort) CloseQueues(ctx context.Context, pi int, workers []*Worker) error {
	if err := p.checkWorkers(pi, workers); err != nil {
		return err
	}
	var errs []error
	for qi, q := range p.queues {
		if err := workers[qi].call(ctx, pi, q.close); err != nil {
			errs = append(errs, fmt.Errorf("xdp port %s queue %d: close: %w", p.Name, qi, err))
		}
	}
	p.counters.closes.Add(1)
	return errors.Join(errs...)
}

// Reopen re-links the port to the interface of its name and re-opens its
// queues (closing any still open), each in the worker that owns it (see
// CloseQueues). The worker of queue 0 re-attaches the program first. On
// error the port's queues that failed stay closed; calling Reopen again
// retries.
func (p *XDPPort) Reopen(ctx context.Context, pi int, workers []*Worker) (ReopenInfo, error) {
	if err := p.checkWorkers(pi, workers); err != nil {
		return ReopenInfo{}, err
	}
	// A queue whose socket was closed a moment ago stays busy until the
	// kernel's deferred release has run: wait here (never in a worker)
	// and ask again.
	deadline := time.Now().Add(busyWait)
	for {
		info, err := p.reopen(ctx, pi, workers)
		if err == nil || !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) || ctx.Err() != nil {
			if err != nil {
				p.counters.failures.Add(1)
			}
			return info, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// busyWait bounds Reopen's wait for a busy queue.
const busyWait = 2 * time.Second

func (p *XDPPort) reopen(ctx context.Context, pi int, workers []*Worker) (ReopenInfo, error) {
	var info ReopenInfo
	var took time.Duration
	q0 := p.queues[0]
	err := workers[0].call(ctx, pi, func() error {
		t0 := time.Now()
		defer func() { took += time.Since(t0) }()
		return p.inNetns(func() error {
			_ = q0.close()
			if err := p.relink(&info); err != nil {
				return err
			}
			return q0.open(info.Ifindex)
		})
	})
	for qi := 1; err == nil && qi < len(p.queues); qi++ {
		q := p.queues[qi]
		err = workers[qi].call(ctx, pi, func() error {
			t0 := time.Now()
			defer func() { took += time.Since(t0) }()
			return p.inNetns(func() error {
				_ = q.close()
				return q.open(info.Ifindex)
			})
		})
	}
	info.Took = took
	if err != nil {
		return info, err
	}
	info.ZeroCopy = q0.zeroCopy
	p.counters.reopens.Add(1)
	if info.Ifindex != info.OldIfindex {
		p.counters.recreated.Add(1)
	}
	p.counters.lastReopen.Store(int64(took))
	return info, nil
}

func (p *XDPPort) checkWorkers(pi int, workers []*Worker) error {
	if len(workers) < len(p.queues) {
		return fmt.Errorf("xdp port %s: %d queues, %d workers", p.Name, len(p.queues), len(workers))
	}
	for qi, q := range p.queues {
		w := workers[qi]
		if pi < 0 || pi >= len(w.queues) || w.queues[pi] != Queue(q) {
			return fmt.Errorf("xdp port %s: worker %d does not serve its queue %d as port %d", p.Name, qi, qi, pi)
		}
	}
	return nil
}

// oursOn reports whether the XDP program attached to the interface of
// attrs is this port's.
func (p *XDPPort) oursOn(attrs *netlink.LinkAttrs) bool {
	x := attrs.Xdp
	if x == nil || !x.Attached || p.prog == nil {
		return false
	}
	info, err := p.prog.Program.Info()
	if err != nil {
		return false
	}
	id, ok := info.ID()
	return ok && uint32(id) == x.ProgId
}

// relink re-attaches the port's program to the interface named p.Name:
// detached first from the interface it was on, with the flags it was
// attached with (if that interface still exists under this name: a
// deleted one lost the program with it); a new ifindex takes that
// interface's ownership lock. It runs in the worker owning queue 0, in the
// port's namespace.
func (p *XDPPort) relink(info *ReopenInfo) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	info.OldIfindex = p.Index()
	if p.attachFlags >= 0 {
		// Detached from the interface it was on if that still exists
		// under the port's name, or under another (renamed away: a NIC
		// swap) with our program attached: left there, its traffic
		// went to a socket that no longer reads it, after ispmux's
		// exit too.
		if l, err := netlink.LinkByIndex(info.OldIfindex); err == nil && (l.Attrs().Name == p.Name || p.oursOn(l.Attrs())) {
			if err := p.detach(); err != nil {
				return err
			}
		}
		p.attachFlags = -1
	}
	link, err := netlink.LinkByName(p.Name)
	if err != nil {
		return fmt.Errorf("xdp port %s: %w", p.Name, err)
	}
	attrs := link.Attrs()
	if attrs.Index != info.OldIfindex {
		lock, err := lockInterface(attrs.Index)
		if err != nil {
			return fmt.Errorf("xdp port %s: %w", p.Name, err)
		}
		p.unlockInterface()
		p.lock = lock
		p.ifindex.Store(int64(attrs.Index))
	}
	p.link = link
	info.Ifindex, info.MAC, info.MTU = attrs.Index, attrs.HardwareAddr, attrs.MTU
	if x := attrs.Xdp; x != nil && x.Attached {
		// Ours was detached above: this one is someone else's.
		info.Replaced = x.ProgId
		detachAll(link)
	}
	info.VLANStripOff, info.VLANStripErr = disableVLANStrip(p.Name)
	if err := netlink.LinkSetXdpFdWithFlags(link, p.prog.Program.FD(), p.flags); err != nil {
		return fmt.Errorf("xdp port %s: attach %s: %w", p.Name, p.cfg.AttachMode, err)
	}
	p.attachFlags = p.flags
	return nil
}

// inNetns runs fn in the port's network namespace. ispmux's workers are
// in it already (the process lives in one namespace); for a caller
// elsewhere (a test) netnsrun.In switches the goroutine's thread there and
// back. (Workers are not locked to their threads: In locks for the switch
// only. A thread that could not be switched back stays locked, so no other
// goroutine runs in the wrong namespace on it; it ends with its goroutine.)
func (p *XDPPort) inNetns(fn func() error) error {
	if !p.ns.IsOpen() {
		return fn()
	}
	return netnsrun.In(p.ns, fn)
}

// ---- calls on a worker's thread ----

// workerCall is fn to run on a worker's thread for its queue of port.
type workerCall struct {
	port int
	fn   func() error
	done chan error
}

// callQueue holds the calls waiting for a worker. n is what the worker
// looks at each iteration.
type callQueue struct {
	mu sync.Mutex
	q  []workerCall
	n  atomic.Int32
}

// call runs fn on w's thread between two iterations (with w's view of its
// queue of port refreshed after it) and waits for its result or for ctx
// to end (a worker that stopped runs nothing more).
func (w *Worker) call(ctx context.Context, port int, fn func() error) error {
	c := workerCall{port: port, fn: fn, done: make(chan error, 1)}
	w.calls.mu.Lock()
	w.calls.q = append(w.calls.q, c)
	w.calls.n.Add(1)
	w.calls.mu.Unlock()
	w.wake()
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runCalls runs the waiting calls (Run calls it between iterations, when
// calls.n > 0). Around each: the queue's descriptor leaves the worker's
// epoll set before (a closed descriptor's number may come back for the
// new socket), and the worker's cached UMEM, error state and epoll entry
// follow the queue after.
func (w *Worker) runCalls() {
	w.calls.mu.Lock()
	cs := w.calls.q
	w.calls.q = nil
	w.calls.n.Store(0)
	w.calls.mu.Unlock()
	for _, c := range cs {
		if c.port < 0 || c.port >= len(w.queues) || w.queues[c.port] == nil {
			c.done <- fmt.Errorf("worker %d: no port %d", w.id, c.port)
			continue
		}
		w.forgetQueue(c.port)
		err := c.fn()
		w.adoptQueue(c.port)
		c.done <- err
	}
}

func (w *Worker) forgetQueue(i int) {
	if w.ep >= 0 && w.epIn[i] {
		if fd := w.queues[i].FD(); fd >= 0 {
			_ = unix.EpollCtl(w.ep, unix.EPOLL_CTL_DEL, fd, nil)
		}
		w.epIn[i] = false
	}
}

func (w *Worker) adoptQueue(i int) {
	q := w.queues[i]
	w.umems[i] = q.UMEM()
	w.fsize[i] = q.FrameSize()
	w.backof[i] = time.Time{}
	// Asked now, not at the end of the next iteration: frames that
	// iteration forwards to a queue just closed are port_error drops.
	w.qerr[i] = q.Service() != nil
	if fd := q.FD(); fd >= 0 && w.ep >= 0 && w.epc != nil {
		if unix.EpollCtl(w.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)}) == nil {
			w.epIn[i] = true
		}
	}
}

// fill makes the stack hold every frame of a UMEM of frames buffers again
// (frame 0 on top), in the space it has.
func (s *frameStack) fill(frames int) {
	s.free = s.free[:0]
	for i := frames - 1; i >= 0; i-- {
		s.free = append(s.free, uint64(i)*s.frameSize)
	}
}
