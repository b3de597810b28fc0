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
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/appliance"
	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/lab"
)

const dhcpLease = 10 * time.Second

func (r *rig) sub(name string) lab.Sub {
	for _, s := range r.topo.Subscribers {
		if s.Name == name {
			return s
		}
	}
	r.t.Fatalf("no subscriber %s", name)
	return lab.Sub{}
}

// waitAddr waits for a DHCP client to configure an address on sub.
func (r *rig) waitAddr(sub lab.Sub, within time.Duration) (netip.Prefix, bool) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if p, ok := r.topo.SubAddr(context.Background(), sub); ok {
			return p, true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return netip.Prefix{}, false
}

// startClient starts cmd and stops it (SIGKILL, no release) when the test
// ends.
func startClient(t *testing.T, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killClient(cmd) })
	return cmd
}

func killClient(cmd *exec.Cmd) {
	if cmd.Process == nil || cmd.ProcessState != nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
}

func (r *rig) events() []ctlsock.EventStatus {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	evs, err := ctlsock.FetchEvents(ctx, filepath.Join(r.dir, "state", appliance.SocketName), 0)
	if err != nil {
		r.t.Fatal(err)
	}
	return evs
}

func (r *rig) hasEvent(kind, mac string) bool {
	for _, e := range r.events() {
		if e.Kind == kind && e.MAC == mac {
			return true
		}
	}
	return false
}

func (r *rig) bound(mac string) (ctlsock.BindingStatus, bool) {
	for _, b := range r.mustStatus().Bindings {
		if b.MAC == mac {
			return b, true
		}
	}
	return ctlsock.BindingStatus{}, false
}

// kill9 kills ispmux without letting it clean up.
func (r *rig) kill9() {
	r.t.Helper()
	// ip netns exec execs ispmux: the process is ispmux itself.
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// capture runs tcpdump on sub's interface until the returned stop is
// called; stop returns every DHCP message seen.
func (r *rig) capture(sub lab.Sub) (stop func() []*dhcpv4.DHCPv4) {
	r.t.Helper()
	file := filepath.Join(r.dir, "cap-"+sub.Name+".pcap")
	cmd := exec.Command("ip", "netns", "exec", sub.NS, "tcpdump", "-Z", "root", "--immediate-mode", "-i", sub.If, "-U", "-w", file, "udp port 67 or udp port 68")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	for range 50 { // until tcpdump listens
		if strings.Contains(errb.String(), "listening") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return func() []*dhcpv4.DHCPv4 {
		time.Sleep(200 * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
		f, err := os.Open(file)
		if err != nil {
			r.t.Fatal(err)
		}
		defer f.Close()
		rd, err := pcapgo.NewReader(f)
		if err != nil {
			r.t.Fatalf("pcap: %v (%s)", err, errb.String())
		}
		var msgs []*dhcpv4.DHCPv4
		n := 0
		defer func() {
			r.t.Logf("capture on %s: %d frames, %d DHCP messages (%s)", sub.Name, n, len(msgs), strings.TrimSpace(errb.String()))
		}()
		for {
			data, _, err := rd.ReadPacketData()
			if err != nil {
				break
			}
			n++
			p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
			if u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
				if m, err := dhcpv4.FromBytes(u.Payload); err == nil {
					msgs = append(msgs, m)
				}
			}
		}
		return msgs
	}
}

// TestDHCP is issue 3 end to end: real dhclient and udhcpc subscribers get
// leases from their chosen ISP's real Kea through ispmux, which relays with
// Option 82 and answers as the server.
func TestDHCP(t *testing.T) {
	t.Parallel()
	r := newRig(t, lab.Options{Subscribers: 5, DHCP: true, LeaseTime: dhcpLease})
	r.start()
	ctx := context.Background()
	s1, s2, s3, s4, s5 := r.sub("s1"), r.sub("s2"), r.sub("s3"), r.sub("s4"), r.sub("s5")
	pool := netip.MustParsePrefix("100.64.0.0/24")

	t.Run("dhclient lease via ispmux, no option 82 on the subscriber side", func(t *testing.T) {
		stop := r.capture(s1)
		startClient(t, r.topo.Dhclient(ctx, s1))
		a, ok := r.waitAddr(s1, 15*time.Second)
		msgs := stop()
		if !ok {
			t.Fatalf("s1 got no address; ispmux log:\n%s", r.log.String())
		}
		if !pool.Contains(a.Addr()) {
			t.Errorf("s1 address %v not from the ISP's pool", a)
		}
		var offers, acks int
		for _, m := range msgs {
			if m.Options.Has(dhcpv4.OptionRelayAgentInformation) {
				t.Errorf("option 82 seen on the subscriber side in a %s", m.MessageType())
			}
			if m.OpCode == dhcpv4.OpcodeBootReply {
				if !m.ServerIdentifier().Equal(net.IPv4(100, 64, 0, 1)) {
					t.Errorf("%s with server id %v, want ispmux's 100.64.0.1", m.MessageType(), m.ServerIdentifier())
				}
				switch m.MessageType() {
				case dhcpv4.MessageTypeOffer:
					offers++
				case dhcpv4.MessageTypeAck:
					acks++
				}
			}
		}
		if offers == 0 || acks == 0 {
			t.Errorf("capture saw %d OFFERs and %d ACKs (the capture must see the exchange)", offers, acks)
		}
		if !r.ping("s1", hostAddr, 3) {
			t.Errorf("s1 cannot reach its ISP after the ACK")
		}
		// Kea stored our relay agent information.
		leases, err := lab.KeaLeases(r.topo.ISPs[0].KeaLeaseFile)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, l := range lab.ActiveKeaLeases(leases, time.Now()) {
			if l.HWAddr != s1.MAC {
				continue
			}
			found = true
			mac, _ := net.ParseMAC(s1.MAC)
			if !bytes.Equal(l.RemoteID, mac) || string(l.SubscriberID) != s1.CustomerID || string(l.CircuitID) != "acc0:0" {
				t.Errorf("Kea stored remote-id %x subscriber-id %q circuit-id %q", l.RemoteID, l.SubscriberID, l.CircuitID)
			}
			if l.Address != a.Addr() {
				t.Errorf("Kea leased %v, s1 has %v", l.Address, a)
			}
		}
		if !found {
			t.Errorf("no active Kea lease for s1 at alpha")
		}
		if !r.hasEvent("bound", s1.MAC) {
			t.Errorf("no bound event for s1")
		}
	})

	t.Run("udhcpc lease from the other ISP", func(t *testing.T) {
		startClient(t, r.topo.Udhcpc(ctx, s2))
		if _, ok := r.waitAddr(s2, 15*time.Second); !ok {
			t.Fatalf("s2 (udhcpc, beta) got no address; ispmux log:\n%s", r.log.String())
		}
		if !r.ping("s2", hostAddr, 3) {
			t.Errorf("s2 cannot reach beta after the ACK")
		}
		if b, ok := r.bound(s2.MAC); !ok || b.ISP != "beta" || b.ServerID != lab.RouterAddr || b.Expires == "" {
			t.Errorf("s2 binding %+v %v: want beta, server %s, an expiry", b, ok, lab.RouterAddr)
		}
	})

	t.Run("renewal through ispmux", func(t *testing.T) {
		cmd := startClient(t, r.topo.Dhclient(ctx, s3))
		a, ok := r.waitAddr(s3, 15*time.Second)
		if !ok {
			t.Fatalf("s3 got no address")
		}
		// Past a whole lease: only renewals keep it.
		time.Sleep(dhcpLease + 3*time.Second)
		if b, ok := r.bound(s3.MAC); !ok || b.IP != a.Addr().String() {
			t.Fatalf("s3 binding lost after a lease time: %+v %v", b, ok)
		}
		if !r.ping("s3", hostAddr, 3) {
			t.Errorf("s3 cannot reach beta after renewing")
		}
		st := r.mustStatus()
		if st.DHCP["relayed_request"] < 2 || st.DHCP["ack"] < 2 {
			t.Errorf("no renewal went through ispmux: %v", st.DHCP)
		}
		killClient(cmd) // no release: s3 stays bound for the restart test
	})

	t.Run("kill -9 and restart keep bound subscribers forwarding", func(t *testing.T) {
		if _, ok := r.bound(s3.MAC); !ok {
			t.Skip("s3 not bound (renewal subtest failed)")
		}
		r.kill9()
		r.start()
		relayedBefore := r.mustStatus().DHCP["relayed_request"] + r.mustStatus().DHCP["relayed_discover"]
		if !r.ping("s3", hostAddr, 3) {
			t.Errorf("s3 does not forward after kill -9 and restart\n%s", r.log.String())
		}
		if relayedBefore != 0 {
			t.Errorf("the restart needed DHCP exchanges (%d relayed)", relayedBefore)
		}
	})

	t.Run("unregistered and refused subscribers", func(t *testing.T) {
		startClient(t, r.topo.Dhclient(ctx, s5))
		startClient(t, r.topo.Dhclient(ctx, s4))
		// ispmux waits dhcp.timeout (4 s) for the ISP from the first
		// DISCOVER; dhclient may wait a few seconds before sending it.
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) && !(r.hasEvent("timeout", s4.MAC) && r.hasEvent("unknown", s5.MAC)) {
			time.Sleep(250 * time.Millisecond)
		}
		if a, ok := r.topo.SubAddr(ctx, s5); ok {
			t.Errorf("unregistered s5 got %v", a)
		}
		if a, ok := r.topo.SubAddr(ctx, s4); ok {
			t.Errorf("s4, refused by its ISP, got %v", a)
		}
		if !r.hasEvent("unknown", s5.MAC) {
			t.Errorf("no event for the unregistered subscriber")
		}
		if !r.hasEvent("timeout", s4.MAC) {
			t.Errorf("no rejection event for the subscriber the ISP refused")
		}
	})

	t.Run("bad DHCP frames dropped by reason", func(t *testing.T) {
		src, _ := net.ParseMAC(s5.MAC)
		other, _ := net.ParseMAC("02:00:00:00:01:99")
		good, _ := dhcpv4.NewDiscovery(src)
		gb := good.ToBytes()
		overrun := append(append([]byte(nil), gb[:240]...), 12, 200, 'x', 255)
		mk := func(mods ...dhcpv4.Modifier) []byte {
			m, _ := dhcpv4.NewDiscovery(src, mods...)
			return m.ToBytes()
		}
		payloads := map[string][]byte{
			"malformed":             gb[:120],
			"malformed#overrun":     overrun,
			"option_overload":       mk(dhcpv4.WithGeneric(dhcpv4.OptionOptionOverload, []byte{3})),
			"bootreply_from_client": mk(dhcpv4.WithReply(good)),
			"client_option82":       mk(dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(2), []byte("spoof"))))),
			"client_giaddr":         mk(dhcpv4.WithGatewayIP(net.IPv4(10, 9, 9, 9))),
		}
		before := r.mustStatus().DHCP
		var frames [][]byte
		for _, p := range payloads {
			frames = append(frames, dhcpFrame(t, src, p))
		}
		chaddr, _ := dhcpv4.NewDiscovery(other)
		frames = append(frames, dhcpFrame(t, src, chaddr.ToBytes()))
		sendRaw(t, s5.NS, s5.If, frames)
		time.Sleep(300 * time.Millisecond)
		after := r.mustStatus().DHCP
		for k := range payloads {
			k = strings.Split(k, "#")[0]
			if after[k] <= before[k] {
				t.Errorf("%s not counted: %d → %d", k, before[k], after[k])
			}
		}
		if after["chaddr_mismatch"] <= before["chaddr_mismatch"] {
			t.Errorf("chaddr_mismatch not counted")
		}
		// A DORA right after succeeds (s1 again, after a release).
		if err := r.topo.DhclientRelease(ctx, s1); err != nil {
			t.Fatal(err)
		}
		startClient(t, r.topo.Dhclient(ctx, s1))
		if _, ok := r.waitAddr(s1, 15*time.Second); !ok {
			t.Errorf("no DORA after the bad frames")
		}
	})

	t.Run("release stops traffic", func(t *testing.T) {
		if err := r.topo.DhclientRelease(ctx, s1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if _, ok := r.bound(s1.MAC); ok {
			t.Errorf("s1 still bound after RELEASE")
		}
		if !r.hasEvent("released", s1.MAC) {
			t.Errorf("no released event")
		}
		// The address is gone from s1 too; put it back by hand: its
		// frames must now be dropped.
		if out, err := r.run(s1.NS, "ip", "addr", "add", "100.64.0.150/24", "dev", "eth0"); err != nil {
			t.Fatal(out)
		}
		r.run(s1.NS, "ip", "route", "replace", "default", "via", "100.64.0.1")
		if r.ping("s1", hostAddr, 2) {
			t.Errorf("s1 reaches its ISP after RELEASE")
		}
		r.run(s1.NS, "ip", "addr", "flush", "dev", "eth0")
	})

	t.Run("lease expiry stops traffic", func(t *testing.T) {
		// s2's udhcpc is gone without a release (killed when its
		// subtest ended; again here, to be sure): its lease runs out.
		r.killInNS(s2.NS, "udhcpc", syscall.SIGKILL)
		time.Sleep(dhcpLease + 2*time.Second)
		if _, ok := r.bound(s2.MAC); ok {
			t.Fatalf("s2 still bound after its lease expired")
		}
		if r.ping("s2", hostAddr, 2) {
			t.Errorf("s2 reaches its ISP after its lease expired")
		}
		if !r.hasEvent("expired", s2.MAC) {
			t.Errorf("no expired event for s2")
		}
	})
}

// killInNS sends sig to the processes named name in network namespace ns,
// and only those (pkill would match every namespace's: other labs' too),
// and returns how many there were.
func (r *rig) killInNS(ns, name string, sig syscall.Signal) int {
	r.t.Helper()
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		r.t.Fatalf("ip netns pids %s: %v", ns, err)
	}
	n := 0
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		// argv[0] or, for a busybox applet, argv[1].
		cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(string(cl), "\x00")
		if filepath.Base(args[0]) == name || len(args) > 1 && filepath.Base(args[0]) == "busybox" && args[1] == name {
			_ = syscall.Kill(pid, sig)
			n++
		}
	}
	return n
}

// dhcpFrame wraps a DHCP payload as a client's broadcast from src.
func dhcpFrame(t *testing.T, src net.HardwareAddr, payload []byte) []byte {
	return taggedDHCPFrame(t, src, 0, payload)
}

// taggedDHCPFrame is a client's broadcast DHCP message payload from src,
// tagged with vlan (0: untagged, dhcpFrame).
func taggedDHCPFrame(t *testing.T, src net.HardwareAddr, vlan uint16, payload []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4zero.To4(), DstIP: net.IPv4bcast.To4()}
	udp := &layers.UDP{SrcPort: 68, DstPort: 67}
	_ = udp.SetNetworkLayerForChecksum(ip)
	ls := []gopacket.SerializableLayer{eth, ip, udp, gopacket.Payload(payload)}
	if vlan != 0 {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append([]gopacket.SerializableLayer{eth, &layers.Dot1Q{VLANIdentifier: vlan, Type: layers.EthernetTypeIPv4}}, ls[1:]...)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
