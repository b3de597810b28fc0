package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/privtest"
	"github.com/ispmux/ispmux/lab"
)

// iscConfig is an ISC dhcpd (Debian 12 isc-dhcp-server 4.4.3) configuration
// for ISP alpha as docs/ISP-SERVERS.md describes an ISP's server: the
// subscribers' subnet in one shared network with ispmux's relay address
// (giaddr), a pool for the class valid (remote-id or subscriber-id of
// ispmux's Option 82), and dns DNS servers.
func iscConfig(dns []string) string {
	return `ddns-update-style none;
authoritative;
default-lease-time 120;
max-lease-time 120;
option agent.subscriber-id code 6 = text;
class "valid" {
  match if (option agent.remote-id = 02:00:00:00:01:01) or (option agent.subscriber-id = "c-s1");
}
shared-network ispmux {
  subnet 192.0.2.0 netmask 255.255.255.0 { }
  subnet 100.64.0.0 netmask 255.255.255.0 {
    option routers 100.64.0.1;
    option domain-name-servers ` + strings.Join(dns, ", ") + `;
    pool { allow members of "valid"; range 100.64.0.100 100.64.0.199; }
  }
}
`
}

// startISC replaces ISP i's dnsmasq by ISC dhcpd with configuration conf
// and returns dhcpd's log file.
func (r *rig) startISC(t *testing.T, i int, conf string) string {
	t.Helper()
	isp := r.topo.ISPs[i]
	r.killInNS(isp.NS, "dnsmasq", syscall.SIGTERM)
	for deadline := time.Now().Add(5 * time.Second); r.killInNS(isp.NS, "dnsmasq", 0) > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq in %s still running", isp.NS)
		}
	}
	base := filepath.Join(r.dir, "dhcpd-"+isp.Name)
	if err := os.WriteFile(base+".conf", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base+".leases", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(base + ".log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", isp.NS, "dhcpd", "-f", "-d", "-4", "-cf", base+".conf",
		"-lf", base+".leases", "-pf", base+".pid", isp.RouterIf)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait(); f.Close() })
	if !waitLog(base+".log", "Server starting service", 10*time.Second) {
		t.Fatalf("dhcpd did not start:\n%s", tail(base+".log", 30))
	}
	return base + ".log"
}

// TestDHCPISC: ISC dhcpd as alpha's server, with more options than fit the
// 576 bytes dhclient can take (no option 57), which dhcpd then lays out
// with option overload and no END in its full options field. dhclient
// gets its lease with every DNS server, through ispmux; before, ispmux
// dropped dhcpd's OFFER as server_malformed and s1 got nothing.
func TestDHCPISC(t *testing.T) {
	t.Parallel()
	privtest.Lab(t)
	privtest.Tool(t, "dnsmasq")
	privtest.Tool(t, "dhcpd") // Debian's isc-dhcp-server
	r := newRig(t, lab.Options{Subscribers: 5, DHCP: true, ISPServer: lab.ServerDnsmasq})
	r.start()
	var dns []string
	for i := 1; i <= 90; i++ {
		dns = append(dns, fmt.Sprintf("198.51.100.%d", i))
	}
	log := r.startISC(t, 0, iscConfig(dns))
	s1 := r.sub("s1")
	lf, _ := r.topo.DhclientFiles(s1)
	_ = os.Remove(lf)
	startClient(t, r.topo.Dhclient(context.Background(), s1))
	a, ok := r.waitAddr(s1, 15*time.Second)
	if !ok {
		t.Fatalf("s1 got no address from ISC dhcpd (ispmux counters %v); dhcpd log:\n%s", r.mustStatus().DHCP, tail(log, 20))
	}
	if !netip.MustParsePrefix(lab.DHCPSubnet).Contains(a.Addr()) || !r.ping("s1", hostAddr, 3) {
		t.Errorf("s1 has %v: want an address of %s that reaches its ISP", a, lab.DHCPSubnet)
	}
	if !waitLog(lf, "option domain-name-servers "+strings.Join(dns, ",")+";", 5*time.Second) {
		t.Errorf("dhclient's lease lacks dhcpd's %d DNS servers:\n%s", len(dns), tail(lf, 20))
	}
	r.releaseDhclient(t, s1)
	if !waitLog(log, "DHCPRELEASE of "+a.Addr().String(), 3*time.Second) {
		t.Errorf("dhcpd saw no RELEASE:\n%s", tail(log, 20))
	}
}
