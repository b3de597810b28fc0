package sdnotify

import (
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A signal that interrupts a Send waiting on a full queue (a SIGHUP's
// reload, a SIGCHLD) does not drop the notification: with SO_SNDTIMEO
// set, Linux never restarts the interrupted sendto (signal(7)), whatever
// SA_RESTART says, and Send returned "interrupted system call" at once,
// where the manager, reading again within sendTimeout, would have had it.
// Fails without the retry on EINTR in Send.
func TestSendInterruptedBySignal(t *testing.T) {
	c := listen(t, filepath.Join(t.TempDir(), "notify"))
	t.Setenv("WATCHDOG_USEC", "")
	n, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	// Fill the manager's queue (the last Send times out).
	for i := 0; ; i++ {
		if i == 1<<20 {
			t.Fatal("the socket never filled")
		}
		if err := n.Send("STATUS=filling " + strconv.Itoa(i)); err != nil {
			if !strings.Contains(err.Error(), "dropped") {
				t.Fatalf("filling: %v", err)
			}
			break
		}
	}
	sig := make(chan os.Signal, 16)
	signal.Notify(sig, unix.SIGUSR1)
	defer signal.Stop(sig)
	tid := make(chan int, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid <- unix.Gettid()
		done <- n.Send("READY=1")
	}()
	id := <-tid
	// Interrupt the blocked send a few times, then read the queue (the
	// manager reading again): the send must then go through.
	for range 3 {
		time.Sleep(50 * time.Millisecond)
		if err := unix.Tgkill(os.Getpid(), id, unix.SIGUSR1); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	buf := make([]byte, 4096)
	got := ""
	for {
		_ = c.SetReadDeadline(time.Now().Add(2 * sendTimeout))
		k, err := c.Read(buf)
		if err != nil {
			break
		}
		if got = string(buf[:k]); got == "READY=1\n" {
			break
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Send interrupted by a signal: %v", err)
	}
	if got != "READY=1\n" {
		t.Errorf("the manager read %q last, want READY=1", got)
	}
}
