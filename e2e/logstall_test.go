package e2e

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/lab"
)

// TestStuckLogReader: ispmux starts and serves DHCP while its standard
// error is a full pipe that nobody reads (journald stuck): the log is
// queued (and dropped when the queue is full), never waited for. Once the
// pipe is read again, the queued lines come out. Debug logging, so that
// every DHCP message logs.
func TestStuckLogReader(t *testing.T) {
	t.Parallel()
	r := newRig(t, lab.Options{Subscribers: 3, DHCP: true, LeaseTime: dhcpLease})
	cfg, err := os.ReadFile(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte("[appliance]\n"), []byte("[appliance]\nlog_level = \"debug\"\n"), 1)
	if err := os.WriteFile(r.cfg, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	// The smallest pipe, already full: the first line ispmux writes
	// would block.
	size, err := unix.FcntlInt(pw.Fd(), unix.F_SETPIPE_SZ, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Write(bytes.Repeat([]byte("-"), size-1)); err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Write([]byte("\n")); err != nil {
		t.Fatal(err)
	}
	r.log = &syncBuffer{}
	r.cmd = exec.Command("ip", "netns", "exec", r.topo.Appliance.NS, binPath, "run", "-c", r.cfg)
	r.cmd.Stdout, r.cmd.Stderr = pw, pw
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close() // ispmux holds the write end
	drained := make(chan struct{})
	defer func() {
		r.stop() // before the read end closes: ispmux's last lines
		<-drained
	}()
	read := make(chan struct{})
	go func() {
		defer close(drained)
		<-read
		_, _ = io.Copy(r.log, pr)
	}()
	released := false
	release := func() {
		if !released {
			released = true
			close(read)
		}
	}
	defer release()

	ready := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if st, err := r.status(); err == nil && len(st.ISPs) > 0 && st.ISPs[0].State == "reachable" {
			ready = true
			break
		}
	}
	if !ready {
		release()
		time.Sleep(time.Second)
		t.Fatalf("ispmux did not become ready with its log unread; log:\n%s", r.log.String())
	}
	var subs []lab.Sub
	for _, name := range []string{"s1", "s2", "s3"} {
		s := r.sub(name)
		subs = append(subs, s)
		r.startUdhcpc(s)
	}
	for _, s := range subs {
		if _, ok := r.waitAddr(s, 20*time.Second); !ok {
			release()
			time.Sleep(time.Second)
			t.Fatalf("%s got no address with ispmux's log unread; log:\n%s", s.Name, r.log.String())
		}
	}
	release()
	// What was queued meanwhile comes out (the queue, 1 MiB, holds this
	// test's lines: the drops and their warning are internal/asynclog's
	// tests).
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if strings.Contains(r.log.String(), "dhcp from ISP") {
			break
		}
	}
	log := r.log.String()
	if !strings.Contains(log, "msg=scheduler") || !strings.Contains(log, "dhcp from ISP") {
		t.Fatalf("after the reader caught up, the queued lines did not come out; log:\n%s", log)
	}
}
