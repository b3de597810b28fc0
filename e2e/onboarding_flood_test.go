package e2e

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ispmux/ispmux/lab"
)

// floodVLAN is the access VLAN TestOnboardingFloodOtherCircuit floods, a
// second onboarding circuit on acc0 (acc0.100) with its own pool.
const (
	floodVLAN = 100
	floodPool = "100.73.0.0/24"
)

// TestOnboardingFloodOtherCircuit: while an attacker on one circuit of the
// access port (VLAN 100) floods DISCOVERs from made-up MACs, a new device
// on another circuit of the same port (acc0 untagged: s1, no device
// record, a real dhclient) still gets its onboarding lease from the
// walled garden's pool; the flood is dropped in the datapath past its
// circuit's share of the port's sample (unregistered_dhcp_circuit).
// Before, the flood took the port's whole sample (unregistered_dhcp) and
// s1's DISCOVERs were dropped for as long as it lasted. The attacker sends
// raw tagged frames (the lab's kernel has no 8021q for a tagged client).
func TestOnboardingFloodOtherCircuit(t *testing.T) {
	r := newRig(t, lab.Options{Subscribers: 5, DHCP: true, Portal: true, Unconfigured: []string{"s1"}})
	cfg, err := os.ReadFile(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	const portal = "\n[portal]\n"
	if !strings.Contains(string(cfg), portal) {
		t.Fatalf("generated config has no %q", portal)
	}
	// A second circuit on acc0, VLAN 100, onboarding from its own pool:
	// the flood's made-up MACs are offered addresses there (the proxy's
	// work a flood costs, which stays its circuit's).
	access := "\n[[access]]\ninterface = \"acc0\"\nvlan = 100\naddress = \"" + lab.Gateway + "\"\n" +
		"[access.onboarding]\npool = \"" + floodPool + "\"\n"
	if err := os.WriteFile(r.cfg, []byte(strings.Replace(string(cfg), portal, access+portal, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	r.start()
	s1, s5 := r.sub("s1"), r.sub("s5")
	frames := madeUpDiscovers(t, 2000, floodVLAN)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }() // on a failure below too: no flood after the lab is down
	var sent atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			sendRaw(t, s5.NS, s5.If, frames)
			sent.Add(int64(len(frames)))
		}
	}()
	time.Sleep(time.Second) // the flood is on
	startClient(t, r.topo.Dhclient(context.Background(), s1))
	a, ok := r.waitAddr(s1, 20*time.Second)
	stillOn := ctx.Err() == nil
	cancel()
	wg.Wait()
	pool := netip.MustParsePrefix(lab.OnboardingPool)
	if !ok || !pool.Contains(a.Addr()) {
		t.Fatalf("s1 (acc0, untagged) got %v %v during VLAN %d's flood of %d DISCOVERs, want an onboarding lease from %s (drops: unregistered_dhcp %d, unregistered_dhcp_circuit %d); DHCP %+v",
			a, ok, floodVLAN, sent.Load(), pool, r.drops("acc0", "unregistered_dhcp"), r.drops("acc0", "unregistered_dhcp_circuit"), r.mustStatus().DHCP)
	}
	if !stillOn {
		t.Error("the flood stopped before s1's lease")
	}
	if o, ok := r.onboarding(s1.MAC); !ok || o.IP != a.Addr().String() {
		t.Errorf("status onboarding for s1: %+v %v", o, ok)
	}
	circuit := r.drops("acc0", "unregistered_dhcp_circuit")
	if n := uint64(sent.Load()); circuit < n/2 {
		t.Errorf("%d of %d flood frames dropped as unregistered_dhcp_circuit, want most", circuit, n)
	}
	t.Logf("flood: %d frames on VLAN %d, unregistered_dhcp_circuit %d, unregistered_dhcp %d, dhcp_flood %d, onboarding offers %d; s1 onboarded at %s",
		sent.Load(), floodVLAN, circuit, r.drops("acc0", "unregistered_dhcp"), r.drops("acc0", "dhcp_flood"), r.mustStatus().DHCP["onboarding_offer"], a.Addr())
}
