package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/lab"
)

// TestDHCPOperations covers what an operator does around the DHCP proxy:
// an ISP with a dead DHCP server among its servers keeps serving, and a
// subscriber moved to another ISP while ispmux was down keeps its old
// binding across the restart until its next renewal (make-before-break),
// which ends it (it must not keep forwarding to the old ISP until its
// lease runs out).
func TestDHCPOperations(t *testing.T) {
	t.Parallel()
	r := newRig(t, lab.Options{Subscribers: 3, DHCP: true, LeaseTime: time.Minute})
	// Alpha's first DHCP server is an address nobody answers on.
	cfg, err := os.ReadFile(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	one := "dhcp_servers = [" + strconv.Quote(lab.RouterAddr) + "]"
	two := "dhcp_servers = [\"192.0.2.250\", " + strconv.Quote(lab.RouterAddr) + "]"
	if !strings.Contains(string(cfg), one) {
		t.Fatalf("generated config has no %q", one)
	}
	writeCfg := func(s string) {
		t.Helper()
		if err := os.WriteFile(r.cfg, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg(strings.Replace(string(cfg), one, two, 1)) // alpha comes first
	r.start()
	ctx := context.Background()
	s1 := r.sub("s1")
	outer := t // s1's dhclient runs on into the next subtest, which waits for its renewal
	var s1Client *exec.Cmd

	t.Run("a dead first server does not stop service", func(t *testing.T) {
		s1Client = startClient(outer, r.topo.Dhclient(ctx, s1))
		if _, ok := r.waitAddr(s1, 15*time.Second); !ok {
			t.Fatalf("s1 got no address with one of alpha's two servers dead; log:\n%s", r.log.String())
		}
		if b, ok := r.bound(s1.MAC); !ok || b.ISP != "alpha" {
			t.Fatalf("s1 binding %+v %v", b, ok)
		}
		if !r.ping("s1", hostAddr, 3) {
			t.Errorf("s1 cannot reach alpha")
		}
		// dhcp.timeout (4 s) after the first relay: the live server's
		// answer must have settled the transaction, dead one or not.
		time.Sleep(5 * time.Second)
		if r.hasEvent("timeout", s1.MAC) {
			t.Errorf("a timeout was recorded although one server answered")
		}
	})

	t.Run("moved while down: the old binding forwards until the device renews", func(t *testing.T) {
		t.Cleanup(func() { // the last subtest starts s1's dhclient again
			if s1Client != nil {
				killClient(s1Client)
			}
		})
		before, ok := r.bound(s1.MAC)
		if !ok {
			t.Skip("s1 not bound (previous subtest failed)")
		}
		r.stop()
		cur, err := os.ReadFile(r.cfg)
		if err != nil {
			t.Fatal(err)
		}
		old := "mac = " + strconv.Quote(s1.MAC) + "\nisp = \"alpha\""
		if !strings.Contains(string(cur), old) {
			t.Fatalf("config has no %q", old)
		}
		writeCfg(strings.Replace(string(cur), old, "mac = "+strconv.Quote(s1.MAC)+"\nisp = \"beta\"", 1))
		r.start()
		// Make-before-break across the restart, s1 pinned to its
		// access as the lab's subscribers are: the restart changes
		// nothing s1 sees.
		if b, ok := r.bound(s1.MAC); !ok || b.ISP != "alpha" || b.IP != before.IP {
			t.Errorf("s1's binding after the restart: %+v %v; want alpha's binding of %s kept until s1's next message", b, ok, before.IP)
		}
		if r.hasEvent("revoked", s1.MAC) {
			t.Errorf("s1's binding at alpha revoked at the restart")
		}
		if !r.ping("s1", hostAddr, 3) {
			t.Errorf("s1 no longer reaches alpha after the restart")
		}
		// dhclient renews at its T1 (half its client lease, at most
		// 30 s of alpha's 1 min lease, given before the stop): NAKed,
		// the old binding ended first (RELEASE to alpha).
		deadline := time.Now().Add(45 * time.Second)
		for !r.hasEvent("revoked", s1.MAC) && time.Now().Before(deadline) {
			time.Sleep(500 * time.Millisecond)
		}
		if !r.hasEvent("revoked", s1.MAC) {
			t.Fatalf("no revoked event for s1 45 s after the restart: its renewal did not end the old binding; dhcp counters %v; ispmux log:\n%s", r.mustStatus().DHCP, r.log.String())
		}
		if b, ok := r.bound(s1.MAC); ok {
			t.Errorf("s1 still bound after its renewal was NAKed: %+v", b)
		}
		if st := r.mustStatus().DHCP; st["move_nak"] == 0 {
			t.Errorf("the old binding did not end at s1's renewal (move_nak): %v", st)
		}
		if r.ping("s1", hostAddr, 2) {
			t.Errorf("s1 still forwards to its old ISP")
		}
	})

	t.Run("SIGHUP applies subscriber changes while running", func(t *testing.T) {
		s2, s3 := r.sub("s2"), r.sub("s3")
		startClient(t, r.topo.Udhcpc(ctx, s2))
		if _, ok := r.waitAddr(s2, 15*time.Second); !ok {
			t.Fatalf("s2 got no address; log:\n%s", r.log.String())
		}
		if !r.ping("s2", hostAddr, 2) {
			t.Fatal("s2 cannot reach beta")
		}
		// s2 blocked; s3 becomes a static customer of beta.
		cur, err := os.ReadFile(r.cfg)
		if err != nil {
			t.Fatal(err)
		}
		c := string(cur)
		for _, e := range []struct{ old, new string }{
			{"mac = " + strconv.Quote(s2.MAC) + "\n", "mac = " + strconv.Quote(s2.MAC) + "\nblocked = true\n"},
			{"mac = " + strconv.Quote(s3.MAC) + "\n", "mac = " + strconv.Quote(s3.MAC) + "\nip = \"100.64.0.150\"\n"},
		} {
			if !strings.Contains(c, e.old) {
				t.Fatalf("config has no %q", e.old)
			}
			c = strings.Replace(c, e.old, e.new, 1)
		}
		writeCfg(c)
		if err := r.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(3 * time.Second)
		for !strings.Contains(r.log.String(), `msg=reloaded`) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(r.log.String(), `msg=reloaded`) {
			t.Fatalf("no reload logged after SIGHUP; log:\n%s", lastLines(r.log.String(), 20))
		}
		if _, ok := r.bound(s2.MAC); ok {
			t.Errorf("s2 still bound after being blocked")
		}
		if !r.hasEvent("revoked", s2.MAC) {
			t.Errorf("no revoked event for s2")
		}
		if r.ping("s2", hostAddr, 2) {
			t.Errorf("blocked s2 still forwards")
		}
		for _, a := range [][]string{
			{"ip", "addr", "add", "100.64.0.150/24", "dev", s3.If},
			{"ip", "route", "replace", "default", "via", lab.Gateway},
		} {
			if out, err := r.run(s3.NS, a...); err != nil {
				t.Fatalf("%v: %s", a, out)
			}
		}
		if !r.ping("s3", hostAddr, 3) {
			t.Errorf("s3, made static by the reload, cannot reach beta")
		}
		if b, ok := r.bound(s3.MAC); !ok || !b.Static || b.IP != "100.64.0.150" {
			t.Errorf("s3 binding %+v %v, want static 100.64.0.150", b, ok)
		}
		if !r.hasEvent("bound", s3.MAC) {
			t.Errorf("no bound event for s3's static binding")
		}
		// A broken file is refused and changes nothing.
		writeCfg(c + "\n[[subscriber]]\nmac = \"nonsense\"\n")
		_ = r.cmd.Process.Signal(syscall.SIGHUP)
		time.Sleep(500 * time.Millisecond)
		if !strings.Contains(r.log.String(), "reload refused") {
			t.Errorf("a bad config on SIGHUP was not reported; log:\n%s", lastLines(r.log.String(), 10))
		}
		if !r.ping("s3", hostAddr, 2) {
			t.Errorf("a refused reload broke forwarding")
		}
		// ispmux ctl reload (the unit's ExecReload) waits for the reload
		// and says what it did: exit 1 and the error at its line for
		// the broken file, exit 0 once the file is fixed. systemctl
		// reload's kill -HUP succeeded either way.
		sock := filepath.Join(r.dir, "state", appliance.SocketName)
		out, err := exec.Command(binPath, "ctl", "--socket", sock, "reload").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "REFUSED") || !strings.Contains(string(out), r.cfg+":") ||
			!strings.Contains(string(out), "subscriber[") || !strings.Contains(string(out), ".mac") {
			t.Errorf("ctl reload of a broken file: %v, %q; want exit 1, REFUSED and the error at its file:line: key", err, out)
		}
		writeCfg(c)
		if out, err := exec.Command(binPath, "ctl", "--socket", sock, "reload").CombinedOutput(); err != nil || !strings.Contains(string(out), "reload: applied at") {
			t.Errorf("ctl reload of the fixed file: %v, %q; want exit 0, applied", err, out)
		}
		if st := r.mustStatus(); st.ReloadRefused != "" {
			t.Errorf("status after ctl reload of the fixed file: refused %q", st.ReloadRefused)
		}
	})

	t.Run("INFORM is answered as the ISP", func(t *testing.T) {
		// s3 (static 100.64.0.150 since the reload, known to beta's Kea)
		// asks for its configuration. Kea sends the ACK straight to
		// ciaddr; ispmux must answer as the server the subscriber knows.
		s3 := r.sub("s3")
		if _, ok := r.bound(s3.MAC); !ok {
			t.Skip("s3 not bound (previous subtest failed)")
		}
		src, _ := net.ParseMAC(s3.MAC)
		dst, _ := net.ParseMAC(r.topo.Appliance.Access[0].MAC)
		inform, err := dhcpv4.New(dhcpv4.WithHwAddr(src), dhcpv4.WithMessageType(dhcpv4.MessageTypeInform),
			dhcpv4.WithClientIP(net.IPv4(100, 64, 0, 150)))
		if err != nil {
			t.Fatal(err)
		}
		eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(100, 64, 0, 150).To4(), DstIP: net.IPv4(100, 64, 0, 1).To4()}
		udp := &layers.UDP{SrcPort: 68, DstPort: 67}
		_ = udp.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload(inform.ToBytes())); err != nil {
			t.Fatal(err)
		}
		stop := r.capture(s3)
		sendRaw(t, s3.NS, s3.If, [][]byte{buf.Bytes()})
		time.Sleep(time.Second)
		var acks []*dhcpv4.DHCPv4
		for _, m := range stop() {
			if m.OpCode == dhcpv4.OpcodeBootReply && m.TransactionID == inform.TransactionID {
				acks = append(acks, m)
			}
		}
		if len(acks) != 1 || acks[0].MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("s3 got %v, want one ACK to its INFORM; dhcp counters %v", acks, r.mustStatus().DHCP)
		}
		if !acks[0].ServerIdentifier().Equal(net.IPv4(100, 64, 0, 1)) || acks[0].Options.Has(dhcpv4.OptionRelayAgentInformation) {
			t.Errorf("INFORM ACK with server id %v, option 82 %v: want ispmux's 100.64.0.1 and none",
				acks[0].ServerIdentifier(), acks[0].Options.Has(dhcpv4.OptionRelayAgentInformation))
		}
		if st := r.mustStatus().DHCP; st["ack_inform"] == 0 {
			t.Errorf("the INFORM ACK did not go through the proxy: %v", st)
		}
	})

	t.Run("a dead ISP DHCP server is named in the timeout event", func(t *testing.T) {
		// beta's Kea stops; its router answers port unreachable. s1 is
		// registered at beta since the second subtest.
		if r.killInNS(r.ns("ispb"), "kea-dhcp4", syscall.SIGTERM) == 0 {
			t.Fatal("no Kea running at beta")
		}
		time.Sleep(200 * time.Millisecond)
		startClient(t, r.topo.Dhclient(ctx, s1))
		deadline := time.Now().Add(15 * time.Second)
		found := false
		for !found && time.Now().Before(deadline) {
			for _, e := range r.events() {
				if e.Kind == "timeout" && e.MAC == s1.MAC && strings.Contains(e.Reason, "port unreachable") {
					found = true
				}
			}
			time.Sleep(250 * time.Millisecond)
		}
		if !found {
			t.Errorf("no timeout event naming the unreachable server; events %+v", r.events())
		}
	})
}
