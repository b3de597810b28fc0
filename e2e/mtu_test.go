package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/ispmux/ispmux/lab"
)

// TestUplinkMTU: with alpha's uplink at MTU 1400, a subscriber's 1500-byte
// DF packet is answered with ICMP fragmentation-needed (mtu = 1400) by
// ispmux, and its kernel then sends smaller packets that get through.
func TestUplinkMTU(t *testing.T) {
	t.Parallel()
	r := newRig(t, lab.Options{Subscribers: 2})
	for _, c := range [][]string{
		{r.topo.Appliance.NS, "ip", "link", "set", "dev", "upa", "mtu", "1400"},
		{r.ns("ispa"), "ip", "link", "set", "dev", "eth0", "mtu", "1400"},
	} {
		if out, err := r.run(c[0], c[1:]...); err != nil {
			t.Fatalf("%v: %s", c, out)
		}
	}
	r.start()
	out, _ := r.run(r.ns("s1"), "ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1472", hostAddr)
	if !strings.Contains(out, "mtu = 1400") {
		t.Errorf("no fragmentation-needed answer naming the MTU:\n%s", out)
	}
	// The subscriber's kernel learnt the path MTU: a ping that lets it
	// fragment gets through.
	if out, err := r.run(r.ns("s1"), "ping", "-c", "2", "-W", "1", "-s", "1472", hostAddr); err != nil {
		t.Errorf("a large ping after path MTU discovery failed:\n%s", out)
	}
	if r.drops("acc0", "too_big") == 0 {
		t.Errorf("too_big not counted")
	}
	// The MTU changes while ispmux runs: it follows.
	for _, c := range [][]string{
		{r.topo.Appliance.NS, "ip", "link", "set", "dev", "upa", "mtu", "1300"},
		{r.ns("ispa"), "ip", "link", "set", "dev", "eth0", "mtu", "1300"},
	} {
		if out, err := r.run(c[0], c[1:]...); err != nil {
			t.Fatalf("%v: %s", c, out)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(r.log.String(), "port MTU changed") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	out, _ = r.run(r.ns("s1"), "ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1372", hostAddr)
	if !strings.Contains(out, "mtu = 1300") {
		t.Errorf("the new MTU is not applied:\n%s", out)
	}
}
