// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)): the datagrams a service of Type=notify sends to the
// socket named by $NOTIFY_SOCKET to say it is ready, reloading or
// stopping, to show a status line, and to keep its watchdog
// (WatchdogSec=, $WATCHDOG_USEC) from killing it. Outside systemd (no
// $NOTIFY_SOCKET) every call does nothing.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notifier sends notifications to the service manager. The zero value
// and a nil *Notifier send nothing. It is safe for concurrent use.
type Notifier struct {
	conn     *net.UnixConn
	watchdog time.Duration
}

// FromEnv returns the Notifier $NOTIFY_SOCKET names, with the watchdog
// interval of $WATCHDOG_USEC when $WATCHDOG_PID is unset or this
// process's. It returns a Notifier that sends nothing when
// $NOTIFY_SOCKET is unset, and an error when it is set but unusable (a
// vsock address, which this package does not speak, or a socket that
// cannot be reached) or $WATCHDOG_USEC is not a number of microseconds.
func FromEnv() (*Notifier, error) {
	n := &Notifier{}
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return n, nil
	}
	if !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "@") {
		return n, fmt.Errorf("NOTIFY_SOCKET=%q: only a socket path or an abstract name (@...) is supported", path)
	}
	// Go's net package takes a leading @ for Linux's abstract namespace.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return n, fmt.Errorf("NOTIFY_SOCKET: %w", err)
	}
	n.conn = conn
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
func (n *Notifier) Enabled() bool { return n != nil && n.conn != nil }

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
// one datagram. A status line's newlines are replaced by spaces: the
// protocol separates assignments by newlines.
func (n *Notifier) Send(assignments ...string) error {
	if !n.Enabled() {
		return nil
	}
	var b strings.Builder
	for _, a := range assignments {
		b.WriteString(strings.ReplaceAll(a, "\n", " "))
		b.WriteByte('\n')
	}
	_, err := n.conn.Write([]byte(b.String()))
	return err
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
	return n.conn.Close()
}
