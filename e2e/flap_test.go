package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ispmux/ispmux/lab"
)

// Link flaps (issue 12): an access or uplink interface that goes down and
// up, or is deleted and re-created (a new ifindex), forwards again without
// a restart, the other ports never stop, and twenty flaps in a row leave
// ispmux's mappings, descriptors and the kernel's AF_XDP sockets as they
// were.

// FlapsEnv sets the flaps per port and kind (default 20).
const FlapsEnv = "ISPMUX_FLAPS"

// FlapReportEnv names a file the flap test writes its figures to (JSON).
const FlapReportEnv = "ISPMUX_FLAP_REPORT"

// prober pings a host from a namespace every 10 ms for as long as it runs
// and records when each reply came (ping -D: the kernel's receive time).
type prober struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	at   []time.Time
	done chan struct{}
}

func startProber(t *testing.T, name, ns, host string) *prober {
	t.Helper()
	p := &prober{name: name, done: make(chan struct{})}
	p.cmd = exec.Command("ip", "netns", "exec", ns, "ping", "-D", "-n", "-i", "0.01", "-W", "1", host)
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			l := sc.Text()
			if !strings.HasPrefix(l, "[") || !strings.Contains(l, " bytes from ") {
				continue
			}
			ts, err := strconv.ParseFloat(l[1:strings.IndexByte(l, ']')], 64)
			if err != nil {
				continue
			}
			at := time.Unix(0, int64(ts*1e9))
			p.mu.Lock()
			p.at = append(p.at, at)
			p.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	t.Cleanup(p.stop)
	return p
}

func (p *prober) stop() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
	_ = p.cmd.Wait()
}

// firstAfter is the first reply at or after t (false if none yet).
func (p *prober) firstAfter(t time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.at) - 1; i >= 0; i-- {
		if p.at[i].Before(t) {
			if i+1 < len(p.at) {
				return p.at[i+1], true
			}
			return time.Time{}, false
		}
	}
	if len(p.at) > 0 {
		return p.at[0], true
	}
	return time.Time{}, false
}

// maxGap is the longest time without a reply between from and to (the
// edges count: no reply at all is to-from).
func (p *prober) maxGap(from, to time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	last, gap := from, time.Duration(0)
	for _, a := range p.at {
		if a.Before(from) {
			continue
		}
		if a.After(to) {
			break
		}
		gap = max(gap, a.Sub(last))
		last = a
	}
	return max(gap, to.Sub(last))
}

// replies counts the replies between from and to.
func (p *prober) replies(from, to time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, a := range p.at {
		if !a.Before(from) && !a.After(to) {
			n++
		}
	}
	return n
}

// ispmuxMem is what /proc says about the ispmux process and the kernel's
// AF_XDP sockets in its namespace.
type ispmuxMem struct {
	Maps       int `json:"maps"`        // mappings (/proc/PID/maps)
	SocketMaps int `json:"socket_maps"` // of them, of a socket: AF_XDP rings
	FDs        int `json:"fds"`
	RSSAnonKB  int `json:"rss_anon_kb"` // after a GC (SIGUSR1, gcEnv)
	XDPSockets int `json:"xdp_sockets"` // the kernel's count in the namespace (/proc/net/protocols)
}

// gcEnv makes ispmux collect garbage and return it to the kernel on
// SIGUSR1 (bench/scale_gc.go), so that its RssAnon can be compared.
const gcEnv = "ISPMUX_BENCH_GC_ON_USR1"

// readIspmuxMem reads the figures after a GC in ispmux, three times 50 ms
// apart, keeping the smallest of each (a descriptor or mapping of a call
// in flight is not a leak).
func readIspmuxMem(pid int, ns string) (ispmuxMem, error) {
	_ = syscall.Kill(pid, syscall.SIGUSR1)
	time.Sleep(300 * time.Millisecond)
	var best ispmuxMem
	for k := range 3 {
		m, err := readIspmuxMemOnce(pid, ns)
		if err != nil {
			return m, err
		}
		if k == 0 {
			best = m
		}
		best.Maps, best.SocketMaps, best.FDs = min(best.Maps, m.Maps), min(best.SocketMaps, m.SocketMaps), min(best.FDs, m.FDs)
		best.RSSAnonKB, best.XDPSockets = min(best.RSSAnonKB, m.RSSAnonKB), min(best.XDPSockets, m.XDPSockets)
		time.Sleep(50 * time.Millisecond)
	}
	return best, nil
}

func readIspmuxMemOnce(pid int, ns string) (ispmuxMem, error) {
	var m ispmuxMem
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return m, err
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		m.Maps++
		if f := strings.Fields(l); len(f) >= 6 && strings.HasPrefix(f[5], "socket:") {
			m.SocketMaps++
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
		if v, ok := strings.CutPrefix(l, "RssAnon:"); ok {
			m.RSSAnonKB, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	out, err := exec.Command("ip", "netns", "exec", ns, "cat", "/proc/net/protocols").Output()
	if err != nil {
		return m, err
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[0] == "XDP" {
			m.XDPSockets, _ = strconv.Atoi(f[2])
		}
	}
	return m, nil
}

// flapSeries is one port and kind of flap, repeated.
type flapSeries struct {
	Port  string `json:"port"`
	Role  string `json:"role"` // access or uplink
	Kind  string `json:"kind"` // down-up or delete-recreate
	Flaps int    `json:"flaps"`
	// Recovery: from the link up again (the last command of the flap
	// returned) to the first reply of a ping through the port (every
	// 10 ms).
	Recovery durStats `json:"link_up_to_forwarding"`
	// The other ports' probe: its longest time without a reply during
	// the series' flaps, and its replies lost.
	OtherProbe  string    `json:"other_probe"`
	OtherMaxGap float64   `json:"other_max_gap_ms"`
	Before      ispmuxMem `json:"before"`
	After       ispmuxMem `json:"after"`
	// From ctl status after the series.
	LinkFlaps      uint64 `json:"link_flaps"`
	Reopens        uint64 `json:"reopens"`
	ReopenFailures uint64 `json:"reopen_failures"`
}

type flapReport struct {
	runInfo
	Series []flapSeries `json:"series"`
}

// linkMAC reads an interface's MAC.
func linkMAC(t *testing.T, ns, ifname string) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-j", "link", "show", "dev", ifname).Output()
	if err != nil {
		t.Fatalf("ip -n %s link show %s: %v", ns, ifname, err)
	}
	var ls []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal(out, &ls); err != nil || len(ls) != 1 {
		t.Fatalf("ip -n %s link show %s: %v %s", ns, ifname, err, out)
	}
	return ls[0].Address
}

// flapPort is a port of the lab and how to take it away and bring it
// back.
type flapPort struct {
	role      string
	iface     lab.Iface
	peerMAC   string
	afterPeer [][]string // `ip -n PEERNS` commands that configure a re-created peer, once up
	gro       bool       // the lab runs the fast path: a re-created peer gets GRO on (lab.Options.FastPath)
}

func sh2(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// down takes the port's interface away: set down, or deleted (the veth,
// both ends).
func (fp *flapPort) down(t *testing.T, kind string) {
	if kind == "down-up" {
		sh2(t, "ip", "-n", fp.iface.NS, "link", "set", fp.iface.Name, "down")
		return
	}
	sh2(t, "ip", "-n", fp.iface.NS, "link", "del", fp.iface.Name)
}

// up brings it back: set up, or re-created as the lab made it (same names
// and MACs, offloads off, the peer's addresses, routes or bridge).
func (fp *flapPort) up(t *testing.T, kind string) {
	i := fp.iface
	if kind == "down-up" {
		sh2(t, "ip", "-n", i.NS, "link", "set", i.Name, "up")
		return
	}
	sh2(t, "ip", "link", "add", "name", i.Name, "address", i.MAC, "mtu", "1500", "netns", i.NS,
		"type", "veth", "peer", "name", i.Peer, "address", fp.peerMAC, "mtu", "1500", "netns", i.PeerNS)
	for _, e := range [][2]string{{i.NS, i.Name}, {i.PeerNS, i.Peer}} {
		sh2(t, "ip", "netns", "exec", e[0], "ethtool", "-K", e[1], "tx", "off",
			"txvlan", "off", "tx-vlan-stag-hw-insert", "off", "rxvlan", "off", "rx-vlan-stag-hw-parse", "off")
	}
	if fp.gro {
		sh2(t, "ip", "netns", "exec", i.PeerNS, "ethtool", "-K", i.Peer, "gro", "on")
	}
	// The far end is ready (up, configured) before ispmux's end comes
	// up: the link is up when the last command returns.
	sh2(t, "ip", "-n", i.PeerNS, "link", "set", i.Peer, "up")
	for _, c := range fp.afterPeer {
		sh2(t, append([]string{"ip", "-n", i.PeerNS}, c...)...)
	}
	sh2(t, "ip", "-n", i.NS, "link", "set", i.Name, "up")
}

// TestLinkFlap flaps an access port and an uplink, twenty times each way
// (set down and up; deleted and re-created), while s1 pings alpha's host
// through both (acc0 → upa) and a subscriber on the other access port
// pings beta's host (acc1 → upb): s1 forwards again within seconds of
// every flap, the other probe never stops, and ispmux's mappings,
// descriptors and the kernel's AF_XDP sockets are the same after each
// series as before.
func TestLinkFlap(t *testing.T) {
	t.Parallel()
	flaps := 20
	if v := os.Getenv(FlapsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive count", FlapsEnv, v)
		}
		flaps = n
	}
	r := newRig(t, lab.Options{Subscribers: 3, Generator: true, TrafficSubscribers: 2})
	r.env = append(r.env, gcEnv+"=1")
	r.start()
	pid := r.cmd.Process.Pid // ip netns exec execs ispmux
	start := time.Now()

	// The generator's namespace as t2 (beta) on acc1: the other port's
	// probe.
	t2 := r.topo.TrafficSubscribers(2)[1]
	g := r.topo.Generator
	for _, c := range [][]string{
		{"link", "set", g.If, "down"},
		{"link", "set", g.If, "address", t2.MAC},
		{"link", "set", g.If, "up"},
		{"addr", "add", t2.IP + "/16", "dev", g.If},
		{"route", "add", lab.Gateway, "dev", g.If},
		{"route", "add", "default", "via", lab.Gateway, "dev", g.If},
	} {
		sh2(t, append([]string{"ip", "-n", g.NS}, c...)...)
	}
	s1 := startProber(t, "s1 (acc0 → upa, alpha)", r.ns("s1"), hostAddr)
	other := startProber(t, "t2 (acc1 → upb, beta)", g.NS, hostAddr)
	deadline := time.Now().Add(15 * time.Second)
	for {
		now := time.Now()
		if s1.replies(now.Add(-time.Second), now) > 10 && other.replies(now.Add(-time.Second), now) > 10 {
			break
		}
		if now.After(deadline) {
			t.Fatalf("probes do not get replies before the flaps; ispmux log:\n%s", lastLines(r.log.String(), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}

	isp := r.topo.ISPs[0]
	ports := []*flapPort{
		{role: "access", iface: r.topo.Appliance.Access[0], afterPeer: [][]string{{"link", "set", "dev", "up0", "master", "br0"}}},
		{role: "uplink", iface: r.topo.Appliance.Uplinks[0], afterPeer: [][]string{
			{"addr", "add", isp.RouterAddr + "/24", "dev", isp.RouterIf},
			{"route", "add", isp.SubscriberNet, "via", "192.0.2.2", "dev", isp.RouterIf},
			{"route", "add", lab.TrafficNet, "via", "192.0.2.2", "dev", isp.RouterIf},
		}},
	}
	for _, fp := range ports {
		fp.peerMAC = linkMAC(t, fp.iface.PeerNS, fp.iface.Peer)
		fp.gro = r.topo.FastPath
	}
	rep := &flapReport{}
	for _, fp := range ports {
		for _, kind := range []string{"down-up", "delete-recreate"} {
			s := r.flapSeries(t, fp, kind, flaps, pid, s1, other)
			rep.Series = append(rep.Series, s)
			t.Logf("%s %s ×%d: link up → forwarding p50 %.0f ms, max %.0f ms; other probe's longest gap %.0f ms; maps %d → %d, socket maps %d → %d, fds %d → %d, XDP sockets %d → %d, RssAnon after GC %d → %d kB; status: %d flaps, %d re-opens, %d failed",
				fp.iface.Name, kind, flaps, s.Recovery.P50MS, s.Recovery.MaxMS, s.OtherMaxGap,
				s.Before.Maps, s.After.Maps, s.Before.SocketMaps, s.After.SocketMaps, s.Before.FDs, s.After.FDs,
				s.Before.XDPSockets, s.After.XDPSockets, s.Before.RSSAnonKB, s.After.RSSAnonKB, s.LinkFlaps, s.Reopens, s.ReopenFailures)
		}
	}
	if n := strings.Count(r.log.String(), "port re-opened"); n < 4*flaps {
		t.Errorf("ispmux logged %d re-opens, want %d", n, 4*flaps)
	}
	if strings.Contains(r.log.String(), "panic") {
		t.Errorf("ispmux log has a panic:\n%s", r.log.String())
	}
	rep.runInfo = newRunInfo(start)
	if path := os.Getenv(FlapReportEnv); path != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// flapSeries flaps fp n times the way kind says and measures.
func (r *rig) flapSeries(t *testing.T, fp *flapPort, kind string, n, pid int, probe, other *prober) flapSeries {
	t.Helper()
	s := flapSeries{Port: fp.iface.Name, Role: fp.role, Kind: kind, Flaps: n, OtherProbe: other.name}
	var err error
	if s.Before, err = readIspmuxMem(pid, r.topo.Appliance.NS); err != nil {
		t.Fatal(err)
	}
	before := r.portStatus(t, fp.iface.Name)
	var rec []time.Duration
	var gap time.Duration
	for i := 1; i <= n; i++ {
		downAt := time.Now()
		fp.down(t, kind)
		time.Sleep(300 * time.Millisecond)
		fp.up(t, kind)
		upAt := time.Now()
		var back time.Time
		for end := upAt.Add(15 * time.Second); ; {
			if a, ok := probe.firstAfter(upAt); ok {
				back = a
				break
			}
			if time.Now().After(end) {
				t.Fatalf("%s %s flap %d: %s gets no reply within 15 s of the link coming back; ispmux log:\n%s",
					fp.iface.Name, kind, i, probe.name, lastLines(r.log.String(), 30))
			}
			time.Sleep(5 * time.Millisecond)
		}
		rec = append(rec, back.Sub(upAt))
		time.Sleep(200 * time.Millisecond) // settled: the other probe's window ends here
		gap = max(gap, other.maxGap(downAt, time.Now()))
	}
	s.Recovery = statsOf(rec)
	s.OtherMaxGap = float64(gap.Microseconds()) / 1000
	// The kernel releases a closed socket's pool a little later.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if s.After, err = readIspmuxMem(pid, r.topo.Appliance.NS); err != nil {
			t.Fatal(err)
		}
		if s.After.XDPSockets == s.Before.XDPSockets || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	after := r.portStatus(t, fp.iface.Name)
	s.LinkFlaps, s.Reopens, s.ReopenFailures = after.LinkFlaps-before.LinkFlaps, after.Reopens-before.Reopens, after.ReopenFailures-before.ReopenFailures
	if s.After.SocketMaps != s.Before.SocketMaps || s.After.XDPSockets != s.Before.XDPSockets || s.After.FDs != s.Before.FDs {
		t.Errorf("%s %s ×%d: mappings or sockets leaked: %+v → %+v", fp.iface.Name, kind, n, s.Before, s.After)
	}
	// A UMEM left behind is 8 MB a flap (ConfigFrames × 2048).
	if grew := s.After.RSSAnonKB - s.Before.RSSAnonKB; grew > 16<<10 {
		t.Errorf("%s %s ×%d: RssAnon after GC grew %d kB", fp.iface.Name, kind, n, grew)
	}
	if s.LinkFlaps != uint64(n) || s.Reopens != uint64(n) || after.Link != "up" {
		t.Errorf("%s %s ×%d: status says %d flaps, %d re-opens, link %q (want %d, %d, up)", fp.iface.Name, kind, n, s.LinkFlaps, s.Reopens, after.Link, n, n)
	}
	if gap > time.Second {
		t.Errorf("%s %s: %s went %v without a reply: another port stopped", fp.iface.Name, kind, other.name, gap)
	}
	return s
}

// portStatus is port name's entry in ctl status.
func (r *rig) portStatus(t *testing.T, name string) ctlsockPort {
	t.Helper()
	for _, p := range r.mustStatus().Ports {
		if p.Name == name {
			return ctlsockPort{Link: p.Link, LinkFlaps: p.LinkFlaps, Reopens: p.Reopens, ReopenFailures: p.ReopenFailures}
		}
	}
	t.Fatalf("no port %s in status", name)
	return ctlsockPort{}
}

type ctlsockPort struct {
	Link                               string
	LinkFlaps, Reopens, ReopenFailures uint64
}

// TestLinkFlapPortal: the captive portal's link (a veth ispmux makes, its
// far end in the portal's own namespace) is a port too. Set down and up,
// it is re-opened; deleted (both ends go), ispmux makes it again, far end
// configured as at start, and re-opens it. Either way the walled garden's
// next hop (the portal's namespace) answers again through it.
func TestLinkFlapPortal(t *testing.T) {
	t.Parallel()
	r := newRig(t, lab.Options{Subscribers: 1, DHCP: true, Portal: true})
	p := r.launch(binPath)
	t.Cleanup(func() {
		if err := p.term(); err != nil {
			t.Error(err)
		}
	})
	if _, err := r.waitReady(p, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	const link = "ispmux-portal"
	reachable := func(since time.Time) (time.Duration, bool) {
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			if st, err := r.status(); err == nil && st.Portal != nil && st.Portal.NextHop == "reachable" {
				return time.Since(since), true
			}
		}
		return 0, false
	}
	withdrawn := func() {
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			if st, err := r.status(); err == nil && st.Portal != nil && st.Portal.NextHop != "reachable" {
				return
			}
		}
		t.Fatalf("the garden's next hop stays reachable with its link away; log:\n%s", lastLines(p.log.String(), 20))
	}
	app := r.topo.Appliance.NS
	for _, kind := range []string{"down-up", "delete"} {
		var rec []time.Duration
		for i := 1; i <= 5; i++ {
			var back time.Time
			if kind == "down-up" {
				sh2(t, "ip", "-n", app, "link", "set", link, "down")
				withdrawn()
				sh2(t, "ip", "-n", app, "link", "set", link, "up")
				back = time.Now()
			} else {
				back = time.Now()
				sh2(t, "ip", "-n", app, "link", "del", link)
			}
			d, ok := reachable(back)
			if !ok {
				t.Fatalf("portal link %s %d: the garden's next hop not reachable again within 10 s; log:\n%s", kind, i, lastLines(p.log.String(), 30))
			}
			rec = append(rec, d)
			time.Sleep(200 * time.Millisecond)
		}
		st := statsOf(rec)
		t.Logf("portal link %s ×5: back → next hop reachable p50 %.0f ms, max %.0f ms", kind, st.P50MS, st.MaxMS)
	}
	ps := r.portStatus(t, link)
	if ps.LinkFlaps != 10 || ps.Reopens != 10 || ps.Link != "up" {
		t.Errorf("portal link status: %+v, want 10 flaps, 10 re-opens, up", ps)
	}
	if n := strings.Count(p.log.String(), "portal link re-created"); n < 5 {
		t.Errorf("ispmux re-created the portal link %d times, want 5", n)
	}
}
