package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// A lab is owned by the process that brought it up, through a flock on a
// file named after its ID: the kernel drops the lock when that process
// exits, however it exits. Sweep removes only labs nobody owns, so a test
// run never tears down the lab of another run going on at the same time.
var (
	ownersMu sync.Mutex
	owners   = map[string]*os.File{} // held open: closing it (or a GC finalizer) would drop the lock
)

func ownerPath(id string) string {
	return filepath.Join(os.TempDir(), "ispmux-lab-owners", id+".lock")
}

// own takes the ownership lock of lab id for this process. It fails if
// another live process owns the lab.
func own(id string) error {
	ownersMu.Lock()
	defer ownersMu.Unlock()
	if _, ok := owners[id]; ok {
		return nil
	}
	f, err := lockOwner(id)
	if err != nil {
		return err
	}
	owners[id] = f
	return nil
}

// lockOwner opens and locks id's owner file without blocking.
func lockOwner(id string) (*os.File, error) {
	p := ownerPath(id)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("lab %s: owner lock: %w", id, err)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab %s: owner lock: %w", id, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lab %s: in use by another process", id)
		}
		return nil, fmt.Errorf("lab %s: owner lock: %w", id, err)
	}
	return f, nil
}

// disown releases this process's ownership of lab id, if it has it, and
// removes the lock file unless another process owns the lab.
func disown(id string) {
	ownersMu.Lock()
	defer ownersMu.Unlock()
	if f, ok := owners[id]; ok {
		delete(owners, id)
		_ = os.Remove(ownerPath(id))
		f.Close()
		return
	}
	if _, err := os.Stat(ownerPath(id)); err != nil {
		return
	}
	if f, err := lockOwner(id); err == nil {
		_ = os.Remove(ownerPath(id))
		f.Close()
	}
}

// ownedElsewhere reports whether another live process owns lab id.
func ownedElsewhere(id string) bool {
	ownersMu.Lock()
	_, mine := owners[id]
	ownersMu.Unlock()
	if mine {
		return false
	}
	f, err := lockOwner(id)
	if err != nil {
		return true
	}
	f.Close()
	return false
}
