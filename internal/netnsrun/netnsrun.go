// Package netnsrun owns ispmux's one way of running code in another network
// namespace: the calling goroutine is locked to its OS thread, the thread is
// switched into the namespace, the code runs, and the thread is switched
// back. The thread goes back to the runtime (is unlocked) only once it is
// back in the namespace it came from. A thread that cannot be switched back
// stays locked to its goroutine, so no other goroutine ever runs on it in
// the wrong namespace, and the runtime ends the thread when that goroutine
// ends: a caller that must not keep running there (a long-lived goroutine,
// the main goroutine) calls In from a goroutine of its own.
//
// Namespaces are switched per thread (setns(2)), never for the whole
// process.
package netnsrun

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// ErrEnter is the error (wrapped) when the thread could not be switched
// into the namespace; fn did not run and the thread is unchanged.
var ErrEnter = errors.New("netnsrun: enter network namespace")

// ErrNotReturned is the error (wrapped) when the thread could not be
// switched back to its namespace after fn: the calling goroutine stays
// locked to the thread, which is still in the other namespace.
var ErrNotReturned = errors.New("netnsrun: return to network namespace")

// setns is netns.Set; the package's test replaces it to make the switch
// back fail.
var setns = netns.Set

// In runs fn with the calling goroutine locked to its OS thread and that
// thread in network namespace ns, and returns fn's error. After fn (also
// when it panics or calls runtime.Goexit) the thread is switched back to
// the namespace it was in and unlocked. A thread in ns already is not
// switched.
//
// If the thread's own namespace cannot be opened (to come back to) or the
// thread cannot be switched into ns, fn does not run; in the second case
// the error wraps ErrEnter. If it cannot be switched back, the error wraps
// ErrNotReturned (joined with fn's error, if any) and the goroutine stays
// locked to the thread, which is left in ns: the caller should let the
// goroutine end, which ends the thread too.
func In(ns netns.NsHandle, fn func() error) error {
	return in(ns, "", fn)
}

// InNamed is In for the namespace named name (/run/netns/name, as made by
// ip netns add).
func InNamed(name string, fn func() error) error {
	h, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("%w %s: %w", ErrEnter, name, err)
	}
	defer h.Close()
	return in(h, name, fn)
}

// New creates a network namespace and returns a handle to it, the calling
// thread back in its own namespace (netns.New leaves the thread in the new
// one). The caller closes the handle; the namespace ends with its last
// reference. If the thread cannot be switched back, New closes the new
// namespace's handle and returns an error wrapping ErrNotReturned, the
// goroutine locked to the thread as In leaves it.
func New() (netns.NsHandle, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return netns.None(), fmt.Errorf("netnsrun: current network namespace: %w", err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		err = fmt.Errorf("netnsrun: new network namespace: %w", err)
	}
	// Back in every case: the thread may have left even if New failed
	// (unshare done, the handle not got).
	if rerr := setns(orig); rerr != nil {
		if ns.IsOpen() {
			_ = ns.Close()
		}
		return netns.None(), errors.Join(err, notReturned(orig, rerr))
	}
	runtime.UnlockOSThread()
	if err != nil {
		return netns.None(), err
	}
	return ns, nil
}

// in is In; name names ns in errors ("": ns's handle).
func in(ns netns.NsHandle, name string, fn func() error) (err error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netnsrun: current network namespace: %w", err)
	}
	defer orig.Close()
	if orig.Equal(ns) {
		defer runtime.UnlockOSThread()
		return fn()
	}
	if err := setns(ns); err != nil {
		// setns(2) changes nothing when it fails.
		runtime.UnlockOSThread()
		if name == "" {
			name = ns.String()
		}
		return fmt.Errorf("%w %s: %w", ErrEnter, name, err)
	}
	defer func() {
		if rerr := setns(orig); rerr != nil {
			err = errors.Join(err, notReturned(orig, rerr))
			return // the thread stays locked
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

func notReturned(orig netns.NsHandle, err error) error {
	return fmt.Errorf("%w %s: %w (the thread stays in the other namespace, locked to its goroutine)", ErrNotReturned, orig, err)
}
