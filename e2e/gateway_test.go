package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/internal/privtest"
	"github.com/ispmux/ispmux/lab"
)

// TestGatewayFailover: ISP alpha's router, a real Linux namespace,
// changes MAC silently (a router replaced, no gratuitous ARP), then with a
// gratuitous ARP (arp_notify: as a VRRP master taking over), then stops
// answering ARP (router dead, carrier up) and comes back. ispmux follows
// the silent change within ReachableTime + a probe (~31 s), the GARP at
// once, reports the dead router within ~33 s (status, log) and recovers.
func TestGatewayFailover(t *testing.T) {
	t.Parallel()
	privtest.Lab(t)
	r := newRig(t, lab.Options{Subscribers: 1})
	r.start()
	isp := r.topo.ISPs[0]
	sh := func(args ...string) {
		t.Helper()
		if out, err := r.run(isp.NS, args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	reach := func() bool { return r.ping("s1", hostAddr, 1) }
	if !reach() {
		t.Fatalf("s1 cannot reach alpha's host at start\n%s", r.log.String())
	}
	alphaState := func() (string, string) {
		for _, i := range r.mustStatus().ISPs {
			if i.Name == isp.Name {
				return i.State, i.MAC
			}
		}
		return "", ""
	}

	// 1. Silent MAC change.
	sh("sysctl", "-qw", fmt.Sprintf("net.ipv4.conf.%s.arp_notify=0", isp.RouterIf))
	sh("ip", "link", "set", "dev", isp.RouterIf, "address", "02:00:00:31:9a:01")
	t0 := time.Now()
	if !eventually(40*time.Second, reach) {
		t.Fatalf("silent MAC change: s1 not forwarding after 40 s; status %v\n%s", r.mustStatus().ISPs, lastLines(r.log.String(), 20))
	}
	t.Logf("silent MAC change followed after %v", time.Since(t0).Round(100*time.Millisecond))

	// 2. Gratuitous ARP (the kernel's on a MAC change with arp_notify).
	sh("sysctl", "-qw", fmt.Sprintf("net.ipv4.conf.%s.arp_notify=1", isp.RouterIf))
	time.Sleep(1500 * time.Millisecond) // past the lock time of the last reply
	sh("ip", "link", "set", "dev", isp.RouterIf, "address", "02:00:00:31:9a:02")
	t0 = time.Now()
	if !eventually(3*time.Second, func() bool { _, m := alphaState(); return m == "02:00:00:31:9a:02" }) {
		st, m := alphaState()
		t.Errorf("GARP: next hop %s %s 3 s after, want 02:00:00:31:9a:02", st, m)
	} else {
		t.Logf("GARP followed after %v", time.Since(t0).Round(10*time.Millisecond))
	}

	// 3. Router stops answering ARP (carrier stays up).
	sh("ip", "link", "set", "dev", isp.RouterIf, "arp", "off")
	t0 = time.Now()
	if !eventually(40*time.Second, func() bool { st, _ := alphaState(); return st == "incomplete" }) {
		t.Errorf("dead router not reported within 40 s: %v", r.mustStatus().ISPs)
	} else {
		t.Logf("dead router withdrawn after %v", time.Since(t0).Round(100*time.Millisecond))
	}
	if !strings.Contains(r.log.String(), "gateway does not answer ARP") {
		t.Errorf("no log line for the dead router:\n%s", lastLines(r.log.String(), 20))
	}
	sh("ip", "link", "set", "dev", isp.RouterIf, "arp", "on")
	t0 = time.Now()
	if !eventually(5*time.Second, reach) {
		t.Errorf("router back: s1 not forwarding after 5 s")
	} else {
		t.Logf("router back: forwarding after %v", time.Since(t0).Round(100*time.Millisecond))
	}
}
