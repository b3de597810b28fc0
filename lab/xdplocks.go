package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/datapath"
)

// XDP interface locks. ispmux takes an exclusive flock per data port (and
// per portal link) on a file xdp-<netns inode>-<ifindex or name-LINK>.lock
// in the first usable of datapath's lock directories (datapath.lockFile).
// A clean close removes the file; an ispmux killed (Down's SIGKILL, a test
// timeout, a crash) leaves it behind, one per namespace and interface.
// Down removes those of the lab's namespaces: removeXDPLocks.

// xdpLockDirs are datapath's lock directories (tests point it elsewhere).
var xdpLockDirs = datapath.LockDirs()

// netnsDir is where `ip netns` keeps its named namespaces.
var netnsDir = "/run/netns"

// removeXDPLocks removes the XDP lock files of the named namespace ns
// (called by Down once nothing runs in ns any more, before ns is deleted:
// the inode in their names is still ns's, not yet free for another
// namespace). A lock file still locked is left alone: see
// removeXDPLocksOf.
func removeXDPLocks(ns string) error {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(netnsDir, ns), &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("lab: namespace %s: %w", ns, err)
	}
	return removeXDPLocksOf(st.Ino, xdpLockDirs)
}

// removeXDPLocksOf removes the lock files xdp-<ino>-*.lock in dirs that
// nobody holds. Each is locked (non-blocking) before it is removed and
// released after, as datapath does on close: a file some process holds is
// left to it, and no process can take the lock of a file being removed.
func removeXDPLocksOf(ino uint64, dirs []string) error {
	prefix := "xdp-" + strconv.FormatUint(ino, 10) + "-"
	var errs []error
	for _, dir := range dirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("lab: XDP locks: %w", err))
			}
			continue
		}
		for _, e := range ents {
			if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), prefix) || !strings.HasSuffix(e.Name(), ".lock") {
				continue
			}
			if err := removeUnlocked(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// removeUnlocked removes lock file name unless another process holds it.
func removeUnlocked(name string) error {
	f, err := os.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("lab: XDP lock: %w", err)
	}
	defer f.Close() // releases the flock, after the removal
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil // held: an ispmux still runs on it
		}
		return fmt.Errorf("lab: XDP lock %s: %w", name, err)
	}
	// The file locked must still be the one at name (not one removed
	// meanwhile, and name made anew by an ispmux that now holds it).
	var held, now unix.Stat_t
	if unix.Fstat(int(f.Fd()), &held) != nil || unix.Lstat(name, &now) != nil || held.Ino != now.Ino || held.Dev != now.Dev {
		return nil
	}
	if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("lab: XDP lock: %w", err)
	}
	return nil
}
