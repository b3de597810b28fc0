package e2e

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/ispmux/ispmux/lab"
)

// TestVLANAccess runs an access port on VLAN 100: a static subscriber's
// tagged frames reach its ISP and the replies come back tagged 100; its
// untagged frames and frames tagged with another VLAN are dropped. The
// subscribers have no VLAN devices (this kernel has no 8021q): they send
// raw tagged frames, and a capture on their link reads the replies.
func TestVLANAccess(t *testing.T) {
	t.Parallel()
	r := newRig(t, lab.Options{Subscribers: 2})
	cfg, err := os.ReadFile(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	acc := "[[access]]\ninterface = \"acc0\"\n"
	if !strings.Contains(string(cfg), acc) {
		t.Fatalf("generated config has no %q", acc)
	}
	tagged := strings.Replace(string(cfg), acc, "[[access]]\nname = \"acc0-v100\"\ninterface = \"acc0\"\nvlan = 100\n", 1)
	tagged = strings.ReplaceAll(tagged, "access = \"acc0\"", "access = \"acc0-v100\"")
	if err := os.WriteFile(r.cfg, []byte(tagged), 0o644); err != nil {
		t.Fatal(err)
	}
	r.start()
	s1 := r.sub("s1")
	src, _ := net.ParseMAC(s1.MAC)
	dst, _ := net.ParseMAC(r.topo.Appliance.Access[0].MAC)
	echo := func(vlan uint16, seq uint16) []byte {
		eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4,
			SrcIP: net.ParseIP(s1.IP).To4(), DstIP: net.ParseIP(hostAddr).To4()}
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 0x4242, Seq: seq}
		ls := []gopacket.SerializableLayer{eth, ip, icmp, gopacket.Payload(bytes.Repeat([]byte{0xab}, 32))}
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
	// replies captures s1's link while send runs and returns the echo
	// replies seen, by VLAN (0: untagged).
	replies := func(send func()) map[uint16]int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", s1.NS, "tcpdump", "-Z", "root", "--immediate-mode",
			"-i", s1.If, "-U", "-w", "-", "icmp[icmptype] == icmp-echoreply or (vlan and icmp[icmptype] == icmp-echoreply)")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for range 50 {
			if strings.Contains(errb.String(), "listening") {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		send()
		time.Sleep(500 * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
		got := map[uint16]int{}
		src := gopacket.NewPacketSource(mustPcap(t, out.Bytes()), layers.LayerTypeEthernet)
		for p := range src.Packets() {
			if ic, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); !ok || ic.Id != 0x4242 {
				continue
			}
			var vlan uint16
			if d, ok := p.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q); ok {
				vlan = d.VLANIdentifier
			}
			got[vlan]++
		}
		return got
	}

	got := replies(func() { sendRaw(t, s1.NS, s1.If, [][]byte{echo(100, 1), echo(100, 2), echo(100, 3)}) })
	if got[100] != 3 || got[0] != 0 {
		t.Errorf("tagged echoes: replies by VLAN %v, want 3 on VLAN 100 and none untagged\n%s", got, lastLines(r.log.String(), 20))
	}
	if b, ok := r.bound(s1.MAC); !ok || b.Access != "acc0-v100" || b.VLAN != 100 {
		t.Errorf("s1's binding %+v %v: want access acc0-v100, VLAN 100", b, ok)
	}
	before := r.drops("acc0", "unknown_interface")
	got = replies(func() { sendRaw(t, s1.NS, s1.If, [][]byte{echo(0, 4), echo(5, 5)}) })
	if len(got) != 0 {
		t.Errorf("untagged and VLAN 5 echoes got replies: %v", got)
	}
	if after := r.drops("acc0", "unknown_interface"); after < before+2 {
		t.Errorf("untagged and VLAN 5 frames not counted as unknown_interface: %d → %d", before, after)
	}
}

// mustPcap reads a pcap stream held in memory.
func mustPcap(t *testing.T, b []byte) *pcapgo.Reader {
	t.Helper()
	rd, err := pcapgo.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("pcap: %v", err)
	}
	return rd
}
