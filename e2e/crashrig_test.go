package e2e

// The crash tests' machinery (crash_test.go, kill9_test.go): ispmux
// processes started and killed by the test, the failpoints build, the
// subscribers' DHCP clients, and the three views of a subscriber's lease
// (the client's, ispmux's, the ISP's Kea) with their classification.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"

	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/lab"
)

// failpointBinary builds, once per test binary, ispmux with the failpoints
// build tag, next to the ordinary one, and checks that it is one: it must
// refuse an unknown ISPMUX_FAILPOINT (a binary without the tag ignores it).
var (
	fpOnce sync.Once
	fpPath string
	fpErr  error
)

func failpointBinary(t *testing.T) string {
	t.Helper()
	fpOnce.Do(func() {
		fpPath = filepath.Join(filepath.Dir(binPath), "ispmux-failpoints")
		out, err := exec.Command("go", "build", "-tags", "failpoints", "-o", fpPath, "../cmd/ispmux").CombinedOutput()
		if err != nil {
			fpErr = fmt.Errorf("build ispmux -tags failpoints: %v\n%s", err, out)
			return
		}
		cmd := exec.Command(fpPath, "help")
		cmd.Env = append(cleanEnv(), "ISPMUX_FAILPOINT=no/such-point")
		out, err = cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "no such failpoint") {
			fpErr = fmt.Errorf("%s ignores ISPMUX_FAILPOINT: not built with failpoints? (%v) %s", fpPath, err, out)
		}
	})
	if fpErr != nil {
		t.Fatal(fpErr)
	}
	return fpPath
}

// cleanEnv is the test's environment without ISPMUX_FAILPOINT.
func cleanEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "ISPMUX_FAILPOINT=") {
			env = append(env, e)
		}
	}
	return env
}

// proc is one ispmux process the test started.
type proc struct {
	cmd     *exec.Cmd
	log     *syncBuffer
	started time.Time
	done    chan struct{}
	err     error     // Wait's, once done
	exit    time.Time // when Wait returned, once done
}

// launch starts bin (ispmux) in the appliance namespace with env added to
// the test's environment; it does not wait for anything. `ip netns exec`
// execs: the process is ispmux itself, and a failpoint's SIGKILL is its
// exit status.
func (r *rig) launch(bin string, env ...string) *proc {
	r.t.Helper()
	p := &proc{log: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command("ip", "netns", "exec", r.topo.Appliance.NS, bin, "run", "-c", r.cfg)
	p.cmd.Env = append(cleanEnv(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); p.exit = time.Now(); close(p.done) }()
	r.log = p.log
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitedAt is when the process exited (now if it runs).
func (p *proc) exitedAt() time.Time {
	if p.exited() {
		return p.exit
	}
	return time.Now()
}

// wait waits up to d for the process to exit.
func (p *proc) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// signal is the signal that ended the process, if one did.
func (p *proc) signal() (syscall.Signal, bool) {
	if !p.exited() || p.cmd.ProcessState == nil {
		return 0, false
	}
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return 0, false
	}
	return ws.Signal(), true
}

// kill9 kills the process (no cleanup: XDP programs stay attached, the
// store is not closed) and waits for it.
func (p *proc) kill9() {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// term stops the process with SIGTERM (a clean exit) within 10 s.
func (p *proc) term() error {
	if p == nil || p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if !p.wait(10 * time.Second) {
		p.kill9()
		return errors.New("ispmux did not exit within 10 s of SIGTERM")
	}
	if p.err != nil {
		return fmt.Errorf("ispmux exit after SIGTERM: %v", p.err)
	}
	return nil
}

// waitReady waits until ispmux answers on its control socket with every
// ISP's next hop resolved; it returns early if the process exits.
func (r *rig) waitReady(p *proc, within time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if p.exited() {
			return 0, fmt.Errorf("ispmux exited (%v) before it was ready; log:\n%s", p.err, lastLines(p.log.String(), 20))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := ctlsock.FetchStatus(ctx, r.sock())
		cancel()
		if err == nil && len(st.ISPs) > 0 {
			ok := true
			for _, i := range st.ISPs {
				ok = ok && i.State == "reachable"
			}
			// The portal lab: the walled garden's uplink (the portal's
			// link) too.
			ok = ok && (st.Portal == nil || st.Portal.NextHop == "reachable")
			if ok {
				return time.Since(p.started), nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, fmt.Errorf("ispmux not ready within %v; log:\n%s", within, lastLines(p.log.String(), 20))
}

func (r *rig) sock() string { return filepath.Join(r.dir, "state", appliance.SocketName) }

// failpointLine is what a failpoint writes before its SIGKILL.
func failpointLine(point string) string { return "failpoint " + point + ": SIGKILL" }

// diedAt checks that p died by SIGKILL at failpoint point (its line in
// the log); it says what happened otherwise.
func diedAt(p *proc, point string) error {
	if !p.exited() {
		return fmt.Errorf("failpoint %s never hit: ispmux still running", point)
	}
	sig, ok := p.signal()
	line := strings.Contains(p.log.String(), failpointLine(point))
	switch {
	case ok && sig == syscall.SIGKILL && line:
		return nil
	case !line:
		return fmt.Errorf("ispmux exited (%v) without the line %q; log:\n%s", p.err, failpointLine(point), lastLines(p.log.String(), 15))
	default:
		return fmt.Errorf("ispmux printed %q but exited with %v", failpointLine(point), p.err)
	}
}

// ---- subscribers' clients ----

// client is one subscriber's DHCP client, as the crash tests drive it.
type client struct {
	sub  lab.Sub
	kind string // "dhclient", "udhcpc", "raw" (hand-built frames from the test)
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	// released: the client let its lease go (and does not want one).
	released bool
	// stamp: each line of out begins with the time it was written (a
	// client whose output has none: udhcpc).
	stamp bool
}

// clientConf is a dhclient.conf for tests: what the lab's asks for, with
// retries every 1-2 s instead of dhclient's 10 s back-off, and a short
// INIT-REBOOT, so that a client recovers soon after ispmux comes back.
const clientConf = `# dhclient.conf of the ispmux crash tests
request subnet-mask, broadcast-address, routers, dhcp-lease-time, dhcp-renewal-time, dhcp-rebinding-time;
initial-interval 1;
backoff-cutoff 2;
reboot 4;
select-timeout 0;
timeout 30;
retry 2;
`

func (r *rig) writeClientConf(extra string) string {
	r.t.Helper()
	p := filepath.Join(r.dir, fmt.Sprintf("dhclient-%d.conf", len(extra)))
	if err := os.WriteFile(p, []byte(clientConf+extra), 0o644); err != nil {
		r.t.Fatal(err)
	}
	return p
}

// startDhclient starts dhclient for sub with conf (writeClientConf).
func (r *rig) startDhclient(sub lab.Sub, conf string) *client {
	c := &client{sub: sub, kind: "dhclient"}
	c.start(r.topo.Dhclient(context.Background(), sub, "-cf", conf))
	return c
}

// startUdhcpc starts busybox udhcpc for sub: discover retries every
// second, and again 1 s after a failed round (never gives up). Its output
// is timestamped (stamp).
func (r *rig) startUdhcpc(sub lab.Sub, extra ...string) *client {
	c := &client{sub: sub, kind: "udhcpc", stamp: true}
	c.start(r.topo.Udhcpc(context.Background(), sub, append([]string{"-T", "1", "-t", "3", "-A", "1"}, extra...)...))
	return c
}

func (c *client) start(cmd *exec.Cmd) {
	c.out = &syncBuffer{}
	c.cmd = cmd
	cmd.Stdout, cmd.Stderr = c.out, c.out
	if c.stamp {
		w := &stampWriter{w: c.out}
		cmd.Stdout, cmd.Stderr = w, w
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.done = make(chan struct{})
	c.released = false
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	done := c.done
	go func() { _ = cmd.Wait(); close(done) }()
}

func (c *client) running() bool {
	if c == nil || c.cmd == nil {
		return false
	}
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// kill stops the client without a word to anyone (SIGKILL to its process
// group): its address stays on the interface.
func (c *client) kill() {
	if !c.running() {
		return
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.done
}

// signal sends sig to the client process.
func (c *client) signal(sig syscall.Signal) {
	if c.running() {
		_ = c.cmd.Process.Signal(sig)
	}
}

// ---- hand-built DHCP frames (rebind, decline, NAK) ----

// clientFrame wraps a DHCP payload from a client: Ethernet from src to dst,
// IPv4 from sip to dip, UDP 68 → 67.
func clientFrame(src, dst net.HardwareAddr, sip, dip net.IP, payload []byte) ([]byte, error) {
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: sip.To4(), DstIP: dip.To4()}
	udp := &layers.UDP{SrcPort: 68, DstPort: 67}
	_ = udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload(payload)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// rawExchange sends frames (back to back) from ifname in namespace ns and,
// when wait > 0, returns the first DHCP reply (BOOTREPLY to UDP 68) with
// transaction ID xid that arrives there within wait (nil if none).
func rawExchange(ns, ifname string, frames [][]byte, xid dhcpv4.TransactionID, wait time.Duration) (*dhcpv4.DHCPv4, error) {
	fd := -1
	err := inNS(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return err
		}
		for _, frame := range frames {
			if err := unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
				return fmt.Errorf("sendto: %w", err)
			}
		}
		return nil
	})
	if fd >= 0 {
		defer unix.Close(fd)
	}
	if err != nil || wait <= 0 {
		return nil, err
	}
	// The socket stays in ns: it is read from any thread.
	deadline := time.Now().Add(wait)
	buf := make([]byte, 2048)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return nil, err
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		p := gopacket.NewPacket(buf[:n], layers.LayerTypeEthernet, gopacket.NoCopy)
		u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if !ok || u.DstPort != 68 {
			continue
		}
		m, err := dhcpv4.FromBytes(u.Payload)
		if err == nil && m.OpCode == dhcpv4.OpcodeBootReply && m.TransactionID == xid {
			return m, nil
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// ---- the three views ----

// subView is one subscriber's lease as each party sees it.
type subView struct {
	Sub string `json:"sub"`
	MAC string `json:"mac"`
	ISP string `json:"isp"`
	// The client: the address on its interface (what it thinks it holds).
	Client netip.Addr `json:"client"`
	// ispmux: its binding (ctl status).
	Ispmux        netip.Addr `json:"ispmux"`
	IspmuxISP     string     `json:"ispmux_isp,omitempty"`
	IspmuxExpires time.Time  `json:"ispmux_expires,omitzero"`
	// The ISP's Kea (lease4-get-all): the lease in force for the MAC, and
	// any other record of it (declined, expired, reclaimed).
	Kea        netip.Addr `json:"kea"`
	KeaExpires time.Time  `json:"kea_expires,omitzero"`
	KeaOther   string     `json:"kea_other,omitempty"`
	// The walled garden (the portal lab), where ispmux is the DHCP
	// server: its onboarding lease of the MAC (ctl status), and the
	// onboarding address the garden forwards for the MAC (a TCP
	// connection from it to the portal's HTTPS port is answered; probed
	// from the client's address, the lease's and any the test saw the
	// subscriber hold).
	Onboarding        netip.Addr `json:"onboarding,omitzero"`
	OnboardingExpires time.Time  `json:"onboarding_expires,omitzero"`
	Garden            netip.Addr `json:"garden,omitzero"`
}

func (v subView) String() string {
	s := func(a netip.Addr) string {
		if !a.IsValid() {
			return "-"
		}
		return a.String()
	}
	out := fmt.Sprintf("%s %s: client %s, ispmux %s", v.Sub, v.MAC, s(v.Client), s(v.Ispmux))
	if v.Ispmux.IsValid() {
		out += fmt.Sprintf(" (%s, expires in %v)", v.IspmuxISP, time.Until(v.IspmuxExpires).Round(time.Second))
	}
	out += fmt.Sprintf(", %s's Kea %s", v.ISP, s(v.Kea))
	if v.Kea.IsValid() {
		out += fmt.Sprintf(" (expires in %v)", time.Until(v.KeaExpires).Round(time.Second))
	}
	if v.KeaOther != "" {
		out += " [" + v.KeaOther + "]"
	}
	if v.Onboarding.IsValid() || v.Garden.IsValid() || onboardingAddr(v.Client) {
		out += fmt.Sprintf("; onboarding: ispmux %s", s(v.Onboarding))
		if v.Onboarding.IsValid() {
			out += fmt.Sprintf(" (expires in %v)", time.Until(v.OnboardingExpires).Round(time.Second))
		}
		out += ", garden forwards " + s(v.Garden)
	}
	return out
}

// onboardingPool is the portal lab's onboarding pool.
var onboardingPool = netip.MustParsePrefix(lab.OnboardingPool)

// onboardingAddr reports whether a is an onboarding address (the portal
// lab's pool).
func onboardingAddr(a netip.Addr) bool { return a.IsValid() && onboardingPool.Contains(a) }

// verdict classifies one subscriber's views.
type verdict struct {
	// Lost: the client holds an address its ISP leased it, and ispmux
	// has no binding for it (the client was ACKed, ispmux forgot). In
	// the walled garden (ispmux the server): the client holds an
	// onboarding address that ispmux does not hold for it or does not
	// forward.
	Lost bool `json:"lost,omitempty"`
	// Phantom: ispmux has a binding the ISP does not hold (freed, given
	// to another, never granted): ispmux forwards for a lease that is
	// not there. In the walled garden: ispmux holds or forwards an
	// onboarding address of the MAC that its client does not hold
	// (released, ended, or never ACKed).
	Phantom bool `json:"phantom,omitempty"`
	// Orphaned: the ISP holds a lease for the subscriber that neither
	// ispmux nor the client uses.
	Orphaned bool `json:"orphaned,omitempty"`
	// StaleClient: the client has an address that neither ispmux nor
	// the ISP has for it (a revoked subscriber, a killed client: allowed
	// where the exchange says so).
	StaleClient bool `json:"stale_client,omitempty"`
}

func (d verdict) bad() bool { return d.Lost || d.Phantom || d.Orphaned }

func (d verdict) String() string {
	var w []string
	for _, x := range []struct {
		on   bool
		name string
	}{{d.Lost, "LOST"}, {d.Phantom, "PHANTOM"}, {d.Orphaned, "ORPHANED"}, {d.StaleClient, "stale client"}} {
		if x.on {
			w = append(w, x.name)
		}
	}
	if len(w) == 0 {
		return "consistent"
	}
	return strings.Join(w, "+")
}

// expiryTolerance: a lease whose end is this close to now is neither
// counted as held nor as missing (ispmux's expiry is computed from the
// ACK's arrival, Kea's from the request's: they differ by milliseconds,
// and each ends it on its own timer).
const expiryTolerance = 2 * time.Second

func classify(v subView, now time.Time) verdict {
	var d verdict
	nearEnd := func(t time.Time) bool { return !t.IsZero() && t.Sub(now).Abs() < expiryTolerance }
	if v.Ispmux.IsValid() && (v.Ispmux != v.Kea || v.IspmuxISP != v.ISP) && !nearEnd(v.IspmuxExpires) {
		d.Phantom = true
	}
	if v.Kea.IsValid() && v.Ispmux != v.Kea && !nearEnd(v.KeaExpires) {
		if v.Client == v.Kea {
			d.Lost = true
		} else {
			d.Orphaned = true
		}
	}
	if v.Client.IsValid() && v.Client != v.Ispmux && v.Client != v.Kea && !onboardingAddr(v.Client) {
		d.StaleClient = true
	}
	// The walled garden: ispmux's onboarding lease is the server's view
	// and the garden's forwarding its own; the client must hold what
	// both hold.
	if onboardingAddr(v.Client) && (v.Client != v.Onboarding || v.Client != v.Garden) && !nearEnd(v.OnboardingExpires) {
		d.Lost = true
	}
	if (v.Onboarding.IsValid() && v.Onboarding != v.Client || v.Garden.IsValid() && v.Garden != v.Client) && !nearEnd(v.OnboardingExpires) {
		d.Phantom = true
	}
	return d
}

// heldAddr is an onboarding address the test saw mac hold: the garden is
// probed for it (a lease that ended must not be forwarded still).
type heldAddr struct {
	mac  string
	addr netip.Addr
}

// views reads the three views of subs: the clients' addresses first, then
// Kea's leases, then ispmux's bindings (and, on the portal lab, its
// onboarding leases, then what the garden forwards: see subView).
func (r *rig) views(subs []lab.Sub, held ...heldAddr) ([]subView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := make([]subView, len(subs))
	for i, s := range subs {
		out[i] = subView{Sub: s.Name, MAC: s.MAC, ISP: s.ISP}
		if p, ok := r.topo.SubAddr(ctx, s); ok {
			out[i].Client = p.Addr()
		}
	}
	now := time.Now()
	kea := map[string][]lab.KeaLease{}
	for i := range r.topo.ISPs {
		isp := &r.topo.ISPs[i]
		ls, err := isp.Leases(ctx)
		if err != nil {
			return nil, fmt.Errorf("Kea of %s: %w", isp.Name, err)
		}
		kea[isp.Name] = ls
	}
	for i := range out {
		v := &out[i]
		for _, l := range kea[v.ISP] {
			if !strings.EqualFold(l.HWAddr, v.MAC) {
				continue
			}
			switch {
			case l.Active(now) || l.State == lab.KeaStateDefault && l.ValidLifetime > 0 && now.Sub(l.Expire) < expiryTolerance:
				// In force, or just ended (see expiryTolerance).
				if !v.Kea.IsValid() || l.Expire.After(v.KeaExpires) {
					v.Kea, v.KeaExpires = l.Address, l.Expire
				}
			case l.State == lab.KeaStateDeclined:
				v.KeaOther += fmt.Sprintf(" %s declined", l.Address)
			default:
				v.KeaOther += fmt.Sprintf(" %s ended (state %d, %v ago)", l.Address, l.State, now.Sub(l.Expire).Round(time.Second))
			}
		}
		v.KeaOther = strings.TrimSpace(v.KeaOther)
	}
	st, err := ctlsock.FetchStatus(ctx, r.sock())
	if err != nil {
		return nil, fmt.Errorf("ispmux status: %w", err)
	}
	for i := range out {
		v := &out[i]
		for _, b := range st.Bindings {
			if !strings.EqualFold(b.MAC, v.MAC) || b.Static {
				continue
			}
			v.Ispmux, _ = netip.ParseAddr(b.IP)
			v.IspmuxISP = b.ISP
			v.IspmuxExpires, _ = time.Parse(time.RFC3339, b.Expires)
		}
		for _, o := range st.Onboarding {
			if strings.EqualFold(o.MAC, v.MAC) {
				v.Onboarding, _ = netip.ParseAddr(o.IP)
				v.OnboardingExpires, _ = time.Parse(time.RFC3339, o.Expires)
			}
		}
	}
	if r.topo.Portal == nil {
		return out, nil
	}
	for i, s := range subs {
		v := &out[i]
		probe := []netip.Addr{v.Client, v.Onboarding}
		for _, h := range held {
			if strings.EqualFold(h.mac, v.MAC) {
				probe = append(probe, h.addr)
			}
		}
		for j, a := range probe {
			if onboardingAddr(a) && !slices.Contains(probe[:j], a) && r.gardenForwards(s, a) {
				v.Garden = a
				break
			}
		}
	}
	return out, nil
}

// gardenForwards reports whether the walled garden forwards for sub from
// address a: a TCP connection from a to the portal's HTTPS port is
// answered within a second (else it was dropped). An address not on sub's
// interface (a lease that ended) is put there for the probe and removed
// after; a route to the portal through the pool's router is added for it.
func (r *rig) gardenForwards(sub lab.Sub, a netip.Addr) bool {
	ip := func(args ...string) error {
		out, err := exec.Command("ip", append([]string{"-n", sub.NS}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	has := false
	if out, err := exec.Command("ip", "-n", sub.NS, "-4", "-o", "addr", "show", "dev", sub.If).Output(); err == nil {
		has = strings.Contains(string(out), " "+a.String()+"/")
	}
	if !has {
		if err := ip("addr", "add", netip.PrefixFrom(a, onboardingPool.Bits()).String(), "dev", sub.If); err != nil {
			r.t.Logf("garden probe: %v", err)
			return false
		}
		defer func() { _ = ip("addr", "del", netip.PrefixFrom(a, onboardingPool.Bits()).String(), "dev", sub.If) }()
	}
	portal := lab.PortalAddr + "/32"
	if err := ip("route", "replace", portal, "via", lab.OnboardingGW, "dev", sub.If, "src", a.String()); err != nil {
		r.t.Logf("garden probe: %v", err)
		return false
	}
	defer func() { _ = ip("route", "del", portal) }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var c net.Conn
	err := inNS(sub.NS, func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: a.AsSlice()}}
		var err error
		c, err = d.DialContext(ctx, "tcp4", net.JoinHostPort(lab.PortalAddr, "443"))
		return err
	})
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// checkViews reads the views of subs until none is lost, phantom or
// orphaned, for up to grace (exchanges still in flight settle), and returns
// the last reading with its verdicts.
func (r *rig) checkViews(subs []lab.Sub, grace time.Duration, held ...heldAddr) ([]subView, []verdict, error) {
	deadline := time.Now().Add(grace)
	for {
		vs, err := r.views(subs, held...)
		if err != nil {
			return nil, nil, err
		}
		now := time.Now()
		ds := make([]verdict, len(vs))
		bad := false
		for i, v := range vs {
			ds[i] = classify(v, now)
			bad = bad || ds[i].bad()
		}
		if !bad || time.Now().After(deadline) {
			return vs, ds, nil
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// wipeKea deletes every lease of every ISP's Kea.
func (r *rig) wipeKea() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range r.topo.ISPs {
		isp := &r.topo.ISPs[i]
		ls, err := isp.Leases(ctx)
		if err != nil {
			return err
		}
		for _, l := range ls {
			if _, err := isp.KeaCommand(ctx, "lease4-del", map[string]string{"ip-address": l.Address.String()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// isp returns the lab ISP named name.
func (r *rig) isp(name string) *lab.ISP {
	for i := range r.topo.ISPs {
		if r.topo.ISPs[i].Name == name {
			return &r.topo.ISPs[i]
		}
	}
	r.t.Fatalf("no ISP %s", name)
	return nil
}

// keaLogOf returns the last n lines of every lab ISP's Kea log that
// name mac (Kea writes a client as "hwtype=1 aa:bb:…"), each prefixed
// with the ISP: what the ISPs did with the subscriber, for the failure
// message of a view that does not add up.
func (r *rig) keaLogOf(mac string, n int) string {
	mac = strings.ToLower(mac)
	var out []string
	for i := range r.topo.ISPs {
		isp := &r.topo.ISPs[i]
		b, err := os.ReadFile(isp.KeaLog)
		if err != nil {
			out = append(out, isp.Name+": "+err.Error())
			continue
		}
		var ls []string
		for l := range strings.SplitSeq(string(b), "\n") {
			if strings.Contains(strings.ToLower(l), mac) {
				ls = append(ls, isp.Name+": "+l)
			}
		}
		out = append(out, ls[max(0, len(ls)-n):]...)
	}
	return strings.Join(out, "\n")
}

// percentile returns the p-th percentile (0..100, nearest rank) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := int(p/100*float64(len(s))+0.999999) - 1
	return s[min(max(k, 0), len(s)-1)]
}

// gitDescribe names the tree the test binary was built from.
// ISPMUX_REPORT_COMMIT names it where there is no git (a tree exported
// with git archive).
func gitDescribe() (commit string, dirty bool) {
	if c := os.Getenv("ISPMUX_REPORT_COMMIT"); c != "" {
		return c, false
	}
	out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown", false
	}
	st, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	return strings.TrimSpace(string(out)), len(bytes.TrimSpace(st)) > 0
}

func execOutput(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	return string(out), err
}
