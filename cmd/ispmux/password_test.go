package main

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal's master and slave.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	// Non-blocking: the runtime's poller then honours read deadlines.
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	m := os.NewFile(uintptr(fd), "/dev/ptmx")
	t.Cleanup(func() { m.Close() })
	var unlock int32
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, m.Fd(), unix.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Skipf("unlockpt: %v", e)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pts: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// TestPasswordNotEchoed: on a terminal the password is prompted for with
// echo off, and echo is back on afterwards.
func TestPasswordNotEchoed(t *testing.T) {
	master, slave := openPTY(t)
	if !isTerminal(slave) || isTerminal(strings.NewReader("")) {
		t.Fatal("isTerminal")
	}
	var prompt bytes.Buffer
	go func() {
		time.Sleep(100 * time.Millisecond)
		_, _ = master.Write([]byte("s3cret\n"))
	}()
	pw, err := readPassword(context.Background(), slave, &prompt, "password: ")
	if err != nil || pw != "s3cret" || prompt.String() != "password: \n" {
		t.Fatalf("readPassword = %q, %v (prompt %q)", pw, err, prompt.String())
	}
	// What the terminal showed: no password.
	_ = master.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	shown := make([]byte, 256)
	n, _ := master.Read(shown)
	if strings.Contains(string(shown[:n]), "s3cret") {
		t.Errorf("the terminal echoed %q", shown[:n])
	}
	tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil || tio.Lflag&unix.ECHO == 0 {
		t.Errorf("echo not restored: %v", err)
	}
}

func TestPasswordFromStdin(t *testing.T) {
	ctx := context.Background()
	for in, want := range map[string]string{"pw\n": "pw", "pw\r\nmore\n": "pw", "no newline": "no newline"} {
		if pw, err := readPassword(ctx, strings.NewReader(in), &bytes.Buffer{}, "p: "); err != nil || pw != want {
			t.Errorf("%q: %q %v", in, pw, err)
		}
	}
	for _, in := range []string{"", "\n", strings.Repeat("x", maxPassword+1) + "\n"} {
		if _, err := readPassword(ctx, strings.NewReader(in), &bytes.Buffer{}, "p: "); err == nil {
			t.Errorf("%.20q: no error", in)
		}
	}
}
