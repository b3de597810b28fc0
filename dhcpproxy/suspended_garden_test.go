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
	reg := r.useRegistry(m48, true)

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
	r2.useRegistry(m48, true)
	r2.fromClient(discover(t, dhcpv4.WithHwAddr(mac(m))))
	if got := r2.serve(kea(t, time.Minute)); len(got) != 0 {
		t.Errorf("suspended, no garden: the subscriber got %v", got)
	}
	if n := r2.p.Counters()["suspended_customer"]; n != 1 {
		t.Errorf("suspended_customer = %d, want 1", n)
	}
}

// TestSuspensionLiftedWhileStopped: a device served by the garden for its
// customer's suspension, lifted while ispmux was stopped, is not taken at
// the restart for a device whose handover failed (the portal said its ISP
// had not connected it, and it was held in the garden for a retry: a
// review); it is handed over at its next message.
func TestSuspensionLiftedWhileStopped(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	const m, m48 = "02:00:00:00:01:01", 0x020000000101
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(m)), CustomerID: "c-s1", ISP: "alpha", Source: "api",
		Updated: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	put := func(status string) {
		t.Helper()
		if _, err := r.store.ApplyTenant(subscribers.TenantWrite{PutCustomers: []subscribers.Customer{{ISP: "alpha", ID: "c-s1", Status: status, Source: "api"}}}); err != nil {
			t.Fatal(err)
		}
	}
	put("suspended")
	reg := r.useRegistry(m48, true)
	ip := addrOf(r.obDORA(m).YourIPAddr)
	time.Sleep(10 * time.Millisecond)
	put("active") // lifted while stopped
	reg.SetSuspended("alpha", "c-s1", false)
	r.p = New(r.p.config(), r.store, reg, r.tab, r.snd, nil)
	if _, err := r.p.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	if o, ok := r.p.OnboardingByAddr(ip); !ok || o.HandoverFailed != "" {
		t.Errorf("after the restart: %+v %v; want its garden lease, no failed handover", o, ok)
	}
	if n := r.p.Counters()["handover_failure_restored"]; n != 0 {
		t.Errorf("handover_failure_restored = %d, want 0", n)
	}
}

// TestSuspendedGardenLimitsAndHeldBinding: a suspended customer's device
// in the garden is within its own rate limit, as any registered device
// (its messages spent the circuit's onboarding sample, which new devices
// onboard through: a review); and its ISP binding, when the suspension's
// revocation has not ended it yet, is ended before the garden serves it
// (or the end undid the garden's entry in the tables: a review).
func TestSuspendedGardenLimitsAndHeldBinding(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	const m, m48 = "02:00:00:00:01:01", 0x020000000101
	reg := r.useRegistry(m48, false)
	if got := r.dora(m, kea(t, time.Hour), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("DORA at alpha: %v", got)
	}
	r.p.committing.Wait()
	r.snd.take()
	reg.SetSuspended("alpha", "c-s1", true) // its revocation not run yet
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(m))))
	r.p.committing.Wait()
	r.p.notes.wait()
	sent := r.toPorts()
	if len(sent[upPort]) != 1 || sent[upPort][0].MessageType() != dhcpv4.MessageTypeRelease {
		t.Errorf("to alpha: %v, want the RELEASE of its binding", sent[upPort])
	}
	if len(sent[accPort]) != 1 || sent[accPort][0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("to the subscriber: %v, want the garden's OFFER", sent[accPort])
	}
	req, _ := dhcpv4.NewRequestFromOffer(sent[accPort][0])
	r.fromClient(req)
	ack := r.one(dhcpv4.MessageTypeAck)
	if ip := addrOf(ack.YourIPAddr); !obPoolPfx.Contains(ip) {
		t.Fatalf("got %v, want an onboarding address", ip)
	}
	if vrf, _, ok := r.vrfOf(m48); !ok || vrf != binding.GardenVRF {
		t.Errorf("in VRF %d (%v) after the garden's ACK, want the garden's", vrf, ok)
	}
	if evs := r.eventsOf(subscribers.EventRevoked); len(evs) != 1 || evs[0].ISP != "alpha" {
		t.Errorf("revoked events %+v, want alpha's binding ended", evs)
	}

	r.p.setLimits(func(l *Limits) { l.MACRate, l.MACBurst = 1, 3 })
	for range 20 {
		r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(m))))
	}
	r.clientMsgs()
	if c := r.p.Counters(); c["rate_limited_mac"] < 15 || c["onboarding_rate_limited"] != 0 {
		t.Errorf("20 DISCOVERs of a suspended device past its rate: rate_limited_mac %d, onboarding_rate_limited %d",
			c["rate_limited_mac"], c["onboarding_rate_limited"])
	}
}

// TestSuspendedPinnedElsewhereIsMisplaced: a suspended customer's device
// pinned to another access, heard on this one, is misplaced as any MAC
// heard off its access (a clone, or the device moved): wrong_circuit, out
// of its ISP's refusals (a trial saw "rejected ... suspended" events and
// its REQUESTs NAKed). A device of an ISP no longer configured is refused
// naming that, not its "DHCP servers".
func TestSuspendedPinnedElsewhereIsMisplaced(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	const m, m48 = "02:00:00:00:01:01", 0x020000000101
	reg := r.useRegistry(m48, true)
	reg.Put(m48, registry.Entry{ISP: "alpha", CustomerID: "c-s1", Source: "api", Access: "acc9"}, true)
	reg.Put(0x020000000102, registry.Entry{ISP: "gamma", CustomerID: "g-1", Source: "api"}, false)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(m))))
	if got := r.clientMsgs(); len(got) != 0 {
		t.Errorf("the subscriber got %v", got)
	}
	if c := r.p.Counters(); c["wrong_circuit"] != 1 || c["suspended_customer"] != 0 || c["suspended_onboarding"] != 0 {
		t.Errorf("counters %v, want wrong_circuit only", c)
	}
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:02"))))
	r.clientMsgs()
	var gamma []subscribers.Event
	for _, e := range r.eventsOf(subscribers.EventRejected) {
		if e.ISP == "gamma" {
			gamma = append(gamma, e)
		}
	}
	if len(gamma) != 1 || gamma[0].Reason != "ISP gamma is not configured" {
		t.Errorf("gamma's rejected events %+v, want one naming gamma not configured", gamma)
	}
}

// useRegistry has r's proxy read a real registry, which knows
// suspensions (the rigs' store-backed one does not), holding mac as alpha's
// c-s1, suspended or not; the proxy is made anew, as at a start.
func (r *prig) useRegistry(mac uint64, suspended bool) *registry.Registry {
	reg := registry.New()
	reg.Put(mac, registry.Entry{ISP: "alpha", CustomerID: "c-s1", Source: "api"}, suspended)
	r.p = New(r.p.config(), r.store, reg, r.tab, r.snd, nil)
	return reg
}
