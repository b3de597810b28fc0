package uring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// From linux/io_uring.h.
const (
	opFsync         = 3      // IORING_OP_FSYNC
	fsyncDatasync   = 1      // IORING_FSYNC_DATASYNC
	sqeAsync        = 1 << 4 // IOSQE_ASYNC: straight to io-wq
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
	ring   []byte   // SQ and CQ rings (one mapping)
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
	return r, nil
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

// fsync submits one IORING_OP_FSYNC on fd and waits for its completion.
// At most one request is in flight (r.mu), so the SQ ring has room and
// the next CQE is this request's.
func (r *Ring) fsync(fd int32) error {
	r.seq++
	tail := atomic.LoadUint32(r.sqTail)
	if tail-atomic.LoadUint32(r.sqHead) > r.sqMask {
		return errors.New("io_uring: submission queue full")
	}
	idx := tail & r.sqMask
	sqe := r.sqes[idx*sqeSize : (idx+1)*sqeSize]
	clear(sqe)
	sqe[0], sqe[1] = opFsync, sqeAsync
	binary.NativeEndian.PutUint32(sqe[4:], uint32(fd))
	binary.NativeEndian.PutUint32(sqe[28:], fsyncDatasync)
	binary.NativeEndian.PutUint64(sqe[32:], r.seq)
	*(*uint32)(unsafe.Add(r.sqArr, 4*uintptr(idx))) = idx
	atomic.StoreUint32(r.sqTail, tail+1) // publishes the SQE (release)
	for {
		n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 1, 0, 0, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			// Not consumed: take it back, so the ring stays in step.
			atomic.StoreUint32(r.sqTail, tail)
			return fmt.Errorf("io_uring_enter: %w", errno)
		}
		if n != 1 {
			atomic.StoreUint32(r.sqTail, tail)
			return fmt.Errorf("io_uring_enter: submitted %d of 1", n)
		}
		break
	}
	for {
		head := atomic.LoadUint32(r.cqHead)
		if atomic.LoadUint32(r.cqTail) != head { // acquire: the CQE is written
			cqe := unsafe.Add(r.cqes, uintptr(head&r.cqMask)*cqeSize)
			user := *(*uint64)(cqe)
			res := *(*int32)(unsafe.Add(cqe, 8))
			atomic.StoreUint32(r.cqHead, head+1)
			if user != r.seq {
				continue // not ours (cannot happen: one in flight)
			}
			if res < 0 {
				return syscall.Errno(-res)
			}
			return nil
		}
		// Parks the goroutine in the netpoller until a completion
		// signals the eventfd; a count left from an earlier completion
		// only sends the loop round once more.
		if _, err := r.ev.Read(r.evBuf[:]); err != nil {
			return fmt.Errorf("io_uring: eventfd: %w", err)
		}
	}
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
