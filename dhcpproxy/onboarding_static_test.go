package dhcpproxy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// A device holding an onboarding lease is made a static subscriber by a
// reload (the appliance: SetStatic, then the static binding installed,
// which replaces the garden's in the MAC table). When the onboarding
// lease then ran out, its end unbound the static subscriber, and a static
// binding is only installed again at a restart or when its entry changes:
// the subscriber stayed offline. The end unbinds only the garden's entry.
func TestOnboardingExpiryKeepsStaticBinding(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	const m, m48 = "02:77:00:00:00:01", 0x027700000001
	r.obDORA(m)
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(m)), CustomerID: "c-s1", ISP: "alpha", Source: "config"}); err != nil {
		t.Fatal(err)
	}
	// What Reload does for a subscriber made static.
	r.p.SetStatic([]uint64{m48})
	r.p.RevalidateMACs([]uint64{m48})
	static := binding.Binding{Port: accPort, MAC: m48, ISP: 0, IP: netip.MustParseAddr("100.64.0.200"), Static: true}
	if err := r.tab.Bind(static); err != nil {
		t.Fatal(err)
	}
	r.p.expire(time.Now().Add(time.Minute))
	if vrf, ip, ok := r.vrfOf(m48); !ok || vrf != 0 || ip != static.IP {
		t.Errorf("after the onboarding lease ran out the static subscriber is bound %v %v %v, want VRF 0 %v", vrf, ip, ok, static.IP)
	}
}

// At a restart, a stored onboarding lease of a MAC that is a static
// subscriber now (the configuration changed while ispmux was down) must
// not be installed over its static binding (the appliance binds the
// static subscribers before RestoreLoaded), as an onboarding lease of a
// MAC bound to an ISP since is not; it was, and its end later unbound the
// MAC. It is ended as handed over now.
func TestRestoreOnboardingOverStatic(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	const m48 = 0x027700000001
	now := time.Now()
	if _, err := r.store.CommitOnboarding(subscribers.OnboardingLease{MAC: [6]byte{2, 0x77, 0, 0, 0, 1}, Access: "acc0", IP: obAddr(2), Expires: now.Add(15 * time.Second)}, subscribers.Event{}); err != nil {
		t.Fatal(err)
	}
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte{2, 0x77, 0, 0, 0, 1}, CustomerID: "c-s1", ISP: "alpha", Source: "config"}); err != nil {
		t.Fatal(err)
	}
	static := binding.Binding{Port: accPort, MAC: m48, ISP: 0, IP: netip.MustParseAddr("100.64.0.200"), Static: true}
	if err := r.tab.Bind(static); err != nil {
		t.Fatal(err)
	}
	r.p.SetStatic([]uint64{m48})
	if _, err := r.p.Restore(now); err != nil {
		t.Fatal(err)
	}
	if vrf, ip, ok := r.vrfOf(m48); !ok || vrf != 0 || ip != static.IP {
		t.Errorf("after restore the static subscriber is bound %v %v %v, want VRF 0 %v", vrf, ip, ok, static.IP)
	}
	r.p.expire(now.Add(time.Minute))
	if vrf, ip, ok := r.vrfOf(m48); !ok || vrf != 0 || ip != static.IP {
		t.Errorf("after the onboarding lease's time the static subscriber is bound %v %v %v, want VRF 0 %v", vrf, ip, ok, static.IP)
	}
}

// TestOnboardingTableFullNoQuarantine: when the MAC table is full, the
// onboarding lease cannot be installed. That was handled as an address
// conflict: the pool address was quarantined for a lease time (the pool
// shrank by one per attempt while the table stayed full) and counted as a
// conflict. Only a conflict quarantines now; a full table is counted as
// such, and the same address is granted once there is room.
func TestOnboardingTableFullNoQuarantine(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	const m = "02:77:00:00:00:09"
	r.tab.full = true
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(m))))
	offer := r.one(dhcpv4.MessageTypeOffer)
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	r.fromClient(req)
	if got := r.clientMsgs(); len(got) != 0 {
		t.Fatalf("subscriber got %v with the table full, want nothing", got)
	}
	c := r.p.Counters()
	if c["onboarding_bind_conflict"] != 0 || c["onboarding_bind_failed"] != 1 {
		t.Errorf("counters: conflict %d, failed %d; want 0, 1", c["onboarding_bind_conflict"], c["onboarding_bind_failed"])
	}
	ip, _ := netip.AddrFromSlice(offer.YourIPAddr.To4())
	r.p.ob.mu.Lock()
	_, quarantined := r.p.ob.quarantine[ip]
	r.p.ob.mu.Unlock()
	if quarantined {
		t.Errorf("%v quarantined after a full table refused its binding", ip)
	}
	r.tab.full = false
	r.obDORA(m)
}
