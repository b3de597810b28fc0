// Package uring makes a file's data durable without holding a Go P: Sync
// submits fdatasync(2) to an io_uring (IORING_OP_FSYNC with
// IORING_FSYNC_DATASYNC, run by the kernel's io-wq worker) and waits for
// its completion on an eventfd through the runtime's netpoller.
//
// A goroutine in a blocking system call keeps its P until sysmon retakes
// it, 20 µs to 10 ms later. On a process pinned to one CPU, which Go runs
// with one P, the binding journal's fdatasync in front of every DHCP ACK
// (0.2 ms here, tens of ms on a busy disk) held that P, and every other
// goroutine, the datapath worker and the DHCP relay included, waited
// behind it (docs/DEPLOY.md, GOMAXPROCS). Through this package the syncing
// goroutine is parked like one reading a socket, and the P runs the rest.
//
// New fails where io_uring is not available (before Linux 5.4, which this
// package needs for IORING_FEAT_SINGLE_MMAP; kernel.io_uring_disabled set;
// a seccomp profile that refuses it, as container runtimes' defaults do)
// and on other systems; callers then call fdatasync themselves. New runs
// one fsync through the ring before it returns, so a kernel that sets up
// a ring but cannot run the request fails there.
//
// The kernel runs the fsync on an io-wq worker thread of the submitting
// thread; the Go threads that submit each get a pool, whose last worker
// stays (sleeping) while that thread lives: a few kernel threads more,
// counted against the unit's TasksMax (pids.max).
package uring

// NotRunError is Sync's error when the fsync did not run (the ring could
// not take the request, or the kernel cancelled it before it started:
// io-wq could not make a worker thread): the file's data and its writeback
// error state were not looked at, so the caller may call fdatasync(2)
// itself. Any other error is the fsync's own, as fdatasync(2) would return
// it.
type NotRunError struct{ Err error }

func (e *NotRunError) Error() string { return "io_uring: fsync not run: " + e.Err.Error() }
func (e *NotRunError) Unwrap() error { return e.Err }
