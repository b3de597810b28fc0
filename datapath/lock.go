package datapath

// Interface locks: one ispmux per interface and network namespace, held
// by a flock the kernel releases however its holder exits.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// lockDirs are where interface locks live: the first that can be created.
var lockDirs = []string{"/run/ispmux", filepath.Join(os.TempDir(), "ispmux-run")}

// LockDirs returns the directories interface locks may live in (the lab's
// teardown removes the unheld ones of its namespaces).
func LockDirs() []string { return slices.Clone(lockDirs) }

// lockInterface takes the exclusive lock of interface ifindex in the
// calling thread's network namespace (interface indexes and names repeat
// across namespaces). The lock is a flock on a file named by the
// namespace's inode and the index: the kernel releases it when its holder
// exits, however it exits, so a crashed ispmux never blocks the next.
func lockInterface(ifindex int) (*os.File, error) { return lockFile(strconv.Itoa(ifindex)) }

// LockLinkName takes the exclusive lock of the interface name in the
// calling thread's network namespace, as lockInterface does for an index:
// for a link the caller creates and deletes itself (the portal's veth), so
// that a second ispmux never deletes a running one's. Close the file to
// release it (the kernel does at exit).
func LockLinkName(name string) (*os.File, error) { return lockFile("name-" + name) }

// lockFile takes the lock named key in the calling thread's namespace.
func lockFile(key string) (*os.File, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	var errs []error
	for _, dir := range lockDirs {
		// A directory is passed over only when it cannot be made or
		// holds no lock file we can make: a lock taken elsewhere than
		// where another ispmux looks (the service's temporary directory
		// is its own, PrivateTmp) excludes nobody.
		_, serr := os.Stat(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		if errors.Is(serr, fs.ErrNotExist) {
			// Made here: open to the other user's ispmux whatever
			// our umask.
			_ = os.Chmod(dir, 0o755)
		}
		name := filepath.Join(dir, fmt.Sprintf("xdp-%d-%s.lock", st.Ino, key))
		retry := 0
	again:
		// Read-only: flock needs no write access, and an existing file
		// may be another user's (root's ispmux by hand, the service's
		// user): it is where that one locks, so it is ours too.
		f, err := os.OpenFile(name, os.O_RDONLY, 0)
		if errors.Is(err, fs.ErrNotExist) {
			f, err = os.OpenFile(name, os.O_CREATE|os.O_RDONLY, 0o644)
			if err != nil {
				// Nobody locks this interface here, and we may not
				// create the file (a directory of another user's):
				// the next directory.
				errs = append(errs, err)
				continue
			}
			_ = f.Chmod(0o644) // readable by the other user whatever our umask
		} else if errors.Is(err, fs.ErrPermission) {
			// A directory of another user's closed to us (made
			// under umask 027/077): as one we cannot create in.
			errs = append(errs, err)
			continue
		} else if err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("in use by another process (lock %s): is another ispmux running on this interface?", name)
			}
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		// The file locked must still be the one at name: one removed
		// between our open and our flock (by its owner's unlock, or a
		// clean-up of unheld lock files: the lab's teardown) locks
		// nothing anyone else would look at. Then again, from the open.
		if !sameFile(f, name) {
			f.Close()
			if retry < 8 {
				retry++
				goto again
			}
			return nil, fmt.Errorf("lock %s: the file keeps being replaced", name)
		}
		return f, nil
	}
	return nil, fmt.Errorf("no directory for interface locks: %w", errors.Join(errs...))
}

// sameFile reports whether the open file f is the file now at name.
func sameFile(f *os.File, name string) bool {
	var held, now unix.Stat_t
	if unix.Fstat(int(f.Fd()), &held) != nil || unix.Stat(name, &now) != nil {
		return false
	}
	return held.Dev == now.Dev && held.Ino == now.Ino
}
