package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/privtest"
	"github.com/ispmux/ispmux/lab"
)

// TestDHCPDnsmasq runs the main DHCP exchanges of TestDHCP against dnsmasq
// as every ISP's server (lab.ServerDnsmasq, configuration from
// Topology.DnsmasqConfig, the one docs/ISP-SERVERS.md shows): DORA for a
// valid subscriber with dhclient and with udhcpc, silence for one the ISP
// does not know (validated by Option 82), RELEASE reaching the server.
// Then what the document claims about dnsmasq: subscriber-id alone and
// remote-id alone each validate a subscriber; without shared-network
// dnsmasq is silent to ispmux's relayed requests, and ispmux's
// link_selection makes it answer again.
func TestDHCPDnsmasq(t *testing.T) {
	t.Parallel()
	privtest.Lab(t)
	privtest.Tool(t, "dnsmasq") // Debian's dnsmasq-base (lab/deps.sh)
	r := newRig(t, lab.Options{Subscribers: 5, DHCP: true, ISPServer: lab.ServerDnsmasq})
	r.start()
	ctx := context.Background()
	s1, s2, s4, s5 := r.sub("s1"), r.sub("s2"), r.sub("s4"), r.sub("s5")
	alpha, beta := r.topo.Dnsmasq(0), r.topo.Dnsmasq(1)
	pool := netip.MustParsePrefix(lab.DHCPSubnet)

	// dora runs dhclient on s1 from a clean client state and returns
	// the address it got (false: none within 15 s).
	dora := func(t *testing.T) (netip.Addr, bool) {
		t.Helper()
		lf, _ := r.topo.DhclientFiles(s1)
		_ = os.Remove(lf) // no INIT-REBOOT of an earlier address: a DISCOVER
		startClient(t, r.topo.Dhclient(ctx, s1))
		a, ok := r.waitAddr(s1, 15*time.Second)
		return a.Addr(), ok
	}

	t.Run("dhclient DORA", func(t *testing.T) {
		a, ok := dora(t)
		if !ok {
			t.Fatalf("s1 got no address; ispmux log:\n%s\ndnsmasq log:\n%s", r.log.String(), tail(alpha.Log, 30))
		}
		if !pool.Contains(a) {
			t.Errorf("s1 address %v not from the ISP's subnet", a)
		}
		if !r.ping("s1", hostAddr, 3) {
			t.Errorf("s1 cannot reach its ISP after the ACK")
		}
		if b, ok := r.bound(s1.MAC); !ok || b.ISP != "alpha" || b.IP != a.String() || b.ServerID != lab.RouterAddr {
			t.Errorf("s1 binding %+v %v: want alpha, %v, server %s", b, ok, a, lab.RouterAddr)
		}
		if !waitDnsmasqLease(t, alpha.Leases, s1.MAC, a) {
			t.Errorf("dnsmasq of alpha has no lease of %v for s1", a)
		}
		// The tag comes from Option 82 only: ispmux's subscriber-id or
		// remote-id matched.
		if !waitLog(alpha.Log, "tags: "+lab.DnsmasqValidTag, 2*time.Second) || !waitLog(alpha.Log, "DHCPACK(eth0) "+a.String()+" "+s1.MAC, 2*time.Second) {
			t.Errorf("dnsmasq's log shows no tagged ACK for s1:\n%s", tail(alpha.Log, 30))
		}
	})

	t.Run("udhcpc DORA from the other ISP", func(t *testing.T) {
		startClient(t, r.topo.Udhcpc(ctx, s2))
		a, ok := r.waitAddr(s2, 15*time.Second)
		if !ok {
			t.Fatalf("s2 (udhcpc, beta) got no address; ispmux log:\n%s\ndnsmasq log:\n%s", r.log.String(), tail(beta.Log, 30))
		}
		if !r.ping("s2", hostAddr, 3) {
			t.Errorf("s2 cannot reach beta after the ACK")
		}
		if b, ok := r.bound(s2.MAC); !ok || b.ISP != "beta" || b.ServerID != lab.RouterAddr {
			t.Errorf("s2 binding %+v %v: want beta, server %s", b, ok, lab.RouterAddr)
		}
		if !waitDnsmasqLease(t, beta.Leases, s2.MAC, a.Addr()) {
			t.Errorf("dnsmasq of beta has no lease of %v for s2", a)
		}
	})

	t.Run("refused and unregistered subscribers", func(t *testing.T) {
		startClient(t, r.topo.Dhclient(ctx, s4))
		startClient(t, r.topo.Dhclient(ctx, s5))
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) && !(r.hasEvent("timeout", s4.MAC) && r.hasEvent("unknown", s5.MAC)) {
			time.Sleep(250 * time.Millisecond)
		}
		if a, ok := r.topo.SubAddr(ctx, s4); ok {
			t.Errorf("s4, unknown to alpha's dnsmasq, got %v", a)
		}
		if a, ok := r.topo.SubAddr(ctx, s5); ok {
			t.Errorf("unregistered s5 got %v", a)
		}
		if !r.hasEvent("timeout", s4.MAC) {
			t.Errorf("no timeout event for s4")
		}
		if !r.hasEvent("unknown", s5.MAC) {
			t.Errorf("no unknown event for s5")
		}
		// dnsmasq saw s4's DISCOVER (relayed with Option 82) and
		// ignored it; s5's never left ispmux.
		if !waitLog(alpha.Log, "DHCPDISCOVER(eth0) "+s4.MAC+" ignored", time.Second) {
			t.Errorf("alpha's dnsmasq did not ignore s4:\n%s", tail(alpha.Log, 30))
		}
		for _, f := range []string{alpha.Log, beta.Log} {
			if b, _ := os.ReadFile(f); strings.Contains(string(b), s5.MAC) {
				t.Errorf("%s mentions the unregistered s5", f)
			}
		}
	})

	t.Run("RELEASE reaches dnsmasq", func(t *testing.T) {
		b, ok := r.bound(s1.MAC)
		if !ok {
			t.Skip("s1 not bound (DORA subtest failed)")
		}
		r.releaseDhclient(t, s1)
		if !waitLog(alpha.Log, "DHCPRELEASE(eth0) "+b.IP+" "+s1.MAC, 3*time.Second) {
			t.Errorf("no DHCPRELEASE in alpha's dnsmasq log:\n%s", tail(alpha.Log, 30))
		}
		a := netip.MustParseAddr(b.IP)
		deadline := time.Now().Add(2 * time.Second)
		for hasDnsmasqLease(t, alpha.Leases, s1.MAC, a) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if hasDnsmasqLease(t, alpha.Leases, s1.MAC, a) {
			t.Errorf("alpha's dnsmasq still leases %v to s1 after RELEASE", a)
		}
		if _, ok := r.bound(s1.MAC); ok {
			t.Errorf("s1 still bound in ispmux after RELEASE")
		}
		if !r.hasEvent("released", s1.MAC) {
			t.Errorf("no released event")
		}
	})

	release := func(t *testing.T) {
		t.Helper()
		r.releaseDhclient(t, s1)
	}
	for _, c := range []struct {
		name, drop string
	}{
		{"subscriber-id alone validates", "dhcp-remoteid="},
		{"remote-id alone validates", "dhcp-subscrid="},
	} {
		t.Run(c.name, func(t *testing.T) {
			r.restartDnsmasq(0, c.drop)
			a, ok := dora(t)
			if !ok {
				t.Fatalf("s1 got no address from a dnsmasq without %s lines:\n%s", c.drop, tail(alpha.Log, 30))
			}
			if !waitDnsmasqLease(t, alpha.Leases, s1.MAC, a) {
				t.Errorf("no dnsmasq lease of %v for s1", a)
			}
			release(t)
		})
	}

	t.Run("without shared-network silent, link_selection answers", func(t *testing.T) {
		r.restartDnsmasq(0, "shared-network=")
		before := len(r.events())
		lf, _ := r.topo.DhclientFiles(s1)
		_ = os.Remove(lf)
		cmd := startClient(t, r.topo.Dhclient(ctx, s1))
		deadline := time.Now().Add(15 * time.Second)
		timedOut := func() bool {
			for _, e := range r.events()[before:] {
				if e.Kind == "timeout" && e.MAC == s1.MAC {
					return true
				}
			}
			return false
		}
		for time.Now().Before(deadline) && !timedOut() {
			time.Sleep(250 * time.Millisecond)
		}
		if a, ok := r.topo.SubAddr(ctx, s1); ok {
			t.Errorf("s1 got %v from a dnsmasq without shared-network", a)
		}
		if !timedOut() {
			t.Errorf("no timeout event for s1 against a dnsmasq without shared-network")
		}
		want := "no address range available for DHCP request via " + lab.RelayAddr
		if !waitLog(alpha.Log, want, time.Second) {
			t.Errorf("dnsmasq's log does not say %q:\n%s", want, tail(alpha.Log, 30))
		}
		killClient(cmd)

		// ispmux with link_selection (RFC 3527): the subnet in the
		// request; the same dnsmasq answers.
		cfg, err := os.ReadFile(r.cfg)
		if err != nil {
			t.Fatal(err)
		}
		ls := fmt.Sprintf("\nlink_selection = %q\n", lab.Gateway)
		next := strings.ReplaceAll(string(cfg), fmt.Sprintf("\ndhcp_servers = [%q]\n", lab.RouterAddr), fmt.Sprintf("\ndhcp_servers = [%q]", lab.RouterAddr)+ls)
		if strings.Count(next, ls) != len(r.topo.ISPs) {
			t.Fatalf("cannot add link_selection to every [[isp]] of\n%s", cfg)
		}
		if err := os.WriteFile(r.cfg, []byte(next), 0o644); err != nil {
			t.Fatal(err)
		}
		r.stop()
		r.start()
		a, ok := dora(t)
		if !ok {
			t.Fatalf("s1 got no address with link_selection:\n%s\n%s", r.log.String(), tail(alpha.Log, 30))
		}
		if !pool.Contains(a) || !r.ping("s1", hostAddr, 3) {
			t.Errorf("s1 has %v with link_selection, want an address of %v that reaches its ISP", a, pool)
		}
		release(t)
	})
}

// releaseDhclient releases sub's lease with dhclient -r once dhclient has
// written it to its lease file (the address is configured first: a release
// right after it finds no lease to release), and waits for the address to
// go.
func (r *rig) releaseDhclient(t *testing.T, sub lab.Sub) {
	t.Helper()
	lf, _ := r.topo.DhclientFiles(sub)
	a, ok := r.topo.SubAddr(context.Background(), sub)
	if ok && !waitLog(lf, "fixed-address "+a.Addr().String()+";", 5*time.Second) {
		t.Fatalf("dhclient wrote no lease of %v for %s", a, sub.Name)
	}
	if err := r.topo.DhclientRelease(context.Background(), sub); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		a, ok := r.topo.SubAddr(context.Background(), sub)
		if !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still has %v after dhclient -r", sub.Name, a)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// restartDnsmasq stops ISP i's dnsmasq and starts it again with the lab's
// configuration without the lines starting with drop.
func (r *rig) restartDnsmasq(i int, drop string) {
	r.t.Helper()
	isp, f := r.topo.ISPs[i], r.topo.Dnsmasq(i)
	cfg, err := os.ReadFile(f.Config)
	if err != nil {
		r.t.Fatal(err)
	}
	var keep []string
	for _, l := range strings.SplitAfter(string(cfg), "\n") {
		if !strings.HasPrefix(l, drop) {
			keep = append(keep, l)
		}
	}
	conf := filepath.Join(r.dir, "dnsmasq-"+isp.Name+"-without-"+strings.TrimSuffix(drop, "=")+".conf")
	if err := os.WriteFile(conf, []byte(strings.Join(keep, "")), 0o644); err != nil {
		r.t.Fatal(err)
	}
	r.killInNS(isp.NS, "dnsmasq", syscall.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for r.killInNS(isp.NS, "dnsmasq", 0) > 0 {
		if time.Now().After(deadline) {
			r.t.Fatalf("dnsmasq in %s still running 5 s after SIGTERM", isp.NS)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := r.topo.StartDnsmasq(context.Background(), i, conf); err != nil {
		r.t.Fatal(err)
	}
}

// hasDnsmasqLease reports whether dnsmasq's lease file holds a lease of
// addr to mac.
func hasDnsmasqLease(t *testing.T, file, mac string, addr netip.Addr) bool {
	t.Helper()
	leases, err := lab.DnsmasqLeases(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases {
		if l.MAC == mac && l.Address == addr {
			return true
		}
	}
	return false
}

// waitDnsmasqLease waits up to 2 s for dnsmasq's lease file to hold a
// lease of addr to mac (dnsmasq rewrites it after answering).
func waitDnsmasqLease(t *testing.T, file, mac string, addr netip.Addr) bool {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !hasDnsmasqLease(t, file, mac, addr) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// waitLog waits until file contains s.
func waitLog(file, s string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for {
		if b, err := os.ReadFile(file); err == nil && strings.Contains(string(b), s) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tail returns the last n lines of file (for failure messages).
func tail(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
