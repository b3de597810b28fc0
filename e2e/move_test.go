package e2e

import (
	"context"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/ispmux/ispmux/lab"
)

// TestCircuitMove: s1, registered for any access (its `access` line taken
// out of the lab's configuration), is bound on acc0 by udhcpc. A device on
// the other access port, acc1 (the lab's generator namespace), takes s1's
// MAC and asks for an address: while s1 is on acc0 it is refused (ispmux
// probes acc0 by ARP, s1 answers), and s1 keeps its binding; once s1 is
// unplugged (its client killed without a RELEASE, its link down) the probe
// goes unanswered and the device on acc1 is served within seconds, long
// before s1's 10-minute client lease would have run out, with s1's ISP,
// and reaches alpha's host.
func TestCircuitMove(t *testing.T) {
	t.Parallel()
	r := newRig(t, lab.Options{Subscribers: 3, DHCP: true, LeaseTime: 10 * time.Minute, Generator: true})
	s1 := r.sub("s1")
	cfg, err := os.ReadFile(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	pin := regexp.MustCompile(`(mac = "` + regexp.QuoteMeta(s1.MAC) + `"\n(?:[a-z_]+ = [^\n]*\n)*?)access = "[^"]*"\n`)
	if !pin.Match(cfg) {
		t.Fatalf("no access line for s1 in\n%s", cfg)
	}
	if err := os.WriteFile(r.cfg, pin.ReplaceAll(cfg, []byte("$1")), 0o644); err != nil {
		t.Fatal(err)
	}
	r.start()
	counter := func(name string) uint64 { return r.mustStatus().DHCP[name] }
	on := func(access string) bool { b, ok := r.bound(s1.MAC); return ok && b.Access == access }

	c1 := r.startUdhcpc(s1)
	t.Cleanup(c1.kill)
	if !eventually(20*time.Second, func() bool { return on("acc0") }) {
		t.Fatalf("s1 not bound on acc0; udhcpc:\n%s\nispmux:\n%s", lastLines(c1.out.String(), 10), lastLines(r.log.String(), 20))
	}

	// The device on acc1 with s1's MAC.
	g := r.topo.Generator
	for _, c := range [][]string{
		{"link", "set", g.If, "down"},
		{"link", "set", g.If, "address", s1.MAC},
		{"link", "set", g.If, "up"},
	} {
		sh2(t, append([]string{"ip", "-n", g.NS}, c...)...)
	}
	moved := s1
	moved.NS, moved.If, moved.Access = g.NS, g.If, g.Access
	c2 := r.startUdhcpc(moved)
	t.Cleanup(c2.kill)
	for end := time.Now().Add(12 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		if !on("acc0") {
			t.Fatalf("s1, on acc0 and answering ARP, lost its binding to a device on acc1; ispmux:\n%s", lastLines(r.log.String(), 20))
		}
		if a, ok := r.topo.SubAddr(context.Background(), moved); ok {
			t.Fatalf("the device on acc1 got %v while s1 is on acc0", a)
		}
	}
	if counter("moved_circuit_refused") == 0 || counter("moved_circuit_probe_answered") == 0 {
		t.Errorf("moved_circuit_refused %d, moved_circuit_probe_answered %d; want both counted",
			counter("moved_circuit_refused"), counter("moved_circuit_probe_answered"))
	}

	// s1 unplugged: no RELEASE, no answer to ARP.
	c1.kill()
	sh2(t, "ip", "-n", s1.NS, "link", "set", s1.If, "down")
	start := time.Now()
	if !eventually(30*time.Second, func() bool { return on("acc1") }) {
		t.Fatalf("the moved device is not bound on acc1 %v after s1 was unplugged (its client lease is 10 min); udhcpc:\n%s\nispmux:\n%s",
			time.Since(start).Round(time.Second), lastLines(c2.out.String(), 10), lastLines(r.log.String(), 20))
	}
	t.Logf("bound on acc1 %v after s1 was unplugged", time.Since(start).Round(100*time.Millisecond))
	if n := counter("moved_circuit_probe_silent"); n == 0 {
		t.Errorf("moved_circuit_probe_silent %d, want the silent probe counted", n)
	}
	if b, _ := r.bound(s1.MAC); b.ISP != s1.ISP {
		t.Errorf("the moved device is bound at %q, want s1's ISP %q", b.ISP, s1.ISP)
	}
	if !eventually(10*time.Second, func() bool { _, ok := r.topo.SubAddr(context.Background(), moved); return ok }) {
		t.Fatal("the moved device's client has no address")
	}
	if !r.ping("gen", hostAddr, 3) {
		t.Error("the moved device cannot reach alpha's host")
	}
}
