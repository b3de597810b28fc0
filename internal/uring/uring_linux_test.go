package uring

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func newRing(t *testing.T) *Ring {
	t.Helper()
	r, err := New()
	if err != nil {
		if runtime.GOOS == "linux" && os.Getenv("CI") != "" {
			t.Fatalf("io_uring not available where CI runs: %v", err)
		}
		t.Skipf("io_uring not available: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// tempFile creates a file in the test's temporary directory, closed at
// cleanup.
func tempFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestSync: Sync goes through the ring (its sequence counts each
// request) and returns the kernel's result, including its errors.
func TestSync(t *testing.T) {
	r := newRing(t)
	f := tempFile(t)
	base := r.Seq() // New's probe
	if base != 1 {
		t.Fatalf("New ran %d probes, want 1", base)
	}
	for i := range 100 {
		if _, err := f.WriteAt([]byte("record"), int64(i*6)); err != nil {
			t.Fatal(err)
		}
		if err := r.Sync(f); err != nil {
			t.Fatalf("sync %d: %v", i, err)
		}
	}
	if n := r.Seq() - base; n != 100 {
		t.Fatalf("%d requests went through the ring, want 100", n)
	}
	// fdatasync on a pipe fails with EINVAL: the CQE's result comes back.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	if err := r.Sync(pw); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("sync of a pipe: %v, want EINVAL", err)
	}
	// The ring is still in step after an error.
	if err := r.Sync(f); err != nil {
		t.Fatalf("sync after an error: %v", err)
	}
	f.Close()
	if err := r.Sync(f); err == nil {
		t.Fatal("sync of a closed file: no error")
	}
	r.Close()
	if err := r.Sync(f); err == nil {
		t.Fatal("sync on a closed ring: no error")
	}
}

// TestSyncConcurrent: callers from many goroutines are serialized and
// each gets its own completion.
func TestSyncConcurrent(t *testing.T) {
	r := newRing(t)
	base := r.Seq()
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			f, err := os.Create(filepath.Join(dir, string(rune('a'+g))))
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			for range 50 {
				f.Write([]byte("x"))
				if err := r.Sync(f); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := r.Seq() - base; n != 400 {
		t.Fatalf("%d requests, want 400", n)
	}
}

// TestSyncWaitsInNetpoller: while the kernel syncs, the calling goroutine
// is parked in the netpoller ("IO wait"), holding no P, not in a system
// call. The syncs write 4 MiB each, so that they take long enough for the
// sampler to see one in flight.
func TestSyncWaitsInNetpoller(t *testing.T) {
	r := newRing(t)
	f := tempFile(t)
	data := make([]byte, 4<<20)
	stop := make(chan struct{})
	syncErr := make(chan error, 1)
	go func() {
		defer close(syncErr)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			data[0] = byte(i)
			if _, err := f.WriteAt(data, 0); err != nil {
				syncErr <- err
				return
			}
			if err := r.Sync(f); err != nil {
				syncErr <- err
				return
			}
		}
	}()
	buf := make([]byte, 1<<20)
	var parked, inSyscall int
	deadline := time.Now().Add(20 * time.Second)
	for parked < 3 && inSyscall == 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Microsecond)
		all := string(buf[:runtime.Stack(buf, true)])
		for _, g := range strings.Split(all, "\n\n") {
			if !strings.Contains(g, "uring.(*Ring).Sync") {
				continue
			}
			head, _, _ := strings.Cut(g, "\n")
			switch {
			case strings.Contains(head, "[IO wait"):
				parked++
			case strings.Contains(head, "[syscall") && !strings.Contains(g, "SYS_IO_URING_ENTER") && strings.Contains(g, "Fdatasync"):
				inSyscall++
			}
		}
	}
	close(stop)
	if err := <-syncErr; err != nil {
		t.Fatal(err)
	}
	if parked < 3 || inSyscall > 0 {
		t.Fatalf("Sync seen parked in the netpoller %d times, in fdatasync(2) %d times; want parked 3 times and never in the system call", parked, inSyscall)
	}
}

// TestPutFsync: the SQE is IORING_OP_FSYNC of the whole file (off 0, len
// 0) with IORING_FSYNC_DATASYNC, on fd, tagged user, and nothing else
// (no flags: IOSQE_ASYNC is refused before Linux 5.6), at the offsets
// of linux/io_uring.h's struct io_uring_sqe.
func TestPutFsync(t *testing.T) {
	sqe := make([]byte, sqeSize)
	for i := range sqe {
		sqe[i] = 0xee // left over from an earlier request
	}
	putFsync(sqe, 0x01020304, 0x1122334455667788)
	want := make([]byte, sqeSize)
	want[0] = 3                                                  // opcode: IORING_OP_FSYNC
	binary.NativeEndian.PutUint32(want[4:], 0x01020304)          // fd
	binary.NativeEndian.PutUint32(want[28:], 1)                  // fsync_flags: IORING_FSYNC_DATASYNC
	binary.NativeEndian.PutUint64(want[32:], 0x1122334455667788) // user_data
	if !bytes.Equal(sqe, want) {
		t.Fatalf("SQE\n got %x\nwant %x", sqe, want)
	}
}

// TestSyncBadFD: the kernel's error for the request comes back as the
// fsync's own (not NotRunError), and the ring stays in step.
func TestSyncBadFD(t *testing.T) {
	r := newRing(t)
	err := r.fsyncLocked(-1)
	var nr *NotRunError
	if !errors.Is(err, syscall.EBADF) || errors.As(err, &nr) {
		t.Fatalf("fsync of fd -1: %v, want EBADF", err)
	}
	f := tempFile(t)
	if err := r.Sync(f); err != nil {
		t.Fatal(err)
	}
}

// fsyncLocked is fsync under r.mu.
func (r *Ring) fsyncLocked(fd int32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fsync(fd)
}

// TestReadEventfd checks the eventfd callback: nothing to read parks
// (false), a count is read (true), and an error other than EAGAIN ends the
// wait with the error recorded, so fsync's loop waits instead of spinning.
func TestReadEventfd(t *testing.T) {
	r := newRing(t)
	var rfd uintptr
	if err := r.evc.Control(func(fd uintptr) { rfd = fd }); err != nil {
		t.Fatal(err)
	}
	// New's probe may have left its completion's count unread (fsync
	// returns once it sees the CQE): drain it first.
	for i := 0; r.readEventfd(rfd); i++ {
		if r.evErr != 0 || i == 10 {
			t.Fatalf("draining the eventfd: evErr %v after %d reads", r.evErr, i+1)
		}
	}
	if r.readEventfd(rfd) || r.evErr != 0 {
		t.Fatalf("empty eventfd: want false, no error (evErr %v)", r.evErr)
	}
	if _, err := r.ev.Write([]byte{3, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if !r.readEventfd(rfd) || r.evErr != 0 || binary.NativeEndian.Uint64(r.evBuf[:]) != 3 {
		t.Fatalf("count 3: evErr %v, read %d", r.evErr, binary.NativeEndian.Uint64(r.evBuf[:]))
	}
	p := make([]int, 2)
	if err := syscall.Pipe(p); err != nil {
		t.Fatal(err)
	}
	syscall.Close(p[0])
	defer syscall.Close(p[1])
	if !r.readEventfd(uintptr(p[1])) || r.evErr != syscall.EBADF {
		t.Fatalf("a pipe's write end: want true and EBADF, evErr %v", r.evErr)
	}
}
