package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/privtest"
	"github.com/ispmux/ispmux/lab"
)

// capsUID is the unprivileged user (and group) TestCapabilities runs
// ispmux as: a number no account uses.
const capsUID = 64123

// unitFile is the systemd unit whose capability set TestCapabilities
// tests.
const unitFile = "../contrib/systemd/ispmux.service"

// unitCaps reads the unit's capability sets: the active
// AmbientCapabilities (which must equal CapabilityBoundingSet) and the
// commented-out pair for the captive portal.
func unitCaps(t *testing.T) (base, portal []string, keys map[string]string) {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys = map[string]string{}
	commented := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		m := keys
		if c, ok := strings.CutPrefix(l, "#"); ok {
			l, m = c, commented
		}
		if k, v, ok := strings.Cut(l, "="); ok && !strings.Contains(k, " ") {
			m[k] = v
		}
	}
	if keys["AmbientCapabilities"] != keys["CapabilityBoundingSet"] || commented["AmbientCapabilities"] != commented["CapabilityBoundingSet"] {
		t.Fatalf("%s: AmbientCapabilities and CapabilityBoundingSet differ", unitFile)
	}
	return strings.Fields(keys["AmbientCapabilities"]), strings.Fields(commented["AmbientCapabilities"]), keys
}

// setprivArgs is `setpriv` as capsUID with exactly caps (inheritable,
// ambient and bounding sets) and no supplementary groups.
func setprivArgs(caps []string) []string {
	var l []string
	for _, c := range caps {
		l = append(l, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	set := "-all," + strings.Join(l, ",")
	return []string{"setpriv", "--reuid=" + strconv.Itoa(capsUID), "--regid=" + strconv.Itoa(capsUID), "--clear-groups",
		"--inh-caps=" + set, "--ambient-caps=" + set, "--bounding-set=" + set}
}

// capsRig prepares r to run ispmux as capsUID: a directory it can read
// with a copy of the binary and the configuration, a state directory and
// a TMPDIR (interface locks: /run/ispmux is root's) it owns.
type capsRig struct {
	*rig
	bin, tmp string
	// env is more of ispmux's environment (VAR=value), as systemd sets
	// it (NOTIFY_SOCKET, WATCHDOG_USEC).
	env []string
}

func newCapsRig(t *testing.T, o lab.Options) *capsRig {
	privtest.Lab(t)
	privtest.Tool(t, "setpriv") // util-linux
	r := newRig(t, o)
	dir, err := os.MkdirTemp("", "ispmux-caps")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &capsRig{rig: r, bin: filepath.Join(dir, "ispmux"), tmp: filepath.Join(dir, "tmp")}
	r.dir, r.cfg = dir, filepath.Join(dir, "ispmux.toml")
	if err := os.WriteFile(r.cfg, r.topo.ConfigTOML(filepath.Join(dir, "state")), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(binPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{c.tmp, filepath.Join(dir, "state")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, capsUID, capsUID); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if p := r.topo.Portal; p != nil {
		// The key is ispmux's to read (root:ispmux 0640 on a real box).
		if err := os.Chown(p.KeyFile, capsUID, capsUID); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// command is `ip netns exec APP env TMPDIR=... setpriv ... ispmux run -c
// CFG --log-format json`.
func (c *capsRig) command(ctx context.Context, caps []string) *exec.Cmd {
	args := append(append([]string{"netns", "exec", c.topo.Appliance.NS, "env", "TMPDIR=" + c.tmp}, c.env...), setprivArgs(caps)...)
	args = append(args, c.bin, "run", "-c", c.cfg, "--log-format", "json")
	return exec.CommandContext(ctx, "ip", args...)
}

// startWith runs ispmux with caps and waits until every ISP next hop is
// resolved (as rig.start).
func (c *capsRig) startWith(caps []string) {
	c.t.Helper()
	c.log = &syncBuffer{}
	c.cmd = c.command(context.Background(), caps)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if st, err := c.status(); err == nil {
			ok := true
			for _, i := range st.ISPs {
				ok = ok && i.State == "reachable"
			}
			if ok {
				return
			}
		}
		if c.cmd.ProcessState != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("ispmux (uid %d, %v) did not become ready; log:\n%s", capsUID, caps, c.log.String())
}

// mustFail runs ispmux with caps and wants it to exit non-zero within 10
// s, its error naming missing.
func (c *capsRig) mustFail(t *testing.T, caps []string, missing string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := c.command(ctx, caps).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("ispmux with %v still running after 10 s:\n%s", caps, out)
	}
	want := "missing capabilities: " + missing + " ("
	if err == nil || !strings.Contains(string(out), want) {
		t.Errorf("ispmux with %v: %v, want a failure saying %q:\n%s", caps, err, want, out)
	}
}

// procStatus returns the Uid, CapEff and CapBnd lines of pid.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// capMask is the capability mask of caps as /proc shows it (16 hex
// digits).
func capMask(t *testing.T, caps []string) string {
	bits := map[string]uint{"CAP_NET_BIND_SERVICE": 10, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_SYS_ADMIN": 21, "CAP_BPF": 39}
	var m uint64
	for _, c := range caps {
		b, ok := bits[c]
		if !ok {
			t.Fatalf("capability %s: not one ispmux is known to need", c)
		}
		m |= 1 << b
	}
	return fmt.Sprintf("%016x", m)
}

// TestCapabilities runs `ispmux run` the way contrib/systemd/ispmux.service
// does: a non-root user with exactly the unit's capabilities (setpriv:
// inheritable, ambient and bounding sets). It forwards, answers status,
// logs JSON (--log-format json), takes SIGHUP and stops cleanly on
// SIGTERM; without any one of the capabilities it fails at once naming
// it. The captive portal needs the unit's commented pair: CAP_SYS_ADMIN
// and CAP_NET_BIND_SERVICE on top.
func TestCapabilities(t *testing.T) {
	t.Parallel()
	base, portal, keys := unitCaps(t)
	wantBase := []string{"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_BPF", "CAP_IPC_LOCK"}
	if !slices.Equal(base, wantBase) {
		t.Errorf("unit capabilities %v, want %v", base, wantBase)
	}
	if !slices.Equal(portal, append(slices.Clone(wantBase), "CAP_SYS_ADMIN", "CAP_NET_BIND_SERVICE")) {
		t.Errorf("unit capabilities with the portal %v, want %v + CAP_SYS_ADMIN CAP_NET_BIND_SERVICE", portal, wantBase)
	}
	for k, v := range map[string]string{"User": "ispmux", "LimitMEMLOCK": "infinity", "Restart": "on-failure",
		"ExecReload": "/usr/sbin/ispmux ctl -c /etc/ispmux/ispmux.toml reload", "StateDirectory": "ispmux", "RuntimeDirectory": "ispmux", "NoNewPrivileges": "yes",
		"Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30s"} {
		if keys[k] != v {
			t.Errorf("unit: %s=%q, want %q", k, keys[k], v)
		}
	}

	t.Run("datapath", func(t *testing.T) {
		c := newCapsRig(t, lab.Options{Subscribers: 2})
		// The unit is Type=notify with a watchdog: systemd's socket,
		// as the service manager gives it.
		notes := notifySocket(t, c)
		c.startWith(base)
		notes.want(t, "READY=1", 5*time.Second)
		if !strings.Contains(notes.String(), "STATUS=forwarding: ") {
			t.Errorf("no forwarding status line: %q", notes.String())
		}
		notes.want(t, "WATCHDOG=1", 5*time.Second)
		pid := c.cmd.Process.Pid // ip netns exec, env and setpriv exec: ispmux itself
		st := procStatus(t, pid)
		if f := strings.Fields(st["Uid"]); len(f) == 0 || f[0] != strconv.Itoa(capsUID) {
			t.Errorf("ispmux runs as uid %q, want %d", st["Uid"], capsUID)
		}
		if st["CapEff"] != capMask(t, base) || st["CapBnd"] != capMask(t, base) {
			t.Errorf("ispmux's capabilities: effective %s, bounding %s; want %s", st["CapEff"], st["CapBnd"], capMask(t, base))
		}
		if !c.ping("s1", hostAddr, 3) || !c.ping("s2", hostAddr, 3) {
			t.Errorf("no forwarding as uid %d with %v\n%s", capsUID, base, c.log.String())
		}
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(c.log.String(), `"msg":"reloaded"`) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(c.log.String(), `"msg":"reloaded"`) {
			t.Errorf("no reload after SIGHUP:\n%s", c.log.String())
		}
		notes.want(t, "RELOADING=1", 5*time.Second)
		notes.want(t, "READY=1", 5*time.Second)
		// The unit's ExecReload (ispmux ctl -c CFG reload), as the
		// unit's user with its capabilities, as systemd runs it: the
		// control socket is that user's.
		args := append(setprivArgs(base), c.bin, "ctl", "-c", c.cfg, "reload")
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil || !strings.Contains(string(out), "reload: applied at") {
			t.Errorf("ExecReload's ctl reload as uid %d: %v, %q; want exit 0, applied", capsUID, err, out)
		}
		// Pings every half WATCHDOG_USEC (1 s here) while forwarding.
		n := notes.count("WATCHDOG=1")
		time.Sleep(3500 * time.Millisecond)
		if got := notes.count("WATCHDOG=1") - n; got < 2 || got > 5 {
			t.Errorf("%d watchdog pings in 3.5 s, want about 3 (every 1 s): %q", got, notes.String())
		}
		if !c.ping("s1", hostAddr, 2) {
			t.Errorf("no forwarding after SIGHUP")
		}
		c.stop() // SIGTERM: a clean exit, or the rig reports it
		notes.want(t, "STOPPING=1", 5*time.Second)
		lines := 0
		for _, l := range strings.Split(strings.TrimSpace(c.log.String()), "\n") {
			var rec struct {
				Time, Level, Msg string
			}
			if err := json.Unmarshal([]byte(l), &rec); err != nil || rec.Msg == "" || rec.Level == "" || rec.Time == "" {
				t.Errorf("--log-format json: not a JSON record with time, level and msg: %q (%v)", l, err)
			}
			lines++
		}
		if lines < 3 {
			t.Errorf("only %d log lines", lines)
		}
		for _, drop := range base {
			c.mustFail(t, slices.DeleteFunc(slices.Clone(base), func(s string) bool { return s == drop }), drop)
		}
	})

	t.Run("fast path", func(t *testing.T) {
		// The XDP fast path's maps and programs load with the same
		// capabilities (no CAP_PERFMON: the verifier refuses a packet
		// pointer plus a variable without it), and forward.
		c := newCapsRig(t, lab.Options{Subscribers: 2, FastPath: true})
		c.startWith(base)
		if !c.ping("s1", hostAddr, 3) || !c.ping("s2", hostAddr, 3) {
			t.Fatalf("no forwarding with the fast path as uid %d with %v\n%s", capsUID, base, c.log.String())
		}
		if up, _ := c.fastpath("acc0"); up < 6 {
			t.Errorf("the fast path forwarded %d of the 6 pings", up)
		}
	})

	t.Run("portal", func(t *testing.T) {
		c := newCapsRig(t, lab.Options{Subscribers: 1, DHCP: true, Portal: true})
		for _, drop := range []string{"CAP_SYS_ADMIN", "CAP_NET_BIND_SERVICE"} {
			c.mustFail(t, slices.DeleteFunc(slices.Clone(portal), func(s string) bool { return s == drop }), drop)
		}
		c.startWith(portal)
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := c.status()
			if err == nil && st.Portal != nil && st.Portal.NextHop == "reachable" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the portal's link is not reachable as uid %d with %v: %+v %v\n%s", capsUID, portal, st, err, c.log.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !strings.Contains(c.log.String(), "portal namespace ready") {
			t.Errorf("no portal namespace:\n%s", c.log.String())
		}
		c.stop()
	})
}

// notifications is what ispmux sent to the notification socket, one
// datagram after the other.
type notifications struct {
	mu   sync.Mutex
	all  []string
	next int // the first datagram want has not looked at
}

func (n *notifications) String() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.all, "|")
}

// holds reports whether datagram d holds the assignment a.
func holds(d, a string) bool { return slices.Contains(strings.Split(d, "\n"), a) }

// count is how many datagrams held the assignment a.
func (n *notifications) count(a string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := 0
	for _, d := range n.all {
		if holds(d, a) {
			k++
		}
	}
	return k
}

// want waits up to d for a datagram holding assignment a after the one
// the last want found, and fails the test without one.
func (n *notifications) want(t *testing.T, a string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		n.mu.Lock()
		for ; n.next < len(n.all); n.next++ {
			if holds(n.all[n.next], a) {
				n.next++
				n.mu.Unlock()
				return
			}
		}
		n.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %s from ispmux within %s; it sent: %q", a, d, n.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// notifySocket is a service manager's notification socket for c's
// ispmux (NOTIFY_SOCKET, with WATCHDOG_USEC of 2 s), open to its user;
// what arrives is gathered until the test ends.
func notifySocket(t *testing.T, c *capsRig) *notifications {
	t.Helper()
	path := filepath.Join(filepath.Dir(c.bin), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := os.Chmod(path, 0o666); err != nil { // ispmux runs as capsUID
		t.Fatal(err)
	}
	c.env = append(c.env, "NOTIFY_SOCKET="+path, "WATCHDOG_USEC=2000000")
	n := &notifications{}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.all = append(n.all, strings.TrimSuffix(string(buf[:k]), "\n"))
			n.mu.Unlock()
		}
	}()
	return n
}
