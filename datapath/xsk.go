package datapath

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/asavie/xdp"
	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// XDPConfig describes one AF_XDP port.
type XDPConfig struct {
	// Interface is the Linux interface name.
	Interface string
	// Queues is the number of queues (and sockets) to open, 0..Queues-1.
	Queues int
	// Frames and FrameSize size each queue's UMEM.
	Frames, FrameSize int
	// Ring sizes (powers of two).
	FillRing, CompletionRing, RXRing, TXRing int
	// AttachMode is "native" (driver XDP) or "skb" (generic XDP).
	AttachMode string
	// BindMode is "auto", "zerocopy" or "copy".
	BindMode string
	// Program, when set, builds the port's XDP program instead of the
	// default one (every frame to its queue's socket): it must send what
	// it does not handle itself to xsks[rx_queue_index] when
	// qidconf[rx_queue_index] is 1, as the default does (package
	// fastpath's programs). It gets the maps sized for the port's queues.
	Program func(qidconf, xsks *ebpf.Map) (*ebpf.Program, error)
}

// XDPPort is a network interface driven through AF_XDP sockets: an XDP
// program that redirects every frame of each queue to that queue's socket.
// Nothing a data port receives reaches the kernel's stack.
//
// A port outlives its interface's flaps: its queues can be closed and
// re-opened, and its program re-attached to the interface of the same
// name (a new ifindex if it was re-created), by the workers that own the
// queues (reopen.go).
type XDPPort struct {
	Name string
	// MAC is the interface's address when the port was opened (the one
	// ispmux answers with; a re-created interface with another address
	// is reported by Reopen, not adopted).
	MAC net.HardwareAddr
	// ZeroCopy reports whether the sockets were bound in zero-copy mode
	// when the port was opened.
	ZeroCopy bool
	// Replaced is the id of an XDP program found attached and replaced
	// (left by a process that died without detaching it); 0 if none.
	Replaced uint32
	// VLANStripOff reports that receive VLAN stripping was on and was
	// turned off; VLANStripErr, that it could not be (tags may be
	// invisible to ispmux on this interface).
	VLANStripOff bool
	VLANStripErr error

	cfg      XDPConfig
	opts     xdp.SocketOptions
	bindTry  []uint16       // bind flags to try, in order
	flags    int            // XDP attach flags of cfg.AttachMode
	ns       netns.NsHandle // the network namespace the port was opened in
	prog     *xdp.Program
	queues   []*xskQueue
	counters linkCounters

	// mu guards the interface the port is on: relink changes it (in the
	// worker owning queue 0), Close reads it. ifindex is also read
	// without it (Index: status never waits for a relink's netlink
	// calls).
	mu          sync.Mutex
	ifindex     atomic.Int64
	link        netlink.Link
	lock        *os.File // the interface's ownership lock, held while open
	attachFlags int      // the flags the program is attached with; -1: not attached
}

// Index is the interface index the port is on now (it changes when the
// interface is re-created and the port re-opened on it).
func (p *XDPPort) Index() int { return int(p.ifindex.Load()) }

// asavie/xdp reads the bind flags from a package variable; socketMu
// serialises the set-and-create sequence.
var socketMu sync.Mutex

// OpenXDP attaches the redirect program to cfg.Interface and opens one
// socket per queue. On error everything it did is undone.
func OpenXDP(cfg XDPConfig) (_ *XDPPort, err error) {
	if cfg.Queues < 1 {
		cfg.Queues = 1
	}
	link, err := netlink.LinkByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("xdp port %s: %w", cfg.Interface, err)
	}
	attrs := link.Attrs()
	p := &XDPPort{Name: cfg.Interface, MAC: attrs.HardwareAddr, cfg: cfg, attachFlags: -1}
	switch cfg.AttachMode {
	case "skb":
		p.flags = unix.XDP_FLAGS_SKB_MODE
	case "native", "":
		p.flags = unix.XDP_FLAGS_DRV_MODE
	default:
		return nil, fmt.Errorf("xdp port %s: attach mode %q: want native or skb", cfg.Interface, cfg.AttachMode)
	}
	switch cfg.BindMode {
	case "copy":
		p.bindTry = []uint16{unix.XDP_COPY}
	case "zerocopy":
		p.bindTry = []uint16{unix.XDP_ZEROCOPY}
	case "auto", "":
		p.bindTry = []uint16{unix.XDP_ZEROCOPY, unix.XDP_COPY}
	default:
		return nil, fmt.Errorf("xdp port %s: bind mode %q: want auto, zerocopy or copy", cfg.Interface, cfg.BindMode)
	}
	// One owner per interface: without this, a second ispmux started on
	// the same interfaces would detach the running one's program below
	// and take its traffic (or, failing to bind, leave it with none).
	lock, err := lockInterface(attrs.Index)
	if err != nil {
		return nil, fmt.Errorf("xdp port %s: %w", cfg.Interface, err)
	}
	p.link, p.lock = link, lock
	p.ifindex.Store(int64(attrs.Index))
	// Re-opens run on the workers' threads: they enter this namespace
	// if they are not in it.
	p.ns, _ = netns.Get()
	defer func() {
		if err != nil {
			p.Close()
		}
	}()

	// We hold the interface's lock, so a program still attached was left
	// by a process that died: ours to replace (a data port belongs to the
	// appliance).
	if x := attrs.Xdp; x != nil && x.Attached {
		p.Replaced = x.ProgId
	}
	detachAll(link)
	p.VLANStripOff, p.VLANStripErr = disableVLANStrip(cfg.Interface)

	maxQ := max(cfg.Queues, attrs.NumRxQueues, 1)
	p.prog, err = newProgram(maxQ, cfg.Program)
	if err != nil {
		return nil, fmt.Errorf("xdp port %s: load program: %w (memlock may be too low)", cfg.Interface, err)
	}
	if err = netlink.LinkSetXdpFdWithFlags(link, p.prog.Program.FD(), p.flags); err != nil {
		return nil, fmt.Errorf("xdp port %s: attach %s: %w", cfg.Interface, cfg.AttachMode, err)
	}
	p.attachFlags = p.flags
	p.opts = xdp.SocketOptions{
		NumFrames: cfg.Frames, FrameSize: cfg.FrameSize,
		FillRingNumDescs: cfg.FillRing, CompletionRingNumDescs: cfg.CompletionRing,
		RxRingNumDescs: cfg.RXRing, TxRingNumDescs: cfg.TXRing,
	}
	for qi := range cfg.Queues {
		q := &xskQueue{
			port: p, index: qi, frameSize: cfg.FrameSize,
			txSize: cfg.TXRing, reserve: min(MaxBatch, cfg.Frames/4),
			frames:   frameStack{free: make([]uint64, 0, cfg.Frames), frameSize: uint64(cfg.FrameSize)},
			inflight: make([]uint64, cfg.Frames),
			fillBuf:  make([]xdp.Desc, 0, cfg.FillRing),
		}
		p.queues = append(p.queues, q)
		// A socket closed on this queue (a dead owner's, released after
		// its program's detach; one of ours, closed a moment ago) leaves
		// the queue busy until the kernel's deferred release has run.
		deadline := time.Now().Add(3 * time.Second)
		for {
			err = q.open(attrs.Index)
			if err == nil || !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			return nil, err
		}
		p.ZeroCopy = q.zeroCopy
	}
	return p, nil
}

// newProgram is xdp.NewProgram (every frame to its queue's socket) or, with
// build, the program build makes with the same two maps.
func newProgram(maxQ int, build func(qidconf, xsks *ebpf.Map) (*ebpf.Program, error)) (*xdp.Program, error) {
	if build == nil {
		return xdp.NewProgram(maxQ)
	}
	q, err := ebpf.NewMap(&ebpf.MapSpec{Name: "qidconf_map", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: uint32(maxQ)})
	if err != nil {
		return nil, err
	}
	x, err := ebpf.NewMap(&ebpf.MapSpec{Name: "xsks_map", Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: uint32(maxQ)})
	if err != nil {
		q.Close()
		return nil, err
	}
	prog, err := build(q, x)
	if err != nil {
		q.Close()
		x.Close()
		return nil, err
	}
	return &xdp.Program{Program: prog, Queues: q, Sockets: x}, nil
}

// open creates the queue's socket (its UMEM and four rings) on interface
// ifindex, registers it with the port's program and fills the fill ring.
// The queue must be closed (as made by OpenXDP, or after close). It runs
// in the thread that owns the queue (OpenXDP's, then the worker's).
func (q *xskQueue) open(ifindex int) error {
	p := q.port
	sock, flags, err := newSocket(ifindex, q.index, &p.opts, p.bindTry, q.bound)
	if err != nil {
		return fmt.Errorf("xdp port %s queue %d: socket: %w", p.Name, q.index, err)
	}
	if err := p.prog.Register(q.index, sock.FD()); err != nil {
		sock.Close()
		return fmt.Errorf("xdp port %s queue %d: register socket: %w", p.Name, q.index, err)
	}
	q.bound = flags
	if zc, err := zeroCopyOption(sock.FD()); err == nil {
		q.zeroCopy = zc
	}
	// In copy mode the kernel sends at most 32 frames per sendto unless
	// told otherwise (Linux 6.x); older kernels refuse the option.
	_ = unix.SetsockoptInt(sock.FD(), unix.SOL_XDP, unix.XDP_MAX_TX_SKB_BUDGET, 256)
	q.sock = sock
	// The whole UMEM, through asavie's only accessor for it.
	q.umem = sock.GetFrame(xdp.Desc{Addr: 0, Len: uint32(p.opts.NumFrames * p.opts.FrameSize)})
	q.frames.fill(p.opts.NumFrames)
	q.head, q.count = 0, 0
	q.refill()
	q.c.down.Store(false)
	return nil
}

// newSocket makes an AF_XDP socket bound to queue qi of ifindex with the
// first of try that the interface accepts, starting with prefer (the flags
// that worked last time) when set. asavie/xdp reads the bind flags from a
// package variable, hence the lock.
func newSocket(ifindex, qi int, opts *xdp.SocketOptions, try []uint16, prefer uint16) (*xdp.Socket, uint16, error) {
	socketMu.Lock()
	defer socketMu.Unlock()
	defer func() { xdp.DefaultSocketFlags = 0 }()
	if prefer != 0 && len(try) > 1 && try[0] != prefer {
		try = []uint16{prefer, try[0]}
	}
	var errs []error
	for _, f := range try {
		xdp.DefaultSocketFlags = f
		sock, err := xdp.NewSocket(ifindex, qi, opts)
		if err == nil {
			return sock, f, nil
		}
		errs = append(errs, err)
	}
	// asavie's errors are strings: the errno is found again for
	// errors.Is. A busy queue (a socket closed on it a moment ago, not
	// yet released by the kernel) is what a caller may wait out, whatever
	// the other mode said; else the last attempt's error is the one that
	// matters (auto: copy mode, after zero-copy was refused).
	for _, err := range errs {
		if strings.Contains(err.Error(), unix.EBUSY.Error()) {
			return nil, 0, fmt.Errorf("%w (%w)", err, unix.EBUSY)
		}
	}
	err := errs[len(errs)-1]
	for _, e := range []unix.Errno{unix.ENODEV, unix.ENETDOWN, unix.ENXIO} {
		if strings.Contains(err.Error(), e.Error()) {
			return nil, 0, fmt.Errorf("%w (%w)", err, e)
		}
	}
	return nil, 0, err
}

// close unregisters and closes the queue's socket (its rings and UMEM
// unmapped: third_party/asavie-xdp). Every frame is forgotten; the queue
// receives nothing, sends nothing and has no free frame until open. It
// runs in the thread that owns the queue.
func (q *xskQueue) close() error {
	if q.sock == nil {
		return nil
	}
	if prog := q.port.prog; prog != nil {
		_ = prog.Unregister(q.index)
	}
	err := q.sock.Close()
	q.sock, q.umem = nil, nil
	q.frames.free = q.frames.free[:0]
	q.head, q.count = 0, 0
	q.c.down.Store(true)
	return err
}

// detachAll removes any XDP program from link, in both modes. Detaching with
// the flags the program was attached with is what makes it return at once.
func detachAll(link netlink.Link) {
	_ = netlink.LinkSetXdpFdWithFlags(link, -1, unix.XDP_FLAGS_SKB_MODE)
	_ = netlink.LinkSetXdpFdWithFlags(link, -1, unix.XDP_FLAGS_DRV_MODE)
}

// Queue returns queue i of the port.
func (p *XDPPort) Queue(i int) Queue { return p.queues[i] }

// NumQueues is the number of open queues.
func (p *XDPPort) NumQueues() int { return len(p.queues) }

// Close unregisters and closes the sockets, detaches the program and frees
// it. Workers using the queues must have stopped.
func (p *XDPPort) Close() error {
	var errs []error
	for _, q := range p.queues {
		if err := q.close(); err != nil {
			errs = append(errs, err)
		}
	}
	p.queues = nil
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.detach(); err != nil {
		errs = append(errs, err)
	}
	if p.prog != nil {
		if err := p.prog.Close(); err != nil {
			errs = append(errs, err)
		}
		p.prog = nil
	}
	p.unlockInterface()
	if p.ns.IsOpen() {
		_ = p.ns.Close()
		p.ns = netns.None()
	}
	return errors.Join(errs...)
}

// detach removes the port's program from the interface it was attached
// to, with the flags it was attached with (the only detach that returns
// at once after an SKB-mode attach). An interface that is gone has lost
// the program with it. p.mu is held.
func (p *XDPPort) detach() error {
	if p.attachFlags < 0 || p.link == nil {
		return nil
	}
	flags := p.attachFlags
	p.attachFlags = -1
	err := netlink.LinkSetXdpFdWithFlags(p.link, -1, flags)
	if err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("xdp port %s: detach: %w", p.Name, err)
	}
	return nil
}

// unlockInterface releases the port's interface lock. p.mu is held (or
// the port is not shared yet).
func (p *XDPPort) unlockInterface() {
	if p.lock != nil {
		// Removed while still held, then released, so lock files do not
		// pile up (one per namespace and interface ever used). A
		// process that opened the file before the removal and locks it
		// after finds it is no longer the file at its name (lockFile's
		// sameFile) and starts again: one owner at a time.
		_ = os.Remove(p.lock.Name())
		p.lock.Close() // releases the flock
		p.lock = nil
	}
}

// xskQueue is one AF_XDP socket and its UMEM.
//
// Frame ownership: frames holds the addresses of frames nobody uses; the fill
// ring and TX ring hold frames the kernel owns; inflight is a FIFO of the
// addresses handed to the TX ring, in submission order, popped as the
// completion ring advances.
//
// A closed queue (sock nil: before open, or after its interface went away)
// receives nothing, has no free frame and transmits nothing.
type xskQueue struct {
	port      *XDPPort
	index     int
	sock      *xdp.Socket // nil while closed
	bound     uint16      // the bind flags the socket was made with
	zeroCopy  bool
	umem      []byte
	frameSize int
	txSize    int
	reserve   int // frames kept out of the fill ring for TX copies

	frames   frameStack
	inflight []uint64 // ring buffer, len == number of frames
	head     int      // next to complete
	count    int      // in flight

	fillBuf []xdp.Desc
	c       queueCounters
}

func (q *xskQueue) UMEM() []byte   { return q.umem }
func (q *xskQueue) FrameSize() int { return q.frameSize }
func (q *xskQueue) Pending() int   { return q.count }

func (q *xskQueue) FD() int {
	if q.sock == nil {
		return -1
	}
	return q.sock.FD()
}

func (q *xskQueue) Stats() QueueStats { return q.c.snapshot() }

// rxReady reports whether the RX ring holds frames (the worker's look
// before it parks, epollReady): the producer index the kernel publishes
// against the consumer's, read from the shared ring, no system call.
func (q *xskQueue) rxReady() bool { return q.sock != nil && q.sock.NumReceived() > 0 }

func (q *xskQueue) Receive(dst []Desc) []Desc {
	room := cap(dst) - len(dst)
	if room <= 0 || q.sock == nil {
		return dst
	}
	descs := q.sock.Receive(room) // asavie reuses this slice: copy out
	dst = append(dst, descs...)
	if n := len(descs); n > 0 {
		var bytes uint64
		for i := range descs {
			bytes += uint64(descs[i].Len)
		}
		q.c.rxFrames.Add(uint64(n))
		q.c.rxBytes.Add(bytes)
	}
	return dst
}

func (q *xskQueue) Transmit(descs []Desc) int {
	if q.sock == nil {
		return 0
	}
	n := min(len(descs), q.sock.NumFreeTxSlots())
	if n == 0 {
		return 0
	}
	descs = descs[:n]
	var bytes uint64
	for _, d := range descs {
		q.inflight[(q.head+q.count)%len(q.inflight)] = d.Addr
		q.count++
		bytes += uint64(d.Len)
	}
	// asavie writes the descriptors to the ring before sendto, so they are
	// submitted even if the kick below fails.
	q.kick(descs)
	q.c.txFrames.Add(uint64(n))
	q.c.txBytes.Add(bytes)
	return n
}

// kick submits descs (possibly none) and calls sendto, containing asavie's
// panic on unexpected errors (ENXIO, ENOBUFS, ENETDOWN …).
func (q *xskQueue) kick(descs []Desc) {
	defer func() {
		if r := recover(); r != nil {
			q.c.errors.Add(1)
			q.c.down.Store(true)
		}
	}()
	q.sock.Transmit(descs)
	q.c.down.Store(false)
}

func (q *xskQueue) Alloc() (Desc, bool) { return q.frames.pop() }
func (q *xskQueue) Free(d Desc)         { q.frames.push(d) }

func (q *xskQueue) Service() error {
	if q.sock == nil {
		return errClosed
	}
	if n := q.sock.NumCompleted(); n > 0 {
		n = min(n, q.count)
		q.sock.Complete(n)
		for range n {
			q.frames.push(Desc{Addr: q.inflight[q.head]})
			q.head = (q.head + 1) % len(q.inflight)
		}
		q.count -= n
	}
	if q.txSize-q.sock.NumFreeTxSlots() > 0 {
		q.kick(nil) // copy mode sends a bounded number per sendto
	}
	q.refill()
	if q.c.down.Load() {
		return errDown // no allocation: a worker calls this every iteration
	}
	return nil
}

func (q *xskQueue) refill() {
	n := min(q.sock.NumFreeFillSlots(), q.frames.len()-q.reserve)
	if n <= 0 {
		return
	}
	buf := q.fillBuf[:0]
	for range n {
		d, _ := q.frames.pop()
		buf = append(buf, d)
	}
	q.sock.Fill(buf)
}

// zeroCopyOption reads XDP_OPTIONS from a socket (kernel >= 5.3).
func zeroCopyOption(fd int) (bool, error) {
	var opts uint32
	size := uint32(unsafe.Sizeof(opts))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_OPTIONS,
		uintptr(unsafe.Pointer(&opts)), uintptr(unsafe.Pointer(&size)), 0)
	if e != 0 {
		return false, e
	}
	return opts&unix.XDP_OPTIONS_ZEROCOPY != 0, nil
}
