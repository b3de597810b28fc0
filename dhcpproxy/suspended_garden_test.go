package dhcpproxy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

// TestSuspendedServedInGarden: on a circuit with a walled garden, a device
// whose customer its ISP suspended is served there, as a device without a
// record, so that its subscriber can choose another ISP at the portal (an
// open-access network locks no one in with the ISP that cut it off); it
// had silence and NAKs, with nowhere to go. Its ISP's service stays cut (a
// REQUEST for its ISP address is NAKed, nothing is relayed); once the
// suspension is lifted, it is handed over back to its ISP. On a circuit
// without a garden nothing changes.
func TestSuspendedServedInGarden(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	const m, m48 = "02:00:00:00:01:01", 0x020000000101
	reg := registry.New()
	reg.Put(m48, registry.Entry{ISP: "alpha", CustomerID: "c-s1", Source: "api"}, true)
	r.p = New(r.p.config(), r.store, reg, r.tab, r.snd, nil)

	// Its ISP lease, asked for again: NAKed by the garden, not relayed.
	r.fromClient(initReboot(t, m, netip.MustParseAddr("100.64.0.100")))
	r.one(dhcpv4.MessageTypeNak)
	ack := r.obDORA(m)
	ip := addrOf(ack.YourIPAddr)
	if !obPoolPfx.Contains(ip) {
		t.Fatalf("a suspended customer's device got %v, want an onboarding address", ip)
	}
	if vrf, _, ok := r.vrfOf(m48); !ok || vrf != binding.GardenVRF {
		t.Errorf("bound in VRF %d (%v), want the garden's", vrf, ok)
	}
	if n := r.p.Counters()["suspended_onboarding"]; n == 0 {
		t.Error("suspended_onboarding not counted")
	}

	// Lifted: its next renewal in the garden hands it over to alpha.
	reg.SetSuspended("alpha", "c-s1", false)
	r.fromClient(renewOf(t, m, ip))
	r.one(dhcpv4.MessageTypeNak)
	if evs := r.eventsOf(subscribers.EventOnboardingEnded); len(evs) != 1 || evs[0].Reason != subscribers.OnboardingEndHandover {
		t.Errorf("onboarding ended events %+v, want one handover", evs)
	}
	if got := r.dora(m, kea(t, time.Minute), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("after the suspension was lifted the DORA with alpha gave %v", got)
	}
	if vrf, _, ok := r.vrfOf(m48); !ok || vrf != 0 {
		t.Errorf("bound in VRF %d (%v), want alpha's", vrf, ok)
	}

	// No garden on the circuit: silence to DISCOVER, as before.
	r2 := newPRig(t)
	reg2 := registry.New()
	reg2.Put(m48, registry.Entry{ISP: "alpha", CustomerID: "c-s1", Source: "api"}, true)
	r2.p = New(r2.p.config(), r2.store, reg2, r2.tab, r2.snd, nil)
	r2.fromClient(discover(t, dhcpv4.WithHwAddr(mac(m))))
	if got := r2.serve(kea(t, time.Minute)); len(got) != 0 {
		t.Errorf("suspended, no garden: the subscriber got %v", got)
	}
	if n := r2.p.Counters()["suspended_customer"]; n != 1 {
		t.Errorf("suspended_customer = %d, want 1", n)
	}
}
