package dhcpproxy

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// keaRefusing is kea() (customer c-s1) with every REQUEST NAKed: the ISP
// offers, then refuses (its server rejects the subscriber-id, say).
func keaRefusing(t *testing.T) func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	return func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := kea(t, time.Minute)(m)
		if rep != nil && m.MessageType() == dhcpv4.MessageTypeRequest {
			rep.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeNak))
			rep.YourIPAddr = netip.IPv4Unspecified().AsSlice()
		}
		return rep
	}
}

// handedOver returns the rig with m registered (customer cust, alpha)
// while in the garden, and handed over: its renewal of its onboarding
// address NAKed.
func handedOver(t *testing.T, m, cust string) *prig {
	t.Helper()
	return handedOverOn(t, m, cust, Onboarding{})
}

// handedOverOn is handedOver with the onboarding configuration ob.
func handedOverOn(t *testing.T, m, cust string, ob Onboarding) *prig {
	t.Helper()
	r := newORig(t, ob, 0, false)
	ip := addrOf(r.obDORA(m).YourIPAddr)
	r.gardenIP = ip
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(m)), CustomerID: cust, ISP: "alpha", Source: "claim"}); err != nil {
		t.Fatal(err)
	}
	r.fromClient(renewOf(t, m, ip))
	r.one(dhcpv4.MessageTypeNak)
	return r
}

// gardenDORA expects m's DISCOVER and REQUEST answered from the garden
// (nothing relayed) and returns the address acked.
func (r *prig) gardenDORA(m, what string) netip.Addr {
	r.t.Helper()
	r.fromClient(discover(r.t, dhcpv4.WithHwAddr(mac(m))))
	got := r.clientMsgs()
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer || !obPoolPfx.Contains(addrOf(got[0].YourIPAddr)) {
		r.t.Fatalf("%s: the device's DISCOVER got %v, want an OFFER from the onboarding pool (counters %v)", what, got, r.p.Counters())
	}
	req, _ := dhcpv4.NewRequestFromOffer(got[0])
	r.fromClient(req)
	ack := r.one(dhcpv4.MessageTypeAck)
	ip := addrOf(ack.YourIPAddr)
	if vrf, bound, ok := r.vrfOf(binding.MAC48([6]byte(mac(m)))); !ok || vrf != binding.GardenVRF || bound != ip {
		r.t.Errorf("%s: bound %v %v %v, want %v in the garden", what, vrf, bound, ok, ip)
	}
	return ip
}

// A device handed over whose ISP NAKs its REQUEST goes back to the
// walled garden at its next DISCOVER: an onboarding lease, the failure
// (refused, its ISP, the retry) given with it to the portal, the grant's
// event saying why. Its renewals are ACKed by the garden until one lease
// time has passed; the next one is the handover again, and the ISP, fixed
// meanwhile, binds it. Before, its DISCOVER went to its ISP again and
// again: no address at all, no way to the portal.
func TestHandoverRefusedBackToGarden(t *testing.T) {
	const m, m48 = "02:77:00:00:00:01", 0x027700000001
	r := handedOver(t, m, "c-s1")
	if got := r.dora(m, keaRefusing(t), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("the handover's DORA: %v, want alpha's NAK passed on", got)
	}

	ip := r.gardenDORA(m, "after alpha's NAK")
	if ip != r.gardenIP {
		// Its garden address was kept for it (a portal trial: a new one
		// at each failed handover broke its connections to the portal).
		t.Errorf("back in the garden at %v, want its address before the handover, %v", ip, r.gardenIP)
	}
	l, ok := r.p.OnboardingByAddr(ip)
	if !ok || l.MAC != m48 || l.HandoverFailed != HandoverRefused || l.HandoverISP != "alpha" || !l.HandoverRetry.After(r.p.now()) {
		t.Errorf("OnboardingByAddr = %+v, %v; want the refused handover to alpha, retried later", l, ok)
	}
	evs := r.eventsOf(subscribers.EventOnboarded)
	if len(evs) != 2 || !strings.Contains(evs[1].Reason, "handover to ISP alpha failed (refused)") {
		t.Errorf("onboarded events %+v, want the second saying the handover failed", evs)
	}
	if c := r.p.Counters(); c["handover_failed"] != 1 || c["handover_failed_refused"] != 1 || c["handover_retry"] != 0 {
		t.Errorf("counters %v", c)
	}

	// Its first renewal (T1, 10 s): the garden's.
	r.pastT1(10 * time.Second)
	r.fromClient(renewOf(t, m, ip))
	r.one(dhcpv4.MessageTypeAck)
	// One lease time after the failure: the handover again.
	r.pastT1(21 * time.Second)
	r.fromClient(renewOf(t, m, ip))
	r.one(dhcpv4.MessageTypeNak)
	if c := r.p.Counters(); c["handover_retry"] != 1 || c["handover_nak"] != 2 {
		t.Errorf("counters after the retry %v", c)
	}
	if got := r.dora(m, kea(t, time.Hour), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("the retry's DORA, alpha fixed: %v (counters %v)", got, r.p.Counters())
	}
	if vrf, _, ok := r.vrfOf(m48); !ok || vrf != 0 {
		t.Errorf("bound in VRF %d (%v), want alpha's", vrf, ok)
	}
	if ls := r.p.OnboardingLeases(); len(ls) != 0 {
		t.Errorf("onboarding leases %+v after the handover", ls)
	}
}

// A device handed over whose ISP stays silent (its server does not know
// the customer): its DISCOVERs are relayed for one onboarding lease time
// from the first timeout; the next one is answered from the garden
// (unanswered). A change of its registration (the ISP fixed the customer
// ID) hands it over again at its next renewal, without waiting.
func TestHandoverUnansweredBackToGarden(t *testing.T) {
	const m, m48 = "02:77:00:00:00:01", 0x027700000001
	r := handedOver(t, m, "c-s9") // kea knows c-s1 only
	silent := func(at time.Duration) { t.Helper(); r.silentDiscover(m, at) }
	silent(0)
	silent(10 * time.Second)
	silent(18 * time.Second) // timed out 18 s after the first
	if c := r.p.Counters(); c["handover_failed"] != 0 || c["timeout"] != 3 {
		t.Errorf("counters %v", c)
	}
	r.pastT1(22 * time.Second)
	ip := r.gardenDORA(m, "after 21 s of silence")
	if ip != r.gardenIP {
		t.Errorf("back in the garden at %v, want its address before the handover, %v", ip, r.gardenIP)
	}
	if l, ok := r.p.OnboardingByAddr(ip); !ok || l.HandoverFailed != HandoverUnanswered || l.HandoverISP != "alpha" {
		t.Errorf("OnboardingByAddr = %+v, %v; want the unanswered handover to alpha", l, ok)
	}
	if c := r.p.Counters(); c["handover_failed"] != 1 || c["handover_failed_unanswered"] != 1 {
		t.Errorf("counters %v", c)
	}
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(m)), CustomerID: "c-s1", ISP: "alpha", Source: "api"}); err != nil {
		t.Fatal(err)
	}
	r.pastT1(25 * time.Second)
	r.fromClient(renewOf(t, m, ip))
	r.one(dhcpv4.MessageTypeNak)
	if got := r.dora(m, kea(t, time.Hour), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("DORA after the registration's fix: %v (counters %v)", got, r.p.Counters())
	}
	if _, ok := r.p.Lease(accPort, 0, m48); !ok {
		t.Error("not bound at alpha")
	}
}

// A device back in the garden whose user corrects its claim on the
// portal (the same ISP, another customer ID) is no longer shown as
// failed: its record is of the old registration, which the ISP refused,
// and its next message hands it over at once (the NAK of its renewal,
// before the retry's time), the ISP binding it now. Before, the lease
// still said refused by alpha until that message, so the portal showed
// the failure again right after the corrected claim.
func TestHandoverFailureGoneOnReclaim(t *testing.T) {
	const m, m48 = "02:77:00:00:00:01", 0x027700000001
	r := handedOver(t, m, "c-s9") // a customer ID kea does not know
	// Alpha's server offers, then refuses the unknown subscriber-id.
	refusing := func(q *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		mt := dhcpv4.MessageTypeOffer
		if q.MessageType() == dhcpv4.MessageTypeRequest {
			mt = dhcpv4.MessageTypeNak
		}
		rep, _ := dhcpv4.NewReplyFromRequest(q, dhcpv4.WithMessageType(mt),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ispSID.AsSlice())),
			dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, q.Options.Get(dhcpv4.OptionRelayAgentInformation)))
		if mt == dhcpv4.MessageTypeOffer {
			rep.YourIPAddr = netip.MustParseAddr("100.64.0.100").AsSlice()
			rep.UpdateOption(dhcpv4.OptIPAddressLeaseTime(time.Minute))
		}
		return rep
	}
	if got := r.dora(m, refusing, nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("the handover's DORA: %v, want alpha's NAK passed on", got)
	}
	ip := r.gardenDORA(m, "after alpha's NAK")
	if l, ok := r.p.OnboardingByAddr(ip); !ok || l.HandoverFailed != HandoverRefused {
		t.Fatalf("OnboardingByAddr = %+v, %v; want the refused handover", l, ok)
	}
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(m)), CustomerID: "c-s1", ISP: "alpha", Source: "claim"}); err != nil {
		t.Fatal(err)
	}
	if l, ok := r.p.OnboardingByAddr(ip); !ok || l.HandoverFailed != "" || l.HandoverISP != "" || !l.HandoverRetry.IsZero() {
		t.Errorf("OnboardingByAddr after the new claim = %+v, %v; want no failure (the refused claim is not this one)", l, ok)
	}
	if ls := r.p.OnboardingLeases(); len(ls) != 1 || ls[0].HandoverFailed != "" {
		t.Errorf("OnboardingLeases after the new claim = %+v, want one without a failure", ls)
	}
	r.pastT1(10 * time.Second) // its first renewal, before the retry's time
	r.fromClient(renewOf(t, m, ip))
	r.one(dhcpv4.MessageTypeNak)
	if got := r.dora(m, kea(t, time.Hour), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("DORA after the new claim: %v (counters %v)", got, r.p.Counters())
	}
	if _, ok := r.p.Lease(accPort, 0, m48); !ok {
		t.Error("not bound at alpha")
	}
	if c := r.p.Counters(); c["handover_retry"] != 0 {
		t.Errorf("counters %v: the new claim's handover is no retry", c)
	}
}

// A registered device that was never onboarded (or whose handover is
// older than its hold) is not sent to the garden when its ISP is silent
// or refuses: an outage of its ISP is its ISP's, reported as ever.
func TestHandoverFallbackOnlyForHandovers(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	const m = "02:00:00:00:01:02" // customer c-s2, unknown to kea
	for _, at := range []time.Duration{0, 30 * time.Second, time.Minute} {
		r.pastT1(at)
		r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(m))))
		if got := r.toPorts(); len(got[upPort]) != 1 || len(got[accPort]) != 0 {
			t.Fatalf("DISCOVER at %v: relayed %v, answered %v; want it relayed", at, got[upPort], got[accPort])
		}
		r.pastT1(at + time.Second)
		r.p.expire(r.p.now())
	}
	// Handed over, then silent past its hold: its ISP's NAK is no
	// handover's failure any more.
	const m2 = "02:77:00:00:00:02"
	r2 := handedOver(t, m2, "c-s1")
	r2.pastT1(time.Minute)
	r2.p.expire(r2.p.now())
	got := r2.dora(m2, keaRefusing(t), nil)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("got %v, want alpha's NAK", got)
	}
	r2.fromClient(discover(t, dhcpv4.WithHwAddr(mac(m2))))
	if got := r2.toPorts(); len(got[upPort]) != 1 || len(got[accPort]) != 0 {
		t.Errorf("DISCOVER after the NAK: relayed %v, answered %v; want it relayed", got[upPort], got[accPort])
	}
	for _, rig := range []*prig{r, r2} {
		if c := rig.p.Counters(); c["handover_failed"] != 0 {
			t.Errorf("counters %v", c)
		}
	}
}

// A device handed over takes its ISP's OFFER, REQUESTs it, and goes back
// to INIT under the same xid before the ISP answers; the ISP then NAKs
// that SELECTING REQUEST: the handover is refused, and the device's next
// DISCOVER is answered from the garden. Before, the NAK of a REQUEST a
// DISCOVER took over was a nak event only: the device's DISCOVERs went to
// its ISP again, a refused handover at most reported as unanswered.
func TestHandoverOvertakenRequestNakRefused(t *testing.T) {
	const m = "02:77:00:00:00:01"
	r := handedOver(t, m, "c-s1")
	req, _ := r.rediscoverPendingOf(m, ispSID)
	r.fromServerAt(ispSID, serverReply(req, dhcpv4.MessageTypeNak, ispSID, ispSID))
	r.relayedTo()
	if c := r.p.Counters(); c["nak_after_discover"] != 1 || c["handover_failed_refused"] != 1 {
		t.Errorf("nak_after_discover %d, handover_failed_refused %d; want 1, 1", c["nak_after_discover"], c["handover_failed_refused"])
	}
	ip := r.gardenDORA(m, "after alpha's NAK of the overtaken REQUEST")
	if l, ok := r.p.OnboardingByAddr(ip); !ok || l.HandoverFailed != HandoverRefused {
		t.Errorf("OnboardingByAddr = %+v, %v; want the refused handover", l, ok)
	}
}

// As TestHandoverRefusedBackToGarden with a 20 min onboarding lease: the
// device's renewal at T1 (10 min) is still the garden's, its failure
// still given with its lease, and its next one (one lease time on) is the
// retry. Before, the record was forgotten 5 min after its last use: the
// renewal at T1 found none and was the handover again (NAKed) half a
// lease time early, the portal no longer told why.
func TestHandoverFallbackOutlivesLongLease(t *testing.T) {
	const m = "02:77:00:00:00:01"
	r := handedOverOn(t, m, "c-s1", Onboarding{LeaseTime: 20 * time.Minute})
	if got := r.dora(m, keaRefusing(t), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("the handover's DORA: %v, want alpha's NAK passed on", got)
	}
	ip := r.gardenDORA(m, "after alpha's NAK")
	r.pastT1(10 * time.Minute)
	if l, ok := r.p.OnboardingByAddr(ip); !ok || l.HandoverFailed != HandoverRefused {
		t.Errorf("OnboardingByAddr at T1 = %+v, %v; want the refused handover", l, ok)
	}
	r.fromClient(renewOf(t, m, ip))
	if got := r.clientMsgs(); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("the renewal at T1 got %v, want the garden's ACK (counters %v)", got, r.p.Counters())
	}
	r.pastT1(21 * time.Minute)
	r.fromClient(renewOf(t, m, ip))
	r.one(dhcpv4.MessageTypeNak)
	if c := r.p.Counters(); c["handover_retry"] != 1 {
		t.Errorf("handover_retry %d one lease time on, want 1", c["handover_retry"])
	}
}

// A device back in the garden whose user has its ISP fix it and claims
// again on the portal with the same ISP and customer ID (its registration,
// and so its record, unchanged) asks for the retry (RetryHandover): its
// failure is no longer given with its lease (the portal shows it
// switching), and its next message, its renewal at T1, long before the
// retry's time one lease time on, is the retry: NAKed, and the ISP binds
// it. Before, the same claim changed nothing: the lease still gave the
// failure, and the device waited a lease time for the retry.
func TestHandoverRetryAsked(t *testing.T) {
	const m, m48 = "02:77:00:00:00:01", 0x027700000001
	r := handedOverOn(t, m, "c-s1", Onboarding{LeaseTime: 20 * time.Minute})
	if got := r.dora(m, keaRefusing(t), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("the handover's DORA: %v, want alpha's NAK passed on", got)
	}
	ip := r.gardenDORA(m, "after alpha's NAK")
	r.pastT1(time.Minute)
	at, ok := r.p.RetryHandover(m48)
	if !ok || at.After(r.p.now()) {
		t.Fatalf("RetryHandover = %v, %v; want a retry due now (%v)", at, ok, r.p.now())
	}
	if l, ok := r.p.OnboardingByAddr(ip); !ok || l.HandoverFailed != "" || l.HandoverISP != "alpha" || !l.HandoverRetry.Equal(at) {
		t.Errorf("OnboardingByAddr after the asked retry = %+v, %v; want no failure, the retry to alpha due at %v", l, ok, at)
	}
	r.pastT1(10 * time.Minute) // its renewal at T1
	r.fromClient(renewOf(t, m, ip))
	if got := r.clientMsgs(); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("the renewal at T1 after the asked retry got %v, want the handover's NAK (counters %v)", got, r.p.Counters())
	}
	if c := r.p.Counters(); c["handover_retry"] != 1 || c["handover_retry_asked"] != 1 {
		t.Errorf("counters %v", c)
	}
	if got := r.dora(m, kea(t, time.Hour), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("the retry's DORA, alpha fixed: %v (counters %v)", got, r.p.Counters())
	}
	if _, ok := r.p.Lease(accPort, 0, m48); !ok {
		t.Error("not bound at alpha")
	}
}

// Asked retries are bounded: none without a failure (a handover under
// way, or registered elsewhere since), one due at a time (asking again
// while it is due changes nothing), a failing one reported again (the
// portal shows the failure), and the next one due handoverAskEvery after
// the last: a subscriber claiming again and again gets its ISP one
// handover a minute at most.
func TestHandoverRetryAskedBounded(t *testing.T) {
	const m, m48 = "02:77:00:00:00:01", 0x027700000001
	r := handedOverOn(t, m, "c-s1", Onboarding{LeaseTime: 20 * time.Minute})
	if at, ok := r.p.RetryHandover(m48); ok {
		t.Errorf("RetryHandover during the handover = %v, want none", at)
	}
	if got := r.dora(m, keaRefusing(t), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("the handover's DORA: %v, want alpha's NAK passed on", got)
	}
	ip := r.gardenDORA(m, "after alpha's NAK")
	first, ok := r.p.RetryHandover(m48)
	if !ok {
		t.Fatal("RetryHandover after the failure: none")
	}
	if again, ok := r.p.RetryHandover(m48); !ok || !again.Equal(first) {
		t.Errorf("RetryHandover again = %v, %v; want the same retry, due %v", again, ok, first)
	}
	r.fromClient(renewOf(t, m, ip))
	r.one(dhcpv4.MessageTypeNak)
	if got := r.dora(m, keaRefusing(t), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("the retry's DORA: %v, want alpha's NAK passed on", got)
	}
	ip = r.gardenDORA(m, "after alpha's NAK of the retry")
	if l, ok := r.p.OnboardingByAddr(ip); !ok || l.HandoverFailed != HandoverRefused || !l.HandoverRetry.After(r.p.now()) {
		t.Errorf("OnboardingByAddr after the retry failed = %+v, %v; want the refused handover again", l, ok)
	}
	next, ok := r.p.RetryHandover(m48)
	if !ok || !next.Equal(first.Add(handoverAskEvery)) {
		t.Fatalf("RetryHandover after the retry failed = %v, %v; want due %v", next, ok, first.Add(handoverAskEvery))
	}
	if l, ok := r.p.OnboardingByAddr(ip); !ok || l.HandoverFailed != "" || !l.HandoverRetry.Equal(next) {
		t.Errorf("OnboardingByAddr after the second ask = %+v, %v; want no failure, the retry due %v", l, ok, next)
	}
	r.fromClient(renewOf(t, m, ip))
	if got := r.clientMsgs(); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("a renewal before the second asked retry is due got %v, want the garden's ACK", got)
	}
	r.pastT1(handoverAskEvery + time.Second)
	r.fromClient(renewOf(t, m, ip))
	r.one(dhcpv4.MessageTypeNak)
	if c := r.p.Counters(); c["handover_retry"] != 2 || c["handover_failed_refused"] != 2 {
		t.Errorf("counters %v", c)
	}
	// Registered elsewhere: no failure of its registration to retry.
	r.dora(m, keaRefusing(t), nil)
	r.gardenDORA(m, "after alpha's third NAK")
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(m)), CustomerID: "c-s2", ISP: "alpha", Source: "claim"}); err != nil {
		t.Fatal(err)
	}
	if at, ok := r.p.RetryHandover(m48); ok {
		t.Errorf("RetryHandover registered elsewhere = %v, want none", at)
	}
}

// A device handed over and bound at its ISP on acc0 is held there by its
// binding: a DISCOVER of its MAC on another circuit within the
// handover's hold is refused as for any bound device (moved_circuit_refused,
// "bound on access acc0", the holder probed), not as an onboarding one.
// Before, the hold's refusal said "onboarding on access acc0, where it is
// in use" of a device no longer onboarding (found by a new-user trial).
func TestHandoverHoldYieldsToBinding(t *testing.T) {
	const m = "02:77:00:00:00:01"
	r := newORig(t, Onboarding{}, 0, true)
	ip := addrOf(r.obDORA(m).YourIPAddr)
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(m)), CustomerID: "c-s1", ISP: "alpha", Source: "claim"}); err != nil {
		t.Fatal(err)
	}
	r.fromClient(renewOf(t, m, ip))
	r.one(dhcpv4.MessageTypeNak)
	if got := r.dora(m, kea(t, time.Hour), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("the handover's DORA: %v", got)
	}
	r.fromClientVLAN(5, discover(t, dhcpv4.WithHwAddr(mac(m))))
	r.p.notes.wait()
	if c := r.p.Counters(); c["moved_circuit_refused"] != 1 || c["onboarding_moved_refused"] != 0 {
		t.Errorf("counters %v, want the DISCOVER on acc1 refused as a bound device's (moved_circuit_refused)", c)
	}
	found := false
	for _, e := range r.eventsOf(subscribers.EventRejected) {
		found = found || strings.Contains(e.Reason, "bound on access acc0")
	}
	if !found {
		t.Errorf("no rejected event naming acc0's binding: %+v", r.eventsOf(subscribers.EventRejected))
	}
}

// A restart while a device is back in the walled garden keeps its failure:
// the restored garden lease, granted after its registration was written,
// was its return to the garden, so the proxy records the failure again
// (reason unknown, handover_failure_restored) with its retry one lease
// time after the grant: its renewals before then are the garden's, and
// its lease tells the portal the ISP has not taken it. A garden lease
// granted before the registration (a handover not tried yet) gets none:
// its next message is the handover. Before, a restart forgot the failure:
// the device was handed over at its next renewal, before its retry was
// due, and its portal page promised a switch.
func TestHandoverFailureRestored(t *testing.T) {
	const m, m48 = "02:77:00:00:00:01", 0x027700000001
	r := handedOver(t, m, "c-s1")
	if got := r.dora(m, keaRefusing(t), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("the handover's DORA: %v, want alpha's NAK passed on", got)
	}
	ip := r.gardenDORA(m, "after alpha's NAK")
	before, _ := r.p.OnboardingByAddr(ip)
	restart := func() {
		t.Helper()
		r.p = New(r.p.config(), r.store, r.p.reg, r.tab, r.snd, nil)
		if _, err := r.p.Restore(time.Now()); err != nil {
			t.Fatal(err)
		}
		r.p.expire(time.Now())
		r.snd.take()
	}
	restart()
	l, ok := r.p.OnboardingByAddr(ip)
	if !ok || l.HandoverFailed != HandoverFailedBeforeStart || l.HandoverISP != "alpha" ||
		l.HandoverRetry.Sub(before.HandoverRetry).Abs() > time.Second {
		t.Errorf("after the restart OnboardingByAddr = %+v, %v; want the failed handover to alpha, its retry at %v", l, ok, before.HandoverRetry)
	}
	if c := r.p.Counters(); c["handover_failure_restored"] != 1 {
		t.Errorf("counters %v, want handover_failure_restored 1", c)
	}
	// Its first renewal, before the retry: the garden's.
	r.pastT1(10 * time.Second)
	r.fromClient(renewOf(t, m, ip))
	r.one(dhcpv4.MessageTypeAck)
	// One lease time after the grant: the handover again.
	r.pastT1(21 * time.Second)
	r.fromClient(renewOf(t, m, ip))
	r.one(dhcpv4.MessageTypeNak)
	if c := r.p.Counters(); c["handover_retry"] != 1 {
		t.Errorf("counters after the retry %v", c)
	}

	// Registered after its garden lease was granted: no failure restored.
	r2 := newORig(t, Onboarding{}, 0, false)
	ip2 := addrOf(r2.obDORA(m).YourIPAddr)
	if err := r2.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(m)), CustomerID: "c-s1", ISP: "alpha", Source: "claim"}); err != nil {
		t.Fatal(err)
	}
	r2.p = New(r2.p.config(), r2.store, r2.p.reg, r2.tab, r2.snd, nil)
	if _, err := r2.p.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, ok := r2.p.reg.Lookup(m48); !ok {
		t.Fatal("the registration is not in the registry")
	}
	if l, ok := r2.p.OnboardingByAddr(ip2); !ok || l.HandoverFailed != "" || r2.p.Counters()["handover_failure_restored"] != 0 {
		t.Errorf("a lease granted before the registration: %+v %v (counters %v); want no failure", l, ok, r2.p.Counters())
	}
}

// A retry of a handover that went unanswered goes back to the garden at
// its first timeout: the device's next DISCOVER is the garden's, where the
// first handover waited a lease time of silence. Before, every retry
// waited a lease time too (a trial: about 30 s without an address in every
// ~60 s cycle while the ISP stayed silent, the portal reachable half the
// time).
func TestHandoverRetryUnansweredFallsBackAtOnce(t *testing.T) {
	const m = "02:77:00:00:00:01"
	r := handedOver(t, m, "c-s9") // kea knows c-s1 only
	silent := func(at time.Duration) { t.Helper(); r.silentDiscover(m, at) }
	silent(0)
	silent(10 * time.Second)
	silent(18 * time.Second)
	r.pastT1(22 * time.Second)
	ip := r.gardenDORA(m, "after 21 s of silence")
	// The retry, one lease time (20 s) after the failure: its renewal
	// NAKed, its DISCOVER relayed, silent once.
	r.pastT1(43 * time.Second)
	r.fromClient(renewOf(t, m, ip))
	r.one(dhcpv4.MessageTypeNak)
	if c := r.p.Counters(); c["handover_retry"] != 1 {
		t.Fatalf("counters %v, want the retry", c)
	}
	silent(44 * time.Second)
	// Its next DISCOVER, 4 s later: the garden's, not a lease time later.
	r.pastT1(48 * time.Second)
	ip2 := r.gardenDORA(m, "after the retry's first timeout")
	if l, ok := r.p.OnboardingByAddr(ip2); !ok || l.HandoverFailed != HandoverUnanswered {
		t.Errorf("OnboardingByAddr = %+v, %v; want the unanswered handover again", l, ok)
	}
	if c := r.p.Counters(); c["handover_failed_unanswered"] != 2 {
		t.Errorf("counters %v, want handover_failed_unanswered 2", c)
	}
}

// silentDiscover has m send a DISCOVER at (from now), expects it relayed,
// not answered, and lets it time out a second later: its ISP silent.
func (r *prig) silentDiscover(m string, at time.Duration) {
	r.t.Helper()
	r.pastT1(at)
	r.fromClient(discover(r.t, dhcpv4.WithHwAddr(mac(m))))
	if got := r.toPorts(); len(got[upPort]) != 1 || len(got[accPort]) != 0 {
		r.t.Fatalf("DISCOVER %v after the handover: relayed %v, answered %v; want it relayed", at, got[upPort], got[accPort])
	}
	r.pastT1(at + time.Second)
	r.p.expire(r.p.now())
}

// TestHandoverKeptAddressLastResort: an address kept for a device after its
// handover goes to another device when the pool has no other (a review:
// a small pool in an onboarding burst ran out while the addresses kept
// after successful handovers sat unused).
func TestHandoverKeptAddressLastResort(t *testing.T) {
	r := handedOverOn(t, "02:77:00:00:00:01", "c-s1", Onboarding{Pool: netip.MustParsePrefix("100.65.1.0/30")}) // one address: .2
	if got := addrOf(r.obDORA("02:77:00:00:00:02").YourIPAddr); got != r.gardenIP {
		t.Errorf("the second device got %v, want the only address, %v, kept for the first", got, r.gardenIP)
	}
}

// TestKeptAddressOfOtherPoolStaysKept: a MAC with addresses kept in two
// pools (a handover from each access) keeps its newer one when another
// device takes its older one as the last resort of a full pool (a review:
// the last-resort pass forgot the MAC's newer kept address too).
func TestKeptAddressOfOtherPoolStaysKept(t *testing.T) {
	var tbl onboardingTable
	circuits := []Circuit{
		{Name: "a", Port: 0, Addr: netip.MustParseAddr("100.64.0.1"), Onboarding: &Onboarding{Pool: netip.MustParsePrefix("100.65.1.0/30")}},
		{Name: "b", Port: 1, Addr: netip.MustParseAddr("100.64.0.1"), Onboarding: &Onboarding{Pool: netip.MustParsePrefix("100.65.2.0/29")}},
	}
	tbl.init(circuits, slog.New(slog.DiscardHandler))
	const x, y = 0x027700000001, 0x027700000002
	now := time.Now()
	ip1, ip2 := netip.MustParseAddr("100.65.1.2"), netip.MustParseAddr("100.65.2.5")
	tbl.quarantineAddr(ip1, now.Add(time.Minute), x, true)
	tbl.quarantineAddr(ip2, now.Add(2*time.Minute), x, true)
	pa := tbl.pools[circuitKey{0, 0}]
	tbl.mu.Lock()
	got, ok := tbl.allocateLocked(pa, y, now)
	tbl.mu.Unlock()
	if !ok || got != ip1 {
		t.Fatalf("y in the full pool a got %v %v, want x's kept %v", got, ok, ip1)
	}
	if tbl.qOwner[x] != ip2 {
		t.Errorf("x's kept address in pool b: %v, want %v", tbl.qOwner[x], ip2)
	}
}
