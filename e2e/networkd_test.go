package e2e

import (
	"context"
	"fmt"
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

// systemd-networkd (Debian package systemd), the DHCP client of most
// modern Linux installs, as a subscriber's client. It runs in the
// subscriber's namespace on a private /run (a tmpfs in the mount namespace
// ip netns exec makes) holding its .network file and state; /sys is
// remounted read-only there, which tells networkd no udev runs (else it
// waits for udev to initialise the link, forever, in a namespace).
const networkdConf = `[Match]
Name=eth0

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no

[DHCPv4]
SendHostname=yes
Hostname=e2e-networkd
`

// networkdPath is where Debian's systemd package puts networkd.
const networkdPath = "/lib/systemd/systemd-networkd"

func (r *rig) networkdCmd(sub lab.Sub) *exec.Cmd {
	r.t.Helper()
	conf := filepath.Join(r.dir, "networkd-"+sub.Name+".network")
	if err := os.WriteFile(conf, []byte(networkdConf), 0o644); err != nil {
		r.t.Fatal(err)
	}
	sh := fmt.Sprintf("mount -t tmpfs tmpfs /run && mount -o remount,ro /sys && mkdir -p /run/systemd/network /run/systemd/netif && "+
		"chown systemd-network:systemd-network /run/systemd/netif && cp %s /run/systemd/network/20-eth0.network && exec %s",
		conf, networkdPath)
	cmd := exec.Command("ip", "netns", "exec", sub.NS, "sh", "-c", sh)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_TARGET=console", "SYSTEMD_LOG_LEVEL=debug")
	return cmd
}

// TestDHCPNetworkd: systemd-networkd through ispmux to a real Kea: a lease
// with its RFC 4361 client identifier (IAID + DUID) echoed and its host
// name recorded by the ISP, traffic, renewals (unicast, at T1) across an
// ispmux restart, and the RELEASE it sends when stopped ending the binding
// and Kea's lease.
func TestDHCPNetworkd(t *testing.T) {
	t.Parallel()
	privtest.Lab(t)
	if st, err := os.Stat(networkdPath); err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("%s missing (Debian package systemd, lab/deps.sh): %v", networkdPath, err)
	}
	r := newRig(t, lab.Options{Subscribers: 1, DHCP: true, LeaseTime: dhcpLease})
	r.start()
	s1 := r.sub("s1")

	cmd := r.networkdCmd(s1)
	a, out := r.leaseWithRFC4361ID(t, "networkd", s1, cmd)
	// Renewals past a lease, across an ispmux restart.
	r.renewsAcrossRestart(t, s1, a, out)
	if !strings.Contains(out.String(), "DHCPv4 client: REQUEST (renewing)") {
		t.Errorf("networkd never renewed\n%s", out.String())
	}
	if ls, err := r.topo.ISPs[0].Leases(context.Background()); err != nil {
		t.Errorf("Kea's leases: %v", err)
	} else {
		for _, l := range ls {
			if l.HWAddr == s1.MAC && l.Hostname != "e2e-networkd" {
				t.Errorf("Kea's lease names host %q, want networkd's e2e-networkd", l.Hostname)
			}
		}
	}

	// Stopped (SIGTERM), networkd releases its lease.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Errorf("networkd did not exit on SIGTERM")
	}
	if !eventually(5*time.Second, func() bool { _, ok := r.bound(s1.MAC); return !ok }) {
		t.Errorf("s1 still bound after networkd stopped\n%s", out.String())
	}
	if !r.hasEvent("released", s1.MAC) {
		t.Errorf("no released event")
	}
	if ls, err := r.topo.ISPs[0].Leases(context.Background()); err != nil {
		t.Errorf("Kea's leases: %v", err)
	} else {
		for _, l := range ls {
			if l.HWAddr == s1.MAC && l.Address == a.Addr() && l.Active(time.Now()) {
				t.Errorf("Kea still holds s1's released lease: %+v", l)
			}
		}
	}
}
