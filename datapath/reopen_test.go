package datapath

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/privtest"
)

// procMem is what /proc says about a process's mappings and descriptors.
type procMem struct {
	Maps    int // mappings (/proc/PID/smaps)
	XSKMaps int // of them, mappings of a socket (an AF_XDP socket's rings)
	FDs     int
	VmRSSKB int
}

// readProcMem reads pid's mappings and descriptors.
func readProcMem(pid int) (procMem, error) {
	var m procMem
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return m, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 0 {
			continue
		}
		var lo, hi uint64
		if _, err := fmt.Sscanf(fs[0], "%x-%x", &lo, &hi); err == nil && len(fs) >= 5 {
			m.Maps++
			if len(fs) >= 6 && strings.HasPrefix(fs[5], "socket:") {
				m.XSKMaps++
			}
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return m, err
	}
	m.FDs = len(ents)
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			m.VmRSSKB, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return m, nil
}

// xdpSockets counts the AF_XDP sockets the kernel holds in namespace ns
// (/proc/net/protocols: a socket is counted until the kernel releases it,
// which a ring left mapped prevents).
func xdpSockets(t *testing.T, ns string) int {
	t.Helper()
	for _, l := range strings.Split(sh(t, "ip", "netns", "exec", ns, "cat", "/proc/net/protocols"), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[0] == "XDP" {
			n, err := strconv.Atoi(f[2])
			if err != nil {
				t.Fatalf("/proc/net/protocols: %q", l)
			}
			return n
		}
	}
	t.Fatal("/proc/net/protocols: no XDP line")
	return 0
}

// TestXDPCloseUnmapsRings: a port opened and closed twenty times in one
// process leaves no mapping or descriptor behind, and the
// same queue can be bound again at once (with upstream asavie/xdp, the
// rings stayed mapped and the queue busy until the process exited).
func TestXDPCloseUnmapsRings(t *testing.T) {
	privtest.Lab(t)
	id := wireTopo(t)
	c := testConfig("p0")
	var before, open procMem
	inNetns(t, id+"-x", func() {
		p, err := OpenXDP(c)
		if err != nil {
			t.Fatal(err)
		}
		p.Close()
		before, _ = readProcMem(os.Getpid())
		for i := range 20 {
			p, err := OpenXDP(c)
			if err != nil {
				t.Fatalf("open %d: %v", i+1, err)
			}
			if i == 0 {
				open, _ = readProcMem(os.Getpid())
			}
			if err := p.Close(); err != nil {
				t.Fatalf("close %d: %v", i+1, err)
			}
		}
	})
	after, err := readProcMem(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("closed: %+v; open: %+v; after 20 open+close: %+v", before, open, after)
	if open.XSKMaps != before.XSKMaps+4 {
		t.Errorf("an open port should add 4 ring mappings: %+v → %+v", before, open)
	}
	if n := xdpSockets(t, id+"-x"); after.XSKMaps != before.XSKMaps || after.FDs > before.FDs || n != 0 {
		t.Errorf("open+close ×20 leaked: %+v → %+v; XDP sockets in the kernel: %d", before, after, n)
	}
}

// TestXDPReopen: a port whose interface goes down and up, or is deleted
// and re-created (a new ifindex), is closed and re-opened by its worker
// and forwards again, twenty times over, without a mapping or a descriptor
// more; its program is attached to the interface there is,
// and detached at Close.
func TestXDPReopen(t *testing.T) {
	privtest.Lab(t)
	id := wireTopo(t)
	ports := openWire(t, id)
	w, err := NewWorker(0, []Queue{ports[0].Queue(0), ports[1].Queue(0)}, wire{}, 64, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run() }()
	defer func() {
		w.Stop()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
		inNetns(t, id+"-x", func() {
			for _, p := range ports {
				if err := p.Close(); err != nil {
					t.Errorf("close %s: %v", p.Name, err)
				}
			}
		})
		for _, n := range []string{"p0", "p1"} {
			if o := sh(t, "ip", "-n", id+"-x", "link", "show", n); strings.Contains(o, "xdp") {
				t.Errorf("XDP program still attached to %s after Close:\n%s", n, o)
			}
		}
	}()
	ping := func() bool {
		out, _ := exec.Command("ip", "netns", "exec", id+"-a", "ping", "-c", "3", "-i", "0.05", "-W", "1", "10.9.0.2").CombinedOutput()
		return strings.Contains(string(out), " 0% packet loss")
	}
	if !ping() {
		t.Fatal("no forwarding to start with")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ws := []*Worker{w}
	before, _ := readProcMem(os.Getpid())
	peers := []string{"a", "b"}
	addrs := []string{"10.9.0.1/24", "10.9.0.2/24"}
	for i := range 20 {
		pi := i % 2
		name := fmt.Sprintf("p%d", pi)
		recreate := i/2%2 == 1
		if recreate {
			sh(t, "ip", "-n", id+"-x", "link", "del", name)
		} else {
			sh(t, "ip", "-n", id+"-x", "link", "set", name, "down")
		}
		if err := ports[pi].CloseQueues(ctx, pi, ws); err != nil {
			t.Fatalf("flap %d: close %s: %v", i+1, name, err)
		}
		old := ports[pi].Index()
		if recreate {
			peer := id + "-" + peers[pi]
			sh(t, "ip", "-n", id+"-x", "link", "add", "name", name, "type", "veth", "peer", "name", "eth0", "netns", peer)
			sh(t, "ip", "-n", peer, "addr", "add", addrs[pi], "dev", "eth0")
			sh(t, "ip", "-n", peer, "link", "set", "eth0", "up")
			// The new peer has a new MAC: the other end must ask again.
			for _, ns := range peers {
				sh(t, "ip", "-n", id+"-"+ns, "neigh", "flush", "all")
			}
		}
		sh(t, "ip", "-n", id+"-x", "link", "set", name, "up")
		info, err := ports[pi].Reopen(ctx, pi, ws)
		if err != nil {
			t.Fatalf("flap %d: reopen %s: %v", i+1, name, err)
		}
		if recreate != (info.Ifindex != old) || info.OldIfindex != old || ports[pi].Index() != info.Ifindex {
			t.Errorf("flap %d (recreate %v): ifindex %d → %+v", i+1, recreate, old, info)
		}
		// The peer's link and ARP settle: forwarding within 5 s.
		ok := false
		for end := time.Now().Add(5 * time.Second); !ok && time.Now().Before(end); {
			out, _ := exec.Command("ip", "netns", "exec", id+"-a", "ping", "-c", "1", "-W", "0.5", "10.9.0.2").CombinedOutput()
			ok = strings.Contains(string(out), " 0% packet loss")
		}
		if !ok {
			t.Fatalf("flap %d: no forwarding within 5 s of re-opening %s (%+v)", i+1, name, info)
		}
		if o := sh(t, "ip", "-n", id+"-x", "link", "show", name); !strings.Contains(o, "xdp") {
			t.Errorf("flap %d: no program attached to %s:\n%s", i+1, name, o)
		}
	}
	after, _ := readProcMem(os.Getpid())
	t.Logf("before 20 flaps: %+v; after: %+v; p0 %+v; p1 %+v", before, after, ports[0].LinkStats(), ports[1].LinkStats())
	if n := xdpSockets(t, id+"-x"); after.XSKMaps != before.XSKMaps || after.FDs != before.FDs || n != 2 {
		t.Errorf("20 flaps leaked: %+v → %+v; XDP sockets in the kernel: %d, want 2", before, after, n)
	}
	for pi, p := range ports {
		if s := p.LinkStats(); s.Reopens != 10 || s.Closes != 10 || s.Recreated != 5 || s.Failures != 0 {
			t.Errorf("p%d: %+v, want 10 closes and re-opens, 5 re-created", pi, s)
		}
	}
}
