// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)): the datagrams a service of Type=notify sends to the
// socket named by $NOTIFY_SOCKET to say it is ready, reloading or
// stopping, to show a status line, and to keep its watchdog
// (WatchdogSec=, $WATCHDOG_USEC) from killing it. Outside systemd (no
// $NOTIFY_SOCKET) every call does nothing.
//
// Like libsystemd's sd_notify, each notification is sent to the socket's
// address (sendto on an unconnected socket), not over a connection made
// once: a service manager that re-creates its socket at the same address
// (systemd's daemon-reexec) still gets the notifications sent after it.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// sendTimeout is how long a Send waits for a manager whose socket's queue
// is full (one that does not read it) before it drops the notification
// with an error.
const sendTimeout = time.Second

// Notifier sends notifications to the service manager. The zero value
// and a nil *Notifier send nothing. It is safe for concurrent use.
type Notifier struct {
	watchdog time.Duration
	on       bool // $NOTIFY_SOCKET was usable

	mu  sync.Mutex           // serialises Send and Close: fd, to and msg are theirs
	fd  int                  // an unconnected datagram socket, blocking; -1 once closed
	to  syscall.SockaddrUnix // $NOTIFY_SOCKET (see Send)
	msg []byte               // the datagram being sent, reused
}

// FromEnv returns the Notifier $NOTIFY_SOCKET names, with the watchdog
// interval of $WATCHDOG_USEC when $WATCHDOG_PID is unset or this
// process's. It returns a Notifier that sends nothing when
// $NOTIFY_SOCKET is unset, and an error when it is set but unusable (a
// vsock address, which this package does not speak, or a socket that
// cannot be reached now) or $WATCHDOG_USEC is not a number of
// microseconds.
func FromEnv() (*Notifier, error) {
	n := &Notifier{}
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return n, nil
	}
	if !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "@") {
		return n, fmt.Errorf("NOTIFY_SOCKET=%q: only a socket path or an abstract name (@...) is supported", path)
	}
	// Whether the manager listens now: a connection tried once and
	// closed. Sends go to the address each time (see the package doc).
	// Go's net package, like package syscall's SockaddrUnix (Send),
	// takes a leading @ for Linux's abstract namespace.
	probe, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return n, fmt.Errorf("NOTIFY_SOCKET: %w", err)
	}
	probe.Close()
	// Blocking, as libsystemd's: a manager whose queue is full is waited
	// for rather than a notification dropped, but for sendTimeout at
	// most (SO_SNDTIMEO), where libsystemd waits for good: a Send holds
	// n's lock, and a manager that stopped reading its socket held every
	// caller of Send (the watchdog, a reload's, the stop's) with it.
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return n, fmt.Errorf("NOTIFY_SOCKET: %w", os.NewSyscallError("socket", err))
	}
	tv := unix.NsecToTimeval(sendTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		unix.Close(fd)
		return n, fmt.Errorf("NOTIFY_SOCKET: %w", os.NewSyscallError("setsockopt SO_SNDTIMEO", err))
	}
	n.on, n.fd, n.to.Name = true, fd, path
	if us := os.Getenv("WATCHDOG_USEC"); us != "" {
		if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
			return n, nil // another process's watchdog
		}
		v, err := strconv.ParseUint(us, 10, 63)
		if err != nil || v == 0 {
			return n, fmt.Errorf("WATCHDOG_USEC=%q: not a positive number of microseconds", us)
		}
		n.watchdog = time.Duration(v) * time.Microsecond
	}
	return n, nil
}

// Enabled reports whether n sends to a service manager.
func (n *Notifier) Enabled() bool { return n != nil && n.on }

// Watchdog is the service's watchdog interval (0: none): the manager
// kills the service when WATCHDOG=1 does not come within it.
// sd_watchdog_enabled(3) advises sending it every half interval.
func (n *Notifier) Watchdog() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog
}

// Send sends the assignments (READY=1, STATUS=..., WATCHDOG=1, ...) in
// one datagram to $NOTIFY_SOCKET's address. A status line's newlines are
// replaced by spaces: the protocol separates assignments by newlines. A
// manager whose socket is away at that instant (re-created by a
// daemon-reexec) is an error; the next Send tries the address again. So
// is one whose socket's queue stays full for sendTimeout (the manager
// not reading it; up to twice that if a signal interrupts the wait): the
// notification is dropped.
func (n *Notifier) Send(assignments ...string) error {
	if !n.Enabled() {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fd < 0 {
		return errors.New("sdnotify: send after Close")
	}
	n.msg = n.msg[:0]
	for _, a := range assignments {
		for i := 0; i < len(a); i++ {
			c := a[i]
			if c == '\n' {
				c = ' '
			}
			n.msg = append(n.msg, c)
		}
		n.msg = append(n.msg, '\n')
	}
	// The SockaddrUnix is n's own, its raw form filled in place: no
	// allocation per send. Package syscall's, as net's probe in FromEnv
	// used: x/sys/unix's refuses an abstract name of sun_path's whole
	// 108 bytes (it keeps a byte for a NUL such a name does not have),
	// which the probe reached, and every send failed.
	//
	// A signal that interrupts a send waiting on a full queue (a SIGHUP's
	// reload, a SIGCHLD) is not a reason to drop it: with SO_SNDTIMEO
	// set, Linux does not restart the interrupted sendto, SA_RESTART or
	// not (signal(7)). It is sent again until sendTimeout has passed.
	deadline := time.Now().Add(sendTimeout)
	err := syscall.Sendto(n.fd, n.msg, unix.MSG_NOSIGNAL, &n.to)
	for err == syscall.EINTR && time.Now().Before(deadline) {
		err = syscall.Sendto(n.fd, n.msg, unix.MSG_NOSIGNAL, &n.to)
	}
	if err != nil {
		if err == syscall.EAGAIN {
			return fmt.Errorf("sdnotify: the service manager's socket stayed full for %v (not read): notification dropped", sendTimeout)
		}
		return os.NewSyscallError("sendto", err)
	}
	return nil
}

// Reloading is the RELOADING=1 notification with the MONOTONIC_USEC
// systemd asks with it (systemd.service(5), Type=notify-reload).
func Reloading() []string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return []string{"RELOADING=1"}
	}
	return []string{"RELOADING=1", "MONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1000, 10)}
}

// Close closes the socket; a Send afterwards fails.
func (n *Notifier) Close() error {
	if !n.Enabled() {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fd < 0 {
		return nil
	}
	err := unix.Close(n.fd)
	n.fd = -1
	return err
}
