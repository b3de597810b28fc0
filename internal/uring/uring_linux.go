package uring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// From linux/io_uring.h.
const (
	opFsync         = 3      // IORING_OP_FSYNC
	fsyncDatasync   = 1      // IORING_FSYNC_DATASYNC
	featSingleMmap  = 1 << 0 // IORING_FEAT_SINGLE_MMAP
	registerEventfd = 4      // IORING_REGISTER_EVENTFD
	offSQES         = 0x10000000
	sqeSize         = 64
	cqeSize         = 16
	entries         = 4
	paramsSize      = 120
	sqOffHead       = 40 // offsets of io_uring_params' fields
	cqOffHead       = 80
)

// params is struct io_uring_params: sq_entries, cq_entries, flags,
// sq_thread_cpu, sq_thread_idle, features, wq_fd, resv[3], then the SQ
// ring's offsets (head, tail, ring_mask, ring_entries, flags, dropped,
// array, resv1, user_addr u64) and the CQ ring's (head, tail, ring_mask,
// ring_entries, overflow, cqes, flags, resv1, user_addr u64).
type params [paramsSize / 4]uint32

// Ring is an io_uring used for one fdatasync at a time, and the eventfd
// its completions signal. Its methods are safe for concurrent use (Sync
// calls are serialized).
type Ring struct {
	mu     sync.Mutex
	fd     int
	ev     *os.File // the eventfd, non-blocking: read through the netpoller
	evc    syscall.RawConn
	evRead func(fd uintptr) bool // r.readEventfd, bound once (no allocation per wait)
	evErr  syscall.Errno         // readEventfd's error other than EAGAIN and EINTR
	ring   []byte                // SQ and CQ rings (one mapping)
	sqes   []byte
	sqHead *uint32
	sqTail *uint32
	sqMask uint32
	sqArr  unsafe.Pointer // the SQ ring's index array
	cqHead *uint32
	cqTail *uint32
	cqMask uint32
	cqes   unsafe.Pointer
	seq    uint64 // user_data of the last submission
	evBuf  [8]byte
	closed bool
}

// New sets up a ring of a few entries and registers an eventfd with it.
func New() (*Ring, error) {
	var p params
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, entries, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &Ring{fd: int(fd)}
	if err := r.init(&p); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.probe(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// probe runs one fsync through the ring, of a memfd (its fsync does
// nothing and succeeds), so that a kernel that sets the ring up but
// cannot run the request (an opcode or flag it does not know, io-wq
// refused) fails New, not the first Sync.
func (r *Ring) probe() error {
	mfd, err := unix.MemfdCreate("ispmux-uring-probe", unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("io_uring: probe: memfd: %w", err)
	}
	defer unix.Close(mfd)
	if err := r.fsync(int32(mfd)); err != nil {
		return fmt.Errorf("io_uring: probe fsync: %w", err)
	}
	return nil
}

func (r *Ring) init(p *params) error {
	if p[5]&featSingleMmap == 0 {
		return errors.New("io_uring: no IORING_FEAT_SINGLE_MMAP (Linux < 5.4)")
	}
	sqEntries, cqEntries := p[0], p[1]
	sq := p[sqOffHead/4 : sqOffHead/4+7]
	cq := p[cqOffHead/4 : cqOffHead/4+6]
	size := max(sq[6]+sqEntries*4, cq[5]+cqEntries*cqeSize)
	ring, err := unix.Mmap(r.fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("io_uring: map rings: %w", err)
	}
	r.ring = ring
	sqes, err := unix.Mmap(r.fd, offSQES, int(sqEntries*sqeSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("io_uring: map SQEs: %w", err)
	}
	r.sqes = sqes
	at := func(off uint32) unsafe.Pointer { return unsafe.Pointer(&ring[off]) }
	r.sqHead, r.sqTail = (*uint32)(at(sq[0])), (*uint32)(at(sq[1]))
	r.sqMask, r.sqArr = *(*uint32)(at(sq[2])), at(sq[6])
	r.cqHead, r.cqTail = (*uint32)(at(cq[0])), (*uint32)(at(cq[1]))
	r.cqMask, r.cqes = *(*uint32)(at(cq[2])), at(cq[5])

	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("io_uring: eventfd: %w", err)
	}
	// A non-blocking descriptor: os.NewFile registers it with the
	// netpoller, so a Read parks the goroutine, not the thread.
	r.ev = os.NewFile(uintptr(efd), "io_uring eventfd")
	if r.evc, err = r.ev.SyscallConn(); err != nil {
		return fmt.Errorf("io_uring: eventfd: %w", err)
	}
	r.evRead = r.readEventfd
	e := int32(efd)
	if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerEventfd, uintptr(unsafe.Pointer(&e)), 1, 0, 0); errno != 0 {
		return fmt.Errorf("io_uring: register eventfd: %w", errno)
	}
	return nil
}

// Sync makes f's data durable, as fdatasync(2) does, and returns its error.
func (r *Ring) Sync(f *os.File) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return os.ErrClosed
	}
	var serr error
	// Control keeps f's descriptor open until the fsync completes.
	cerr := sc.Control(func(fd uintptr) { serr = r.fsync(int32(fd)) })
	if cerr != nil {
		return cerr
	}
	return serr
}

// putFsync encodes, in sqe (one 64-byte SQE, zeroed), an IORING_OP_FSYNC
// of the whole file fd with IORING_FSYNC_DATASYNC (off 0 and len 0: the
// range the kernel then syncs is the whole file, as fdatasync(2) does),
// tagged user.
func putFsync(sqe []byte, fd int32, user uint64) {
	clear(sqe)
	sqe[0] = opFsync
	binary.NativeEndian.PutUint32(sqe[4:], uint32(fd))
	binary.NativeEndian.PutUint32(sqe[28:], fsyncDatasync)
	binary.NativeEndian.PutUint64(sqe[32:], user)
}

// fsync submits one IORING_OP_FSYNC on fd and waits for its completion.
// At most one request is in flight (r.mu), so the SQ ring has room and
// the next CQE is this request's.
//
// No flag asks for io-wq (IOSQE_ASYNC, Linux 5.6, which 5.4 and 5.5
// refuse): the kernel's fsync cannot run non-blocking and goes to io-wq
// by itself (io_fsync returns -EAGAIN to a non-blocking issue before 5.6,
// later kernels force it in its prep).
func (r *Ring) fsync(fd int32) error {
	tail := atomic.LoadUint32(r.sqTail)
	if tail-atomic.LoadUint32(r.sqHead) > r.sqMask {
		return &NotRunError{errors.New("submission queue full")}
	}
	idx := tail & r.sqMask
	putFsync(r.sqes[idx*sqeSize:(idx+1)*sqeSize], fd, r.seq+1)
	*(*uint32)(unsafe.Add(r.sqArr, 4*uintptr(idx))) = idx
	atomic.StoreUint32(r.sqTail, tail+1) // publishes the SQE (release)
	for {
		// Not a raw call (as readEventfd's is): a submit is ~2 µs,
		// but the first from a thread, or one that must create an
		// io-wq worker, took 30-70 µs here, and can wait on kernel
		// locks or reclaim. Once per group commit, not per packet.
		n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 1, 0, 0, 0, 0)
		if errno == 0 && n == 1 {
			break
		}
		if atomic.LoadUint32(r.sqHead) != tail {
			// The kernel took the SQE (and may have dropped it, an
			// invalid one): it is no longer ours to take back. Wait
			// for its CQE as if the call had succeeded; a dropped
			// SQE bumps the SQ's dropped count instead, which this
			// ring never causes (the index is always in range).
			break
		}
		if errno == syscall.EINTR {
			continue
		}
		// Not consumed: take it back, so the ring stays in step.
		atomic.StoreUint32(r.sqTail, tail)
		if errno == 0 {
			errno = syscall.EIO
		}
		return &NotRunError{fmt.Errorf("io_uring_enter: %w", errno)}
	}
	r.seq++
	for {
		head := atomic.LoadUint32(r.cqHead)
		if atomic.LoadUint32(r.cqTail) != head { // acquire: the CQE is written
			cqe := unsafe.Add(r.cqes, uintptr(head&r.cqMask)*cqeSize)
			user := *(*uint64)(cqe)
			res := *(*int32)(unsafe.Add(cqe, 8))
			atomic.StoreUint32(r.cqHead, head+1)
			switch {
			case user != r.seq:
				continue // not ours (cannot happen: one in flight)
			case res == -int32(syscall.ECANCELED):
				// io-wq could not run it (no worker thread could be
				// made: pids.max, RLIMIT_NPROC): the file was not
				// looked at.
				return &NotRunError{syscall.ECANCELED}
			case res < 0:
				return syscall.Errno(-res)
			}
			return nil
		}
		// Parks the goroutine in the netpoller until a completion
		// signals the eventfd; a count left from an earlier completion
		// only sends the loop round once more.
		r.evErr = 0
		if err := r.evc.Read(r.evRead); err != nil || r.evErr != 0 {
			// Cannot happen (Close waits for r.mu; the eventfd is
			// ours). The request is in flight on fd, which Sync's
			// Control keeps open: never return before its CQE, poll
			// for it.
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// readEventfd reads the eventfd's count (which only wakes fsync's loop)
// as RawConn.Read's callback: false, nothing to read yet, parks the
// goroutine in the netpoller until the descriptor is readable. The read is
// a raw system call: an eventfd's read on a non-blocking descriptor does
// not sleep, and every syscall.Syscall made while the runtime's sysmon
// thread sleeps (all Ps idle, as between DHCP messages) wakes it to poll
// every 20 µs until all Ps are idle again
// (third_party/asavie-xdp/PATCHES.md, item 3). Another error ends the
// wait too, recorded in evErr (fsync then waits before it looks again,
// rather than spin).
func (r *Ring) readEventfd(fd uintptr) bool {
	_, _, errno := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&r.evBuf[0])), uintptr(len(r.evBuf)))
	if errno != 0 && errno != syscall.EINTR && errno != syscall.EAGAIN {
		r.evErr = errno
	}
	return errno != syscall.EAGAIN
}

// Close releases the ring. A Sync in progress completes first.
func (r *Ring) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if r.sqes != nil {
		unix.Munmap(r.sqes)
	}
	if r.ring != nil {
		unix.Munmap(r.ring)
	}
	if r.ev != nil {
		r.ev.Close()
	}
	return unix.Close(r.fd)
}

// Seq returns how many syncs were submitted to the ring.
func (r *Ring) Seq() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seq
}
