package e2e

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ispmux/ispmux/lab"
)

// TestRemovedDeviceLosesAddress: a real dhclient whose [[subscriber]]
// entry a reload removes drops its address at its next renewal (T1, 30 s
// into alpha's 1 min lease), NAKed by ispmux (revoked_nak), instead of
// keeping it, its traffic dropped and its REQUESTs unanswered, until the
// lease ran out at 60 s (a field trial: the device was unknown, and an
// unknown MAC gets silence). Its unicast RENEW needs the gateway's MAC:
// with the proxy's NAK alone, its ARP went unanswered (unknown_mac) and
// the address stayed past 50 s.
func TestRemovedDeviceLosesAddress(t *testing.T) {
	t.Parallel()
	r := newRig(t, lab.Options{Subscribers: 2, DHCP: true, LeaseTime: time.Minute})
	r.start()
	s1 := r.sub("s1")
	startClient(t, r.topo.Dhclient(context.Background(), s1))
	if _, ok := r.waitAddr(s1, 15*time.Second); !ok {
		t.Fatalf("s1 got no address; log:\n%s", r.log.String())
	}
	acked := time.Now()
	cfg, err := os.ReadFile(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := string(cfg)
	start := strings.Index(c, "[[subscriber]]\nmac = "+strconv.Quote(s1.MAC))
	if start < 0 {
		t.Fatalf("no [[subscriber]] entry for %s in:\n%s", s1.MAC, c)
	}
	end := strings.Index(c[start+1:], "[[subscriber]]")
	if end < 0 {
		end = len(c)
	} else {
		end += start + 1
	}
	if err := os.WriteFile(r.cfg, []byte(c[:start]+c[end:]), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !r.hasEvent("revoked", s1.MAC) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if !r.hasEvent("revoked", s1.MAC) {
		t.Fatalf("no revoked event for s1 after its entry was removed; log:\n%s", lastLines(r.log.String(), 20))
	}
	// T1 is 30 s after the ACK; the lease ends at 60 s, when dhclient
	// would drop the address anyway.
	for time.Since(acked) < 50*time.Second {
		if _, ok := r.topo.SubAddr(context.Background(), s1); !ok {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if p, ok := r.topo.SubAddr(context.Background(), s1); ok {
		t.Errorf("s1 still holds %s %v after its ACK, its entry removed: its renewal was not NAKed (dhcp %v)", p, time.Since(acked).Round(time.Second), r.mustStatus().DHCP)
	} else {
		t.Logf("s1's address gone %v after its ACK", time.Since(acked).Round(time.Second))
	}
	if n := r.mustStatus().DHCP["revoked_nak"]; n == 0 {
		t.Errorf("revoked_nak %d, want the renewal NAKed (dhcp %v)", n, r.mustStatus().DHCP)
	}
}
