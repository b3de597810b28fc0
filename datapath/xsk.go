package datapath

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/asavie/xdp"
	"github.com/vishvananda/netlink"
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
}

// XDPPort is a network interface driven through AF_XDP sockets: an XDP
// program that redirects every frame of each queue to that queue's socket.
// Nothing a data port receives reaches the kernel's stack.
type XDPPort struct {
	Name    string
	Ifindex int
	MAC     net.HardwareAddr
	// ZeroCopy reports whether the sockets were bound in zero-copy mode.
	ZeroCopy bool
	// Replaced is the id of an XDP program found attached and replaced
	// (left by a process that died without detaching it); 0 if none.
	Replaced uint32
	// VLANStripOff reports that receive VLAN stripping was on and was
	// turned off; VLANStripErr, that it could not be (tags may be
	// invisible to ispmux on this interface).
	VLANStripOff bool
	VLANStripErr error

	lock *os.File // the port's ownership lock, held while open

	link        netlink.Link
	prog        *xdp.Program
	attachFlags int
	queues      []*xskQueue
}

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
	// One owner per interface: without this, a second ispmux started on
	// the same interfaces would detach the running one's program below
	// and take its traffic (or, failing to bind, leave it with none).
	lock, err := lockInterface(attrs.Index)
	if err != nil {
		return nil, fmt.Errorf("xdp port %s: %w", cfg.Interface, err)
	}
	p := &XDPPort{Name: cfg.Interface, Ifindex: attrs.Index, MAC: attrs.HardwareAddr, link: link, lock: lock, attachFlags: -1}
	flags := 0
	switch cfg.AttachMode {
	case "skb":
		flags = unix.XDP_FLAGS_SKB_MODE
	case "native", "":
		flags = unix.XDP_FLAGS_DRV_MODE
	default:
		lock.Close()
		return nil, fmt.Errorf("xdp port %s: attach mode %q: want native or skb", cfg.Interface, cfg.AttachMode)
	}
	var bindFlags uint16
	switch cfg.BindMode {
	case "copy":
		bindFlags = unix.XDP_COPY
	case "zerocopy":
		bindFlags = unix.XDP_ZEROCOPY
	case "auto", "":
	default:
		lock.Close()
		return nil, fmt.Errorf("xdp port %s: bind mode %q: want auto, zerocopy or copy", cfg.Interface, cfg.BindMode)
	}
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
	p.attachFlags = flags
	p.VLANStripOff, p.VLANStripErr = disableVLANStrip(cfg.Interface)

	maxQ := max(cfg.Queues, attrs.NumRxQueues, 1)
	p.prog, err = xdp.NewProgram(maxQ)
	if err != nil {
		return nil, fmt.Errorf("xdp port %s: load program: %w (memlock may be too low)", cfg.Interface, err)
	}
	if err = netlink.LinkSetXdpFdWithFlags(link, p.prog.Program.FD(), p.attachFlags); err != nil {
		p.attachFlags = -1 // nothing to detach
		return nil, fmt.Errorf("xdp port %s: attach %s: %w", cfg.Interface, cfg.AttachMode, err)
	}
	opts := xdp.SocketOptions{
		NumFrames: cfg.Frames, FrameSize: cfg.FrameSize,
		FillRingNumDescs: cfg.FillRing, CompletionRingNumDescs: cfg.CompletionRing,
		RxRingNumDescs: cfg.RXRing, TxRingNumDescs: cfg.TXRing,
	}
	for qi := range cfg.Queues {
		q, err := openQueue(p, qi, &opts, bindFlags, cfg.BindMode == "auto" || cfg.BindMode == "")
		if err != nil {
			return nil, err
		}
		p.queues = append(p.queues, q)
		if err := p.prog.Register(qi, q.sock.FD()); err != nil {
			return nil, fmt.Errorf("xdp port %s queue %d: register socket: %w", cfg.Interface, qi, err)
		}
	}
	return p, nil
}

func openQueue(p *XDPPort, qi int, opts *xdp.SocketOptions, flags uint16, auto bool) (*xskQueue, error) {
	socketMu.Lock()
	defer socketMu.Unlock()
	try := []uint16{flags}
	if auto {
		try = []uint16{unix.XDP_ZEROCOPY, unix.XDP_COPY}
	}
	var sock *xdp.Socket
	var err error
	// After a replaced program's detach, the dead owner's sockets are
	// released by the kernel a little later (they were referenced by the
	// program's socket map): until then the queue is busy. Only then is
	// it worth waiting (each failed attempt costs asavie's leaked rings).
	deadline := time.Now().Add(3 * time.Second)
	for {
		for _, f := range try {
			xdp.DefaultSocketFlags = f
			sock, err = xdp.NewSocket(p.Ifindex, qi, opts)
			if err == nil {
				break
			}
		}
		if err == nil || p.Replaced == 0 || !strings.Contains(err.Error(), "resource busy") || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	xdp.DefaultSocketFlags = 0
	if err != nil {
		return nil, fmt.Errorf("xdp port %s queue %d: socket: %w", p.Name, qi, err)
	}
	if zc, err := zeroCopyOption(sock.FD()); err == nil {
		p.ZeroCopy = zc
	}
	// In copy mode the kernel sends at most 32 frames per sendto unless
	// told otherwise (Linux 6.x); older kernels refuse the option.
	_ = unix.SetsockoptInt(sock.FD(), unix.SOL_XDP, unix.XDP_MAX_TX_SKB_BUDGET, 256)
	// The whole UMEM, through asavie's only accessor for it.
	umem := sock.GetFrame(xdp.Desc{Addr: 0, Len: uint32(opts.NumFrames * opts.FrameSize)})
	q := &xskQueue{
		port: p, index: qi, sock: sock, umem: umem, frameSize: opts.FrameSize,
		txSize: opts.TxRingNumDescs, reserve: min(MaxBatch, opts.NumFrames/4),
		frames:   newFrameStack(opts.NumFrames, opts.FrameSize),
		inflight: make([]uint64, opts.NumFrames),
		fillBuf:  make([]xdp.Desc, 0, opts.FillRingNumDescs),
	}
	q.refill()
	return q, nil
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
	for i, q := range p.queues {
		if p.prog != nil {
			_ = p.prog.Unregister(i)
		}
		if err := q.sock.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	p.queues = nil
	if p.attachFlags >= 0 && p.link != nil {
		if err := netlink.LinkSetXdpFdWithFlags(p.link, -1, p.attachFlags); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("xdp port %s: detach: %w", p.Name, err))
		}
		p.attachFlags = -1
	}
	if p.prog != nil {
		if err := p.prog.Close(); err != nil {
			errs = append(errs, err)
		}
		p.prog = nil
	}
	if p.lock != nil {
		// Removed while still held, then released, so lock files do not
		// pile up (one per namespace and interface ever used). The
		// price: of two processes starting on this interface at the
		// instant this one exits, both could end up owners.
		_ = os.Remove(p.lock.Name())
		p.lock.Close() // releases the flock
		p.lock = nil
	}
	return errors.Join(errs...)
}

// lockDirs are where interface locks live: the first that can be created.
var lockDirs = []string{"/run/ispmux", filepath.Join(os.TempDir(), "ispmux-run")}

// lockInterface takes the exclusive lock of interface ifindex in the
// calling thread's network namespace (interface indexes and names repeat
// across namespaces). The lock is a flock on a file named by the
// namespace's inode and the index: the kernel releases it when its holder
// exits, however it exits, so a crashed ispmux never blocks the next.
func lockInterface(ifindex int) (*os.File, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	var errs []error
	for _, dir := range lockDirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		name := filepath.Join(dir, fmt.Sprintf("xdp-%d-%d.lock", st.Ino, ifindex))
		f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("in use by another process (lock %s): is another ispmux running on this interface?", name)
			}
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		return f, nil
	}
	return nil, fmt.Errorf("no directory for interface locks: %w", errors.Join(errs...))
}

// xskQueue is one AF_XDP socket and its UMEM.
//
// Frame ownership: frames holds the addresses of frames nobody uses; the fill
// ring and TX ring hold frames the kernel owns; inflight is a FIFO of the
// addresses handed to the TX ring, in submission order, popped as the
// completion ring advances.
type xskQueue struct {
	port      *XDPPort
	index     int
	sock      *xdp.Socket
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
func (q *xskQueue) FD() int        { return q.sock.FD() }
func (q *xskQueue) Pending() int   { return q.count }

func (q *xskQueue) Stats() QueueStats { return q.c.snapshot() }

func (q *xskQueue) Receive(dst []Desc) []Desc {
	room := cap(dst) - len(dst)
	if room <= 0 {
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
		return fmt.Errorf("xdp port %s queue %d: down", q.port.Name, q.index)
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
