package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/privtest"
	"github.com/ispmux/ispmux/lab"
)

// dhcpcd (Debian package dhcpcd-base) as a subscriber's client: RFC 4361
// client identifier (IAID + DUID), ARP probe then DECLINE on conflict,
// INIT-REBOOT from its stored lease, RELEASE on SIGHUP.

const dhcpcdConf = `# ispmux e2e (e2e): no hooks, IPv4 only
ipv4only
noipv6rs
duid
option rapid_commit
require dhcp_server_identifier
hostname e2e-host
option host_name
`

// dhcpcdCmd runs dhcpcd in sub's namespace in the foreground with private
// /var/lib/dhcpcd (lease, DUID) and /run (pid, control socket), bound in
// the mount namespace ip netns exec makes, so the host's are untouched.
func (r *rig) dhcpcdCmd(sub lab.Sub, extra ...string) *exec.Cmd {
	r.t.Helper()
	base := filepath.Join(r.dir, "dhcpcd-"+sub.Name)
	for _, d := range []string{"lib", "run"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			r.t.Fatal(err)
		}
	}
	conf := filepath.Join(base, "dhcpcd.conf")
	if err := os.WriteFile(conf, []byte(dhcpcdConf), 0o644); err != nil {
		r.t.Fatal(err)
	}
	fg := "-B -d"
	if len(extra) > 0 && extra[0] == "-k" {
		fg = ""
	}
	sh := fmt.Sprintf("mount --bind %s /var/lib/dhcpcd && mount --bind %s /run && exec dhcpcd -f %s -c /bin/true -4 %s %s %s",
		filepath.Join(base, "lib"), filepath.Join(base, "run"), conf, fg, joinArgs(extra), sub.If)
	return exec.Command("ip", "netns", "exec", sub.NS, "sh", "-c", sh)
}

func joinArgs(a []string) string {
	var b bytes.Buffer
	for _, s := range a {
		b.WriteString(s + " ")
	}
	return b.String()
}

// TestDHCPDhcpcd: dhcpcd through ispmux to a real Kea: a lease with an RFC
// 4361 client identifier echoed (RFC 6842) and rapid commit asked for,
// renewals across an ispmux restart, INIT-REBOOT after the client was
// killed, the same address after kill -9 of ispmux and a link flap,
// RELEASE (dhcpcd -k) ending the binding and Kea's lease, and a DECLINE
// after its ARP probe finds the address taken.
func TestDHCPDhcpcd(t *testing.T) {
	t.Parallel()
	privtest.Lab(t)
	privtest.Tool(t, "dhcpcd") // Debian's dhcpcd-base (lab/deps.sh)
	r := newRig(t, lab.Options{Subscribers: 2, DHCP: true, LeaseTime: dhcpLease})
	r.start()
	s1 := r.sub("s1")

	cmd := r.dhcpcdCmd(s1)
	a, out := r.leaseWithRFC4361ID(t, "dhcpcd", s1, cmd)
	// Renewals past a lease, across an ispmux restart.
	r.renewsAcrossRestart(t, s1, a, out)

	// INIT-REBOOT: dhcpcd killed (no release) and started again.
	killClient(cmd)
	stop := r.capture(s1)
	out2 := &syncBuffer{}
	cmd2 := r.dhcpcdCmd(s1)
	cmd2.Stdout, cmd2.Stderr = out2, out2
	startClientKeepOut(t, cmd2)
	time.Sleep(6 * time.Second)
	msgs := stop()
	for _, m := range msgs {
		t.Logf("reboot: %s %s ciaddr %v yiaddr %v req %v sid %v", m.OpCode, m.MessageType(), m.ClientIPAddr, m.YourIPAddr, m.RequestedIPAddress(), m.ServerIdentifier())
	}
	if b, ok := r.bound(s1.MAC); !ok || b.IP != a.Addr().String() {
		t.Errorf("binding after INIT-REBOOT: %+v %v\n%s", b, ok, out2.String())
	}

	// ispmux killed (-9) and restarted, then a carrier flap: dhcpcd
	// INIT-REBOOTs against the restored binding.
	r.kill9()
	r.start()
	r.run(s1.NS, "ip", "link", "set", "eth0", "down")
	time.Sleep(500 * time.Millisecond)
	r.run(s1.NS, "ip", "link", "set", "eth0", "up")
	if _, ok := r.waitAddr(s1, 10*time.Second); !ok {
		t.Errorf("no address after a carrier flap\n%s", out2.String())
	}
	time.Sleep(2 * time.Second)
	if b, ok := r.bound(s1.MAC); !ok || b.IP != a.Addr().String() || !r.ping("s1", hostAddr, 3) {
		t.Errorf("after kill -9 and a carrier flap: %+v %v\n%s", b, ok, out2.String())
	}

	// RELEASE (dhcpcd -k: release, deconfigure, exit).
	if o, err := r.dhcpcdCmd(s1, "-k").CombinedOutput(); err != nil {
		t.Errorf("dhcpcd -k: %v %s", err, o)
	}
	done := make(chan struct{})
	go func() { _ = cmd2.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Errorf("dhcpcd did not exit on -k")
	}
	time.Sleep(500 * time.Millisecond)
	if _, ok := r.bound(s1.MAC); ok {
		t.Errorf("s1 still bound after dhcpcd released\n%s", out2.String())
	}
	if !r.hasEvent("released", s1.MAC) {
		t.Errorf("no released event")
	}
	t.Logf("dhcpcd log:\n%s", out2.String())
	if ls, err := r.topo.ISPs[0].Leases(context.Background()); err == nil {
		for _, l := range ls {
			if l.HWAddr == s1.MAC && l.Address == a.Addr() && l.Active(time.Now()) {
				t.Errorf("Kea still holds s1's released lease: %+v", l)
			}
		}
	}

	// DECLINE: s2's address answers ARP (another host on its segment,
	// faked from the access bridge) while dhcpcd probes it.
	s2 := r.sub("s2")
	stopARP := make(chan struct{})
	arpDone := make(chan struct{})
	go func() {
		defer close(arpDone)
		var frames [][]byte
		for i := 100; i < 120; i++ {
			frames = append(frames, arpReply(net.IPv4(100, 64, 0, byte(i)).To4()))
		}
		for {
			select {
			case <-stopARP:
				return
			case <-time.After(100 * time.Millisecond):
			}
			sendRaw(t, r.topo.AccessNS, "p2", frames)
		}
	}()
	stop = r.capture(s2)
	out3 := &syncBuffer{}
	cmd3 := r.dhcpcdCmd(s2)
	cmd3.Stdout, cmd3.Stderr = out3, out3
	startClientKeepOut(t, cmd3)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && !bytes.Contains([]byte(out3.String()), []byte("DECLINE")) {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second)
	close(stopARP)
	<-arpDone
	msgs = stop()
	for _, m := range msgs {
		t.Logf("decline: %s %s ciaddr %v yiaddr %v req %v sid %v cid %x", m.OpCode, m.MessageType(), m.ClientIPAddr, m.YourIPAddr, m.RequestedIPAddress(), m.ServerIdentifier(), m.Options.Get(dhcpv4.OptionClientIdentifier))
	}
	t.Logf("dhcpcd s2 log:\n%s", out3.String())
	if !r.hasEvent("declined", s2.MAC) {
		t.Errorf("no declined event for s2")
	}
	if b, ok := r.bound(s2.MAC); ok && b.IP == "100.64.0.100" {
		t.Errorf("s2 still bound to its declined address: %+v", b)
	}
	if ls, err := r.topo.ISPs[1].Leases(context.Background()); err == nil {
		for _, l := range ls {
			t.Logf("beta kea lease: %v %s state %d", l.Address, l.HWAddr, l.State)
		}
	}
	// And it gets another address after (dhcpcd waits 10 s).
	if a2, ok := r.waitAddr(s2, 25*time.Second); !ok {
		t.Errorf("s2 got no address after its DECLINE\n%s\n%s", out3.String(), r.log.String())
	} else {
		t.Logf("s2 after DECLINE: %v", a2)
	}
}

func arpReply(ip net.IP) []byte {
	other := net.HardwareAddr{2, 0, 0, 0, 0x0e, 0xee}
	eth := &layers.Ethernet{SrcMAC: other, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPReply, SourceHwAddress: other, SourceProtAddress: ip, DstHwAddress: layers.EthernetBroadcast, DstProtAddress: ip}
	buf := gopacket.NewSerializeBuffer()
	_ = gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, eth, arp)
	return buf.Bytes()
}

func optCodes(m *dhcpv4.DHCPv4) []uint8 {
	var c []uint8
	for k := range m.Options {
		c = append(c, k)
	}
	return c
}

// leaseWithRFC4361ID starts client cmd (name: "dhcpcd", ...) on sub and
// waits for its first lease: every answer echoes the RFC 4361 client
// identifier the client sent (RFC 6842), and sub reaches alpha. It
// returns the address and the client's output.
func (r *rig) leaseWithRFC4361ID(t *testing.T, name string, sub lab.Sub, cmd *exec.Cmd) (netip.Prefix, *syncBuffer) {
	t.Helper()
	stop := r.capture(sub)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	startClientKeepOut(t, cmd)
	a, ok := r.waitAddr(sub, 20*time.Second)
	msgs := stop()
	if !ok {
		t.Fatalf("%s got no address\n%s:\n%s\nispmux:\n%s", name, name, out.String(), r.log.String())
	}
	t.Logf("%s (%s) got %v", sub.Name, name, a)
	var cid []byte
	for _, m := range msgs {
		t.Logf("%s %s xid %s ciaddr %v yiaddr %v opts %v", m.OpCode, m.MessageType(), m.TransactionID, m.ClientIPAddr, m.YourIPAddr, optCodes(m))
		if m.OpCode == dhcpv4.OpcodeBootRequest {
			cid = m.Options.Get(dhcpv4.OptionClientIdentifier)
		}
	}
	if len(cid) == 0 || cid[0] != 255 {
		t.Fatalf("%s sent client id %x, want an RFC 4361 one", name, cid)
	}
	for _, m := range msgs {
		if m.OpCode == dhcpv4.OpcodeBootReply && !bytes.Equal(m.Options.Get(dhcpv4.OptionClientIdentifier), cid) {
			t.Errorf("%s echoes client id %x, want %x (RFC 6842)", m.MessageType(), m.Options.Get(dhcpv4.OptionClientIdentifier), cid)
		}
	}
	if !r.ping(sub.Name, hostAddr, 3) {
		t.Errorf("%s cannot reach alpha", sub.Name)
	}
	return a, out
}

// renewsAcrossRestart restarts ispmux and waits past a lease: sub's
// client (its output out) renewed, its binding still at a, and it
// reaches alpha again. The restart can show on the subscriber's link as a
// carrier loss (seen in CI: dhcpcd logged it, dropped its address and got
// it back by a rebind and 3 ARP probes, ~6 s): forwarding must resume
// once it has.
func (r *rig) renewsAcrossRestart(t *testing.T, sub lab.Sub, a netip.Prefix, out *syncBuffer) {
	t.Helper()
	r.stop()
	r.start()
	time.Sleep(dhcpLease + 3*time.Second)
	if b, ok := r.bound(sub.MAC); !ok || b.IP != a.Addr().String() {
		t.Errorf("binding after renewals and a restart: %+v %v\n%s", b, ok, out.String())
	}
	if !eventually(15*time.Second, func() bool { return r.ping(sub.Name, hostAddr, 1) }) {
		t.Errorf("%s cannot reach alpha after renewals\n%s", sub.Name, out.String())
	}
}

func startClientKeepOut(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killClient(cmd) })
}

// TestUdhcpcClientOptions: udhcpc with the options the other tests do not
// use (ARP check, release on exit, extra requested options, hostname,
// FQDN, vendor class, a lease time asked for, a user class) gets a lease,
// forwards, and releases on SIGUSR2.
func TestUdhcpcClientOptions(t *testing.T) {
	t.Parallel()
	privtest.Lab(t)
	r := newRig(t, lab.Options{Subscribers: 2, DHCP: true, LeaseTime: dhcpLease})
	r.start()
	s1 := r.sub("s1")
	stop := r.capture(s1)
	c := r.topo.Udhcpc(context.Background(), s1, "-a", "-R", "-O", "121", "-O", "42", "-x", "hostname:e2e", "-F", "e2e.example",
		"-V", "e2evendor", "-x", "lease:3600", "-x", "0x4d:'\"e2euc\"'")
	ub := &syncBuffer{}
	c.Stdout, c.Stderr = ub, ub
	startClientKeepOut(t, c)
	a, ok := r.waitAddr(s1, 20*time.Second)
	msgs := stop()
	for _, m := range msgs {
		t.Logf("%s %s yiaddr %v opts %v lease %v", m.OpCode, m.MessageType(), m.YourIPAddr, optCodes(m), m.IPAddressLeaseTime(0))
	}
	if !ok {
		t.Fatalf("udhcpc got no address\n%s\n%s", ub.String(), r.log.String())
	}
	if !r.ping("s1", hostAddr, 3) {
		t.Errorf("s1 cannot reach alpha")
	}
	// USR2: release.
	_ = c.Process.Signal(syscall.SIGUSR2)
	time.Sleep(time.Second)
	if _, ok := r.bound(s1.MAC); ok {
		t.Errorf("s1 still bound after udhcpc released %v\n%s", a, ub.String())
	}
}
