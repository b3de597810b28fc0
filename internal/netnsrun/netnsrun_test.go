package netnsrun

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/privtest"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// needRoot is privtest.Lab: the test creates network namespaces and
// switches threads into them (root; skipped with -short, make unit).
func needRoot(t *testing.T) {
	t.Helper()
	privtest.Lab(t)
}

// onThread runs f on a goroutine locked to its thread for good (never
// unlocked): the runtime ends the thread with the goroutine, so a check
// that finds the thread in the wrong namespace leaves no such thread for
// the rest of the tests, and the checks after In see the thread fn ran on.
// f reports with t.Errorf.
func onThread(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		f()
	}()
	<-done
}

// newNamed creates a network namespace of a unique name (like ip netns
// add) and removes it when the test ends, failed or not. It returns the
// name and an open handle to it.
func newNamed(t *testing.T) (string, netns.NsHandle) {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "ispmux-nsrun-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			t.Errorf("remove network namespace %s: %v", name, err)
		}
		_ = os.Remove("/run/netns/" + name) // if the mount failed (EINVAL above)
	})
	errc := make(chan error, 1)
	onThread(func() {
		// NewNamed leaves this thread in the new namespace: back, by
		// hand (the thread ends with the goroutine anyway).
		orig := current(t)
		defer orig.Close()
		h, err := netns.NewNamed(name)
		if err == nil {
			h.Close()
		}
		if err := netns.Set(orig); err != nil {
			t.Errorf("test: thread not put back: %v", err)
		}
		errc <- err
	})
	if err := <-errc; err != nil {
		t.Fatalf("new network namespace %s: %v", name, err)
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("network namespace %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	return name, h
}

// current is the calling thread's namespace.
func current(t *testing.T) netns.NsHandle {
	t.Helper()
	h, err := netns.Get()
	if err != nil {
		t.Errorf("current network namespace: %v", err)
	}
	return h
}

// checkThreadIn checks that the calling thread is in namespace want.
func checkThreadIn(t *testing.T, when string, want netns.NsHandle) {
	t.Helper()
	cur := current(t)
	defer cur.Close()
	if !cur.Equal(want) {
		t.Errorf("%s: thread in %s, want %s", when, cur.UniqueId(), want.UniqueId())
	}
}

// checkIn runs run (In or InNamed, for target) on a thread of its own and
// checks that fn ran on that thread in target, that fn's error came back
// and that the thread is back in its namespace afterwards.
func checkIn(t *testing.T, target netns.NsHandle, run func(fn func() error) error) {
	t.Helper()
	for _, want := range []error{nil, errors.New("fn's error")} {
		onThread(func() {
			orig := current(t)
			defer orig.Close()
			if orig.Equal(target) {
				t.Errorf("the test thread is in the target namespace %s already", target.UniqueId())
				return
			}
			tid := unix.Gettid()
			ran := false
			err := run(func() error {
				ran = true
				checkThreadIn(t, "in fn", target)
				if got := unix.Gettid(); got != tid {
					t.Errorf("fn ran on thread %d, want the caller's %d", got, tid)
				}
				return want
			})
			if !ran {
				t.Errorf("fn did not run")
			}
			if err != want {
				t.Errorf("In returned %v, want fn's %v", err, want)
			}
			// The goroutine is locked (onThread): this is the thread fn
			// ran on, which must be back.
			checkThreadIn(t, "after In (not switched back?)", orig)
		})
	}
}

func TestIn(t *testing.T) {
	needRoot(t)
	_, h := newNamed(t)
	checkIn(t, h, func(fn func() error) error { return In(h, fn) })
}

func TestInNamed(t *testing.T) {
	needRoot(t)
	name, h := newNamed(t)
	checkIn(t, h, func(fn func() error) error { return InNamed(name, fn) })
}

// TestInPanic: a thread whose fn panics is switched back too.
func TestInPanic(t *testing.T) {
	needRoot(t)
	_, h := newNamed(t)
	onThread(func() {
		orig := current(t)
		defer orig.Close()
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("fn's panic did not come through In")
				}
			}()
			_ = In(h, func() error { panic("fn's panic") })
		}()
		checkThreadIn(t, "after fn's panic", orig)
	})
}

// TestInInvalid: a handle that is not a namespace (or no namespace of the
// name) gives ErrEnter; fn does not run and the thread stays where it is.
func TestInInvalid(t *testing.T) {
	needRoot(t)
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, c := range []struct {
		what string
		run  func(fn func() error) error
	}{
		{"closed handle", func(fn func() error) error { return In(netns.None(), fn) }},
		{"not a namespace", func(fn func() error) error { return In(netns.NsHandle(f.Fd()), fn) }},
		{"unknown name", func(fn func() error) error { return InNamed("ispmux-nsrun-no-such-namespace", fn) }},
	} {
		onThread(func() {
			orig := current(t)
			defer orig.Close()
			ran := false
			err := c.run(func() error { ran = true; return nil })
			if !errors.Is(err, ErrEnter) {
				t.Errorf("%s: In returned %v, want ErrEnter", c.what, err)
			} else {
				t.Logf("%s: %v", c.what, err)
			}
			if ran {
				t.Errorf("%s: fn ran", c.what)
			}
			checkThreadIn(t, c.what+": after In", orig)
		})
	}
}

// TestInSame: a thread in the namespace already runs fn without a switch.
func TestInSame(t *testing.T) {
	needRoot(t)
	calls := 0
	setns = func(ns netns.NsHandle) error { calls++; return netns.Set(ns) }
	t.Cleanup(func() { setns = netns.Set })
	onThread(func() {
		orig := current(t)
		defer orig.Close()
		ran := false
		if err := In(orig, func() error { ran = true; return nil }); err != nil || !ran {
			t.Errorf("In(own namespace): ran %v, err %v", ran, err)
		}
	})
	if calls != 0 {
		t.Errorf("In switched namespaces %d times for the thread's own namespace", calls)
	}
}

// TestInNotReturned: when the switch back fails, In says so (with fn's
// error) and the goroutine stays locked to its thread, which is left in
// the namespace.
func TestInNotReturned(t *testing.T) {
	needRoot(t)
	_, h := newNamed(t)
	failure := errors.New("injected setns failure")
	calls := 0
	setns = func(ns netns.NsHandle) error {
		if calls++; calls == 2 {
			return failure
		}
		return netns.Set(ns)
	}
	t.Cleanup(func() { setns = netns.Set })
	fnErr := errors.New("fn's error")
	done := make(chan struct{})
	go func() {
		// No lock of the test's own: In's is the only one, and the
		// goroutine must still be on fn's thread after In returns.
		defer close(done)
		orig := current(t)
		defer orig.Close()
		var tid int
		err := In(h, func() error { tid = unix.Gettid(); return fnErr })
		if !errors.Is(err, ErrNotReturned) || !errors.Is(err, failure) || !errors.Is(err, fnErr) {
			t.Errorf("In returned %v, want ErrNotReturned with the setns error and fn's error", err)
		} else {
			t.Logf("In: %v", err)
		}
		for range 5 {
			time.Sleep(time.Millisecond)
			runtime.Gosched()
			if got := unix.Gettid(); got != tid {
				t.Errorf("the goroutine moved from thread %d (left in the namespace) to %d: unlocked", tid, got)
				break
			}
		}
		checkThreadIn(t, "after In, not switched back", h)
		// Put the thread back ourselves (it ends with this goroutine,
		// which is still locked; a wedged main thread would otherwise
		// stay in the namespace).
		if err := netns.Set(orig); err != nil {
			t.Errorf("test: thread not put back: %v", err)
		}
	}()
	<-done
}

// TestNew: New returns a new namespace with the thread back in its own.
func TestNew(t *testing.T) {
	needRoot(t)
	onThread(func() {
		orig := current(t)
		defer orig.Close()
		ns, err := New()
		if err != nil {
			t.Errorf("New: %v", err)
			return
		}
		defer ns.Close()
		if ns.Equal(orig) {
			t.Errorf("New returned the thread's own namespace %s", orig.UniqueId())
		}
		checkThreadIn(t, "after New", orig)
	})
}
