package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen is a service manager's notification socket at name (a path, or
// @abstract), set as $NOTIFY_SOCKET for the test.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestSend(t *testing.T) {
	for _, name := range []string{filepath.Join(t.TempDir(), "notify"), "@ispmux-sdnotify-test-" + strconv.Itoa(os.Getpid())} {
		t.Run(name, func(t *testing.T) {
			c := listen(t, name)
			t.Setenv("WATCHDOG_USEC", "")
			n, err := FromEnv()
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if !n.Enabled() || n.Watchdog() != 0 {
				t.Fatalf("enabled %v, watchdog %v", n.Enabled(), n.Watchdog())
			}
			if err := n.Send("READY=1", "STATUS=forwarding\nnow"); err != nil {
				t.Fatal(err)
			}
			if got := recv(t, c); got != "READY=1\nSTATUS=forwarding now\n" {
				t.Errorf("got %q", got)
			}
			if err := n.Send(Reloading()...); err != nil {
				t.Fatal(err)
			}
			if got := recv(t, c); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
				t.Errorf("got %q", got)
			}
		})
	}
}

func TestWatchdogEnv(t *testing.T) {
	dir := t.TempDir()
	listen(t, filepath.Join(dir, "notify"))
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		err       bool
	}{
		{"", "", 0, false},
		{"30000000", "", 30 * time.Second, false},
		{"30000000", strconv.Itoa(os.Getpid()), 30 * time.Second, false},
		{"30000000", strconv.Itoa(os.Getpid() + 1), 0, false}, // another process's
		{"0", "", 0, true},
		{"soon", "", 0, true},
	} {
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", tc.pid)
		n, err := FromEnv()
		if (err != nil) != tc.err || n.Watchdog() != tc.want {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: watchdog %v, err %v; want %v, error %v", tc.usec, tc.pid, n.Watchdog(), err, tc.want, tc.err)
		}
		n.Close()
	}
}

func TestNoManager(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n, err := FromEnv()
	if err != nil || n.Enabled() {
		t.Fatalf("enabled %v, err %v", n.Enabled(), err)
	}
	if err := n.Send("READY=1"); err != nil {
		t.Fatal(err)
	}
	var nilN *Notifier
	if nilN.Send("READY=1") != nil || nilN.Watchdog() != 0 || nilN.Close() != nil {
		t.Fatal("a nil Notifier does something")
	}
	for _, bad := range []string{"vsock:2:1234", "relative/path", filepath.Join(t.TempDir(), "nobody-listens")} {
		t.Setenv("NOTIFY_SOCKET", bad)
		if _, err := FromEnv(); err == nil {
			t.Errorf("NOTIFY_SOCKET=%q: no error", bad)
		}
	}
}

// TestSendAfterManagerReexec is systemd's daemon-reexec as the notifier
// sees it: the manager's socket closed and made again at the same
// address between two sends. libsystemd's sd_notify sends to the address
// each time, and so does Send: the second notification reaches the new
// socket (a socket connected once would have sent it to the old one, and
// failed).
func TestSendAfterManagerReexec(t *testing.T) {
	for _, name := range []string{filepath.Join(t.TempDir(), "notify"), "@ispmux-sdnotify-reexec-" + strconv.Itoa(os.Getpid())} {
		t.Run(name, func(t *testing.T) {
			c := listen(t, name)
			t.Setenv("WATCHDOG_USEC", "")
			n, err := FromEnv()
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if err := n.Send("READY=1"); err != nil {
				t.Fatal(err)
			}
			if got := recv(t, c); got != "READY=1\n" {
				t.Fatalf("got %q", got)
			}
			// The manager goes away: a send now fails, and does not
			// stop the next.
			c.Close()
			if name[0] == '/' {
				os.Remove(name)
			}
			if err := n.Send("WATCHDOG=1"); err == nil {
				t.Error("a send with nobody listening: no error")
			}
			c = listen(t, name)
			if err := n.Send("WATCHDOG=1"); err != nil {
				t.Fatal(err)
			}
			if got := recv(t, c); got != "WATCHDOG=1\n" {
				t.Fatalf("got %q", got)
			}
		})
	}
}

// TestSendAllocatesNothing: a Send sends from the Notifier's own buffer
// to its own address, once the buffer has grown to the datagram's size.
func TestSendAllocatesNothing(t *testing.T) {
	c := listen(t, filepath.Join(t.TempDir(), "notify"))
	n, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	buf := make([]byte, 64)
	allocs := testing.AllocsPerRun(100, func() {
		if err := n.Send("WATCHDOG=1"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations a send", allocs)
	}
}

func TestSendAfterClose(t *testing.T) {
	listen(t, filepath.Join(t.TempDir(), "notify"))
	n, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Send("READY=1"); err == nil {
		t.Error("a send after Close: no error")
	}
	if err := n.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
}

// TestSendLongestAbstractName: an abstract name fills sun_path's 108
// bytes with no NUL after it (the leading @ is the NUL in front), which
// Linux, libsystemd and Go's net package all take. FromEnv's probe (net)
// reached such a socket, and every Send then failed with EINVAL:
// x/sys/unix's SockaddrUnix keeps a byte for a NUL that an abstract name
// does not have. A service with such a $NOTIFY_SOCKET was never told
// ready.
func TestSendLongestAbstractName(t *testing.T) {
	suffix := "-ispmux-sdnotify-" + strconv.Itoa(os.Getpid())
	name := "@" + strings.Repeat("n", 108-1-len(suffix)) + suffix
	if len(name) != 108 {
		t.Fatalf("name of %d bytes", len(name))
	}
	c := listen(t, name)
	t.Setenv("WATCHDOG_USEC", "")
	n, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Send("READY=1"); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got != "READY=1\n" {
		t.Fatalf("got %q", got)
	}
}

// A manager that does not read its socket: once its queue is full, a
// Send returns an error within about sendTimeout (the notification
// dropped) instead of blocking, n's lock held, for as long as the manager
// does not read; once it reads again, Send delivers. Fails without
// SO_SNDTIMEO (the send blocks past the deadline).
func TestSendManagerNotReading(t *testing.T) {
	c := listen(t, filepath.Join(t.TempDir(), "notify"))
	t.Setenv("WATCHDOG_USEC", "")
	n, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	done := make(chan error, 1)
	var took time.Duration
	go func() {
		for i := 0; i < 1<<20; i++ {
			start := time.Now()
			if err := n.Send("STATUS=filling " + strconv.Itoa(i)); err != nil {
				took = time.Since(start)
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "dropped") {
			t.Fatalf("the socket never filled, or another error: %v", err)
		}
		if took < sendTimeout/2 || took > 3*sendTimeout {
			t.Errorf("the dropped send took %v, want about %v", took, sendTimeout)
		}
	case <-time.After(10 * sendTimeout):
		c.Close() // wakes the send, so that n.Close returns
		t.Fatal("Send blocked on a manager that does not read its socket")
	}
	// The manager reads again: the queue drains, and the next Send goes.
	buf := make([]byte, 4096)
	for {
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.Read(buf); err != nil {
			break
		}
	}
	if err := n.Send("READY=1"); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got != "READY=1\n" {
		t.Errorf("got %q", got)
	}
}
