package dhcpproxy

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// The onboarding rig is the unit rig (proxy_test.go) with an onboarding
// pool on acc0: 100.65.0.0/29, router .1, assignable .2 to .6.
var (
	obPoolPfx = netip.MustParsePrefix("100.65.0.0/29")
	obDNS     = netip.MustParseAddr("100.65.0.1")
	obURI     = "https://portal.example.net/api/captive"
)

func obAddr(last byte) netip.Addr { return netip.AddrFrom4([4]byte{100, 65, 0, last}) }

// newORig returns the unit rig with onboarding on acc0 (ob's zero fields
// filled) and, if vlan5, a second circuit acc1 (VLAN 5 on the same port)
// with pool 100.65.1.0/29.
func newORig(t *testing.T, ob Onboarding, maxTotal int, vlan5 bool) *prig {
	r := newPRig(t)
	if !ob.Pool.IsValid() {
		ob.Pool = obPoolPfx
	}
	if ob.LeaseTime == 0 {
		ob.LeaseTime = 20 * time.Second
	}
	if !ob.DNS.IsValid() {
		ob.DNS = obDNS
	}
	if ob.CaptiveURI == "" {
		ob.CaptiveURI = obURI
	}
	cfg := r.p.config()
	cfg.Circuits = []Circuit{cfg.Circuits[0]}
	cfg.Circuits[0].Onboarding = &ob
	if vlan5 {
		ob1 := ob
		ob1.Pool, ob1.MaxLeases = netip.MustParsePrefix("100.65.1.0/29"), 0
		cfg.Circuits = append(cfg.Circuits, Circuit{Name: "acc1", Interface: "acc0", Port: accPort, VLAN: 5, MAC: accMAC, Addr: ourSID, Onboarding: &ob1})
	}
	cfg.MaxOnboarding = maxTotal
	r.p = New(cfg, r.store, storeRegistry{r.store}, r.tab, r.snd, nil)
	return r
}

// clientMsgs waits for the commits and returns what the subscribers were
// sent; anything sent to an ISP fails the test (onboarding never relays).
func (r *prig) clientMsgs() []*dhcpv4.DHCPv4 {
	r.t.Helper()
	r.p.committing.Wait()
	r.p.notes.wait()
	var out []*dhcpv4.DHCPv4
	for _, s := range r.snd.take() {
		if s.port != accPort {
			r.t.Errorf("a frame was sent to port %d (an ISP): %v", s.port, dhcpOf(s.frame))
			continue
		}
		out = append(out, dhcpOf(s.frame))
	}
	return out
}

// one expects exactly one message of type mt to the subscriber.
func (r *prig) one(mt dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	r.t.Helper()
	got := r.clientMsgs()
	if len(got) != 1 || got[0].MessageType() != mt {
		r.t.Fatalf("subscriber got %v, want one %s", got, mt)
	}
	return got[0]
}

// fromClientVLAN is fromClient on VLAN vlan.
func (r *prig) fromClientVLAN(vlan uint16, m *dhcpv4.DHCPv4) {
	src := binding.MAC48([6]byte(m.ClientHWAddr))
	f := fib.UDPFrame(0xffffffffffff, src, vlan, netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67, m.ToBytes())
	r.p.HandleFrame(accPort, f)
}

// obDORA runs an onboarding DORA for MAC m and returns the ACK.
func (r *prig) obDORA(m string) *dhcpv4.DHCPv4 {
	r.t.Helper()
	r.fromClient(discover(r.t, dhcpv4.WithHwAddr(mac(m))))
	offer := r.one(dhcpv4.MessageTypeOffer)
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	r.fromClient(req)
	return r.one(dhcpv4.MessageTypeAck)
}

func clientMsg(t *testing.T, m string, mt dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	msg, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac(m)), dhcpv4.WithMessageType(mt)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func renewOf(t *testing.T, m string, ip netip.Addr) *dhcpv4.DHCPv4 {
	return clientMsg(t, m, dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(net.IP(ip.AsSlice())))
}

func initReboot(t *testing.T, m string, ip netip.Addr) *dhcpv4.DHCPv4 {
	return clientMsg(t, m, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP(ip.AsSlice()))))
}

func (r *prig) vrfOf(m uint64) (uint8, netip.Addr, bool) {
	r.tab.mu.Lock()
	defer r.tab.mu.Unlock()
	b, ok := r.tab.bound[m]
	return b.ISP, b.IP, ok
}

func (r *prig) eventsOf(kind subscribers.EventKind) []subscribers.Event {
	r.t.Helper()
	r.p.notes.wait()
	evs, err := r.store.Events(0, 0)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []subscribers.Event
	for _, e := range evs {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// checkOptions checks an onboarding OFFER or ACK of ip.
func checkOptions(t *testing.T, m *dhcpv4.DHCPv4, ip netip.Addr) {
	t.Helper()
	if addrOf(m.YourIPAddr) != ip {
		t.Errorf("%s yiaddr %v, want %v", m.MessageType(), m.YourIPAddr, ip)
	}
	if !m.ServerIdentifier().Equal(net.IP(ourSID.AsSlice())) {
		t.Errorf("%s server-id %v, want the circuit's %v", m.MessageType(), m.ServerIdentifier(), ourSID)
	}
	if mask := m.SubnetMask(); mask.String() != net.CIDRMask(29, 32).String() {
		t.Errorf("%s mask %v", m.MessageType(), mask)
	}
	if rt := m.Router(); len(rt) != 1 || !rt[0].Equal(net.IPv4(100, 65, 0, 1)) {
		t.Errorf("%s router %v, want the pool's first address", m.MessageType(), rt)
	}
	if dns := m.DNS(); len(dns) != 1 || !dns[0].Equal(net.IP(obDNS.AsSlice())) {
		t.Errorf("%s DNS %v", m.MessageType(), dns)
	}
	if lt, t1, t2 := m.IPAddressLeaseTime(0), m.IPAddressRenewalTime(0), m.IPAddressRebindingTime(0); lt != 20*time.Second || t1 != 10*time.Second || t2 != 17*time.Second {
		t.Errorf("%s lease %v, T1 %v, T2 %v; want 20s, 10s, 17s", m.MessageType(), lt, t1, t2)
	}
	if uri := string(m.Options.Get(dhcpv4.GenericOptionCode(114))); uri != obURI {
		t.Errorf("%s option 114 %q", m.MessageType(), uri)
	}
	if m.Options.Has(dhcpv4.OptionRelayAgentInformation) || !m.GatewayIPAddr.IsUnspecified() {
		t.Errorf("%s: option 82 or giaddr %v", m.MessageType(), m.GatewayIPAddr)
	}
}

// A MAC without a device record: OFFER and ACK with every option, the
// lease durable and installed in the garden VRF before the ACK; a renewal
// extends it (no event); RELEASE ends it (event), unbinds it. No ISP sees
// any of it.
func TestOnboardingDORA(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	const m = "02:77:00:00:00:01"
	const m48 = 0x027700000001
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(m))))
	offer := r.one(dhcpv4.MessageTypeOffer)
	checkOptions(t, offer, obAddr(2))

	acked := false
	r.snd.onACK = func() {
		acked = true
		ls, err := r.store.OnboardingLeases()
		if err != nil || len(ls) != 1 || ls[0].IP != obAddr(2) {
			t.Errorf("ACK sent before the lease was stored: %+v, %v", ls, err)
		}
		if vrf, ip, ok := r.vrfOf(m48); !ok || vrf != binding.GardenVRF || ip != obAddr(2) {
			t.Errorf("ACK sent before the garden binding: %v %v %v", vrf, ip, ok)
		}
	}
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	start := time.Now()
	r.fromClient(req)
	ack := r.one(dhcpv4.MessageTypeAck)
	r.snd.onACK = nil
	if !acked {
		t.Fatal("no ACK seen")
	}
	checkOptions(t, ack, obAddr(2))
	l, ok := r.p.OnboardingByAddr(obAddr(2))
	if !ok || l.MAC != m48 || l.Access != "acc0" || l.IP != obAddr(2) || l.Expires.Sub(start) < 19*time.Second {
		t.Errorf("OnboardingByAddr = %+v, %v", l, ok)
	}
	evs := r.eventsOf(subscribers.EventOnboarded)
	if len(evs) != 1 || evs[0].ISP != "" || evs[0].IP != obAddr(2) || evs[0].Access != "acc0" || evs[0].LeaseEnd.IsZero() ||
		evs[0].MAC != [6]byte(mac(m)) {
		t.Errorf("onboarded events %+v", evs)
	}
	first := l.Expires

	// RENEWING (unicast, ciaddr): extended, no event.
	time.Sleep(10 * time.Millisecond)
	r.fromClient(renewOf(t, m, obAddr(2)))
	ack = r.one(dhcpv4.MessageTypeAck)
	checkOptions(t, ack, obAddr(2))
	if addrOf(ack.ClientIPAddr) != obAddr(2) {
		t.Errorf("ACK of a renewal: ciaddr %v", ack.ClientIPAddr)
	}
	ls, _ := r.store.OnboardingLeases()
	if len(ls) != 1 || !ls[0].Expires.After(first) || !ls[0].Granted.Equal(l.Granted) {
		t.Errorf("after the renewal: %+v (first end %v)", ls, first)
	}
	if n := len(r.eventsOf(subscribers.EventOnboarded)); n != 1 {
		t.Errorf("%d onboarded events after a renewal, want 1", n)
	}

	// Not an ISP's: no binding, no ISP event, no ISP statistics.
	if bs, _ := r.store.Bindings(); len(bs) != 0 || r.p.Leases() != 0 || len(r.p.LeasesPerISP()) != 0 {
		t.Errorf("onboarding lease visible as a binding: %v", bs)
	}
	if evs, _ := r.store.EventsOf("alpha", 0, 0); len(evs) != 0 {
		t.Errorf("alpha sees events %+v", evs)
	}
	for _, c := range r.p.ISPCounters() {
		if c.Relayed != 0 || c.Outcomes != [NumOutcomes]uint64{} {
			t.Errorf("ISP counters %+v", c)
		}
	}
	if s := r.p.OnboardingStats(); s.Leases != 1 || s.Offers != 0 || s.Grants != 1 || s.Renewals != 1 {
		t.Errorf("stats %+v", s)
	}

	// RELEASE: ended with its event, unbound, gone.
	r.fromClient(clientMsg(t, m, dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(net.IP(obAddr(2).AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice())))))
	if got := r.clientMsgs(); len(got) != 0 {
		t.Errorf("RELEASE answered: %v", got)
	}
	if r.tab.isBound(m48) {
		t.Error("still bound after RELEASE")
	}
	if _, ok := r.p.OnboardingByAddr(obAddr(2)); ok {
		t.Error("OnboardingByAddr after RELEASE")
	}
	if ls, _ := r.store.OnboardingLeases(); len(ls) != 0 {
		t.Errorf("stored after RELEASE: %+v", ls)
	}
	if evs := r.eventsOf(subscribers.EventOnboardingEnded); len(evs) != 1 || evs[0].Reason != subscribers.OnboardingEndReleased || evs[0].ISP != "" || evs[0].IP != obAddr(2) {
		t.Errorf("ended events %+v", evs)
	}
	if s := r.p.OnboardingStats(); s.Leases != 0 || s.Ends[subscribers.OnboardingEndReleased] != 1 {
		t.Errorf("stats %+v", s)
	}
}

// REQUESTs for what is not the MAC's are NAKed with our server-id; a
// SELECTING REQUEST for another server forgets the offer silently; an
// INFORM gets the garden's options and no lease.
func TestOnboardingRequests(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	const m = "02:77:00:00:00:01"
	// INIT-REBOOT for an address from an ISP the device had before, and
	// for a pool address not its own.
	for _, ip := range []netip.Addr{netip.MustParseAddr("10.1.2.3"), obAddr(4)} {
		r.fromClient(initReboot(t, m, ip))
		if nak := r.one(dhcpv4.MessageTypeNak); !nak.ServerIdentifier().Equal(net.IP(ourSID.AsSlice())) {
			t.Errorf("NAK for %v with server-id %v", ip, nak.ServerIdentifier())
		}
	}
	// SELECTING another server: the offer is forgotten, no answer.
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(m))))
	offer := r.one(dhcpv4.MessageTypeOffer)
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	req.UpdateOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 0, 2, 77)))
	r.fromClient(req)
	if got := r.clientMsgs(); len(got) != 0 {
		t.Errorf("REQUEST to another server answered: %v", got)
	}
	if s := r.p.OnboardingStats(); s.Offers != 0 {
		t.Errorf("offer kept after the client chose another server: %+v", s)
	}
	// SELECTING us for an address we did not offer it.
	req, _ = dhcpv4.NewRequestFromOffer(offer)
	r.fromClient(req)
	r.one(dhcpv4.MessageTypeNak)
	if c := r.p.Counters(); c["onboarding_nak"] != 3 {
		t.Errorf("counters %v", c)
	}
	// INFORM from an address of the pool.
	r.fromClient(clientMsg(t, m, dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(net.IP(obAddr(3).AsSlice()))))
	ack := r.one(dhcpv4.MessageTypeAck)
	if !ack.YourIPAddr.IsUnspecified() || ack.Options.Has(dhcpv4.OptionIPAddressLeaseTime) || len(ack.Router()) != 1 ||
		len(ack.DNS()) != 1 || string(ack.Options.Get(dhcpv4.GenericOptionCode(114))) != obURI || addrOf(ack.ClientIPAddr) != obAddr(3) {
		t.Errorf("ACK to INFORM: %v", ack)
	}
	if ls, _ := r.store.OnboardingLeases(); len(ls) != 0 {
		t.Errorf("leases stored: %+v", ls)
	}
}

// DECLINE ends the lease and quarantines the address one lease time: it
// is offered to nobody meanwhile.
func TestOnboardingDecline(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	r.obDORA("02:77:00:00:00:01")
	r.fromClient(clientMsg(t, "02:77:00:00:00:01", dhcpv4.MessageTypeDecline,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP(obAddr(2).AsSlice()))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice())))))
	if got := r.clientMsgs(); len(got) != 0 {
		t.Errorf("DECLINE answered: %v", got)
	}
	if r.tab.isBound(0x027700000001) {
		t.Error("bound after DECLINE")
	}
	if evs := r.eventsOf(subscribers.EventOnboardingEnded); len(evs) != 1 || evs[0].Reason != subscribers.OnboardingEndDeclined {
		t.Errorf("events %+v", evs)
	}
	// .3 to .6 for four MACs (the decliner among them); then the pool is
	// full: .2 is quarantined.
	var got []netip.Addr
	for i := 1; i <= 5; i++ {
		r.fromClient(discover(t, dhcpv4.WithHwAddr(net.HardwareAddr{2, 0x77, 0, 0, 0, byte(i)})))
		for _, o := range r.clientMsgs() {
			got = append(got, addrOf(o.YourIPAddr))
		}
	}
	want := []netip.Addr{obAddr(3), obAddr(4), obAddr(5), obAddr(6)}
	if len(got) != 4 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
		t.Errorf("offers %v, want %v (.2 quarantined)", got, want)
	}
	if r.p.Counters()["onboarding_full"] != 1 {
		t.Errorf("counters %v", r.p.Counters())
	}
	// A lease time later the quarantine (and the offers) are over.
	r.p.expire(time.Now().Add(21 * time.Second))
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:77:00:00:00:09"))))
	if o := r.one(dhcpv4.MessageTypeOffer); addrOf(o.YourIPAddr) != obAddr(2) {
		t.Errorf("after the quarantine: offered %v, want .2", o.YourIPAddr)
	}
}

// Leases end at expiry (event, unbound); offers are dropped after 10 s.
func TestOnboardingExpiry(t *testing.T) {
	r := newORig(t, Onboarding{LeaseTime: 2 * time.Second}, 0, false)
	r.obDORA("02:77:00:00:00:01")
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:77:00:00:00:02"))))
	offer := r.one(dhcpv4.MessageTypeOffer)
	now := time.Now()
	r.p.expire(now.Add(time.Second))
	if s := r.p.OnboardingStats(); s.Leases != 1 || s.Offers != 1 {
		t.Fatalf("expired early: %+v", s)
	}
	r.p.expire(now.Add(3 * time.Second))
	if r.tab.isBound(0x027700000001) {
		t.Error("still bound after expiry")
	}
	if ls, _ := r.store.OnboardingLeases(); len(ls) != 0 {
		t.Errorf("stored after expiry: %+v", ls)
	}
	if evs := r.eventsOf(subscribers.EventOnboardingEnded); len(evs) != 1 || evs[0].Reason != subscribers.OnboardingEndExpired {
		t.Errorf("events %+v", evs)
	}
	r.p.expire(now.Add(11 * time.Second))
	if s := r.p.OnboardingStats(); s.Leases != 0 || s.Offers != 0 || s.Ends[subscribers.OnboardingEndExpired] != 1 {
		t.Errorf("stats %+v", s)
	}
	// The expired offer's REQUEST is NAKed.
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	r.fromClient(req)
	r.one(dhcpv4.MessageTypeNak)
}

// Next-fit: a freed address is offered again last.
func TestOnboardingNextFit(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	r.obDORA("02:77:00:00:00:0a")
	r.obDORA("02:77:00:00:00:0b")
	r.fromClient(clientMsg(t, "02:77:00:00:00:0a", dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(net.IP(obAddr(2).AsSlice()))))
	r.clientMsgs()
	var got []netip.Addr
	for _, m := range []string{"02:77:00:00:00:0c", "02:77:00:00:00:0d", "02:77:00:00:00:0e", "02:77:00:00:00:0f"} {
		got = append(got, addrOf(r.obDORA(m).YourIPAddr))
	}
	want := []netip.Addr{obAddr(4), obAddr(5), obAddr(6), obAddr(2)}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("leases %v, want %v", got, want)
		}
	}
	// A second DISCOVER of a MAC with a lease offers its lease.
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:77:00:00:00:0c"))))
	if o := r.one(dhcpv4.MessageTypeOffer); addrOf(o.YourIPAddr) != obAddr(4) {
		t.Errorf("re-DISCOVER offered %v, want its lease .4", o.YourIPAddr)
	}
	if ls := r.p.OnboardingLeases(); len(ls) != 5 || ls[0].IP != obAddr(2) || ls[4].IP != obAddr(6) {
		t.Errorf("OnboardingLeases %+v", ls)
	}
}

// The per-circuit and total caps (leases + offers) hold against a flood of
// made-up MACs, and the flood spends neither the registered subscribers'
// budget: one's DORA is relayed and bound as usual.
func TestOnboardingCaps(t *testing.T) {
	r := newORig(t, Onboarding{MaxLeases: 2}, 3, true)
	r.p.setLimits(func(l *Limits) { l.CircuitRate, l.CircuitBurst = 5, 5 })
	for i := range 300 {
		hw := net.HardwareAddr{0x02, 0x66, 0, 0, byte(i >> 8), byte(i)}
		r.fromClient(discover(t, dhcpv4.WithHwAddr(hw)))
		hw5 := net.HardwareAddr{0x02, 0x65, 0, 0, byte(i >> 8), byte(i)}
		r.fromClientVLAN(5, discover(t, dhcpv4.WithHwAddr(hw5)))
	}
	offers := map[uint16]int{}
	for _, s := range r.snd.take() {
		if s.port != accPort {
			t.Fatalf("flood relayed to port %d", s.port)
		}
		if m := dhcpOf(s.frame); m != nil && m.MessageType() == dhcpv4.MessageTypeOffer {
			if obPoolPfx.Contains(addrOf(m.YourIPAddr)) {
				offers[0]++
			} else {
				offers[5]++
			}
		}
	}
	// acc0 stops at its MaxLeases (2), acc1 at the total (3).
	if offers[0] != 2 || offers[5] != 1 {
		t.Errorf("offers %v, want 2 on acc0, 1 on acc1", offers)
	}
	c := r.p.Counters()
	if c["onboarding_full"] == 0 || c["onboarding_rate_limited"] == 0 || c["unknown_subscriber"] != 0 {
		t.Errorf("counters %v", c)
	}
	if s := r.p.OnboardingStats(); s.Offers != 3 || s.RefusedFull == 0 || s.RefusedRate == 0 {
		t.Errorf("stats %+v", s)
	}
	got := r.dora("02:00:00:00:01:01", kea(t, time.Minute), nil)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("registered subscriber during the flood got %v, want its ISP's ACK", got)
	}
	if vrf, _, ok := r.vrfOf(0x020000000101); !ok || vrf != 0 {
		t.Errorf("registered subscriber bound in VRF %d (%v)", vrf, ok)
	}
	r.p.notes.wait()
	if evs, _ := r.store.Events(0, 0); len(evs) > 2*noiseBurst+5 {
		t.Errorf("%d events stored during the flood", len(evs))
	}
}

// Handover: a MAC that got a device record after its onboarding lease has
// its RENEW of the onboarding address NAKed by ispmux (never relayed), the
// lease ended; its DISCOVER then goes to its ISP. A DISCOVER of a
// registered MAC that still holds an onboarding lease ends it and is
// relayed; the ISP binding that follows is not undone by the onboarding
// lease's end.
func TestOnboardingHandover(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	const m, m48 = "02:77:00:00:00:01", 0x027700000001
	r.obDORA(m)
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(m)), CustomerID: "c-s1", ISP: "alpha", Source: "claim"}); err != nil {
		t.Fatal(err)
	}
	if vrf, _, ok := r.vrfOf(m48); !ok || vrf != binding.GardenVRF {
		t.Fatal("the claim must not end the onboarding lease")
	}
	r.fromClient(renewOf(t, m, obAddr(2)))
	nak := r.one(dhcpv4.MessageTypeNak)
	if !nak.ServerIdentifier().Equal(net.IP(ourSID.AsSlice())) {
		t.Errorf("handover NAK with server-id %v", nak.ServerIdentifier())
	}
	if r.tab.isBound(m48) {
		t.Error("still in the garden after the handover NAK")
	}
	if evs := r.eventsOf(subscribers.EventOnboardingEnded); len(evs) != 1 || evs[0].Reason != subscribers.OnboardingEndHandover {
		t.Errorf("events %+v", evs)
	}
	if c := r.p.Counters(); c["handover_nak"] != 1 || c["onboarding_handover_nak"] != 1 {
		t.Errorf("counters %v", c)
	}
	got := r.dora(m, kea(t, time.Minute), nil)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("after the handover the DORA with the ISP gave %v", got)
	}
	if vrf, ip, ok := r.vrfOf(m48); !ok || vrf != 0 || ip != netip.MustParseAddr("100.64.0.100") {
		t.Errorf("bound %v %v %v, want alpha's lease", vrf, ip, ok)
	}

	// (b) DISCOVER of a registered MAC holding an onboarding lease.
	const m2, m2x = "02:77:00:00:00:02", 0x027700000002
	r.obDORA(m2)
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(m2)), CustomerID: "c-s1", ISP: "alpha", Source: "claim"}); err != nil {
		t.Fatal(err)
	}
	got = r.dora(m2, keaGiving(t, "100.64.0.101"), nil)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("DORA with the ISP gave %v", got)
	}
	if vrf, ip, ok := r.vrfOf(m2x); !ok || vrf != 0 || ip != netip.MustParseAddr("100.64.0.101") {
		t.Errorf("bound %v %v %v, want alpha's lease", vrf, ip, ok)
	}
	if s := r.p.OnboardingStats(); s.Leases != 0 || s.Ends[subscribers.OnboardingEndHandover] != 2 {
		t.Errorf("stats %+v", s)
	}
	r.p.expire(time.Now().Add(time.Minute / 2))
	if !r.tab.isBound(m2x) {
		t.Error("the ISP binding was undone")
	}
}

// A registered MAC's INIT-REBOOT for an onboarding address it holds no
// lease of (ispmux restarted and forgot, or the lease expired): NAKed.
func TestOnboardingHandoverStateless(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	r.fromClient(initReboot(t, "02:00:00:00:01:01", obAddr(3)))
	r.one(dhcpv4.MessageTypeNak)
	if r.p.Counters()["handover_nak"] != 1 {
		t.Errorf("counters %v", r.p.Counters())
	}
}

// A blocked MAC has a record: silence, no onboarding.
func TestOnboardingBlocked(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac("02:77:00:00:00:01")), ISP: "alpha", Blocked: true, Source: "api"}); err != nil {
		t.Fatal(err)
	}
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:77:00:00:00:01"))))
	if got := r.clientMsgs(); len(got) != 0 {
		t.Errorf("blocked MAC got %v", got)
	}
	if c := r.p.Counters(); c["blocked_subscriber"] != 1 || c["onboarding_offer"] != 0 {
		t.Errorf("counters %v", c)
	}
}

// TestOnboardingBlockedEndsLease: the operator's block of a MAC in the
// walled garden (a MAC no ISP has: a registration of no ISP, blocked)
// ends its onboarding lease at once (RevalidateMACs, as the tenant
// service calls it after the block): unbound from the garden, removed
// from the store with an onboarding-ended event of reason blocked and no
// ISP, counted; its next DISCOVER gets silence and is counted
// blocked_subscriber, with a blocked event of no ISP. Before, the lease
// and the garden were kept until the lease ran out.
func TestOnboardingBlockedEndsLease(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	const m = "02:77:00:00:00:01"
	const m48 = 0x027700000001
	checkOptions(t, r.obDORA(m), obAddr(2))
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(m)), Blocked: true, Source: "api"}); err != nil {
		t.Fatal(err)
	}
	r.p.RevalidateMACs([]uint64{m48})
	if _, ok := r.p.OnboardingByAddr(obAddr(2)); ok {
		t.Error("the blocked MAC still holds its onboarding lease")
	}
	if r.tab.isBound(m48) {
		t.Error("the blocked MAC is still bound in the garden")
	}
	if ls, err := r.store.OnboardingLeases(); err != nil || len(ls) != 0 {
		t.Errorf("stored onboarding leases %+v, %v", ls, err)
	}
	evs := r.eventsOf(subscribers.EventOnboardingEnded)
	if len(evs) != 1 || evs[0].Reason != subscribers.OnboardingEndBlocked || evs[0].ISP != "" || evs[0].IP != obAddr(2) {
		t.Errorf("onboarding-ended events %+v", evs)
	}
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(m))))
	if got := r.clientMsgs(); len(got) != 0 {
		t.Errorf("blocked MAC got %v", got)
	}
	c := r.p.Counters()
	if c["onboarding_end_blocked"] != 1 || c["blocked_subscriber"] != 1 || c["onboarding_offer"] != 1 {
		t.Errorf("counters: onboarding_end_blocked %d, blocked_subscriber %d, onboarding_offer %d; want 1, 1, 1",
			c["onboarding_end_blocked"], c["blocked_subscriber"], c["onboarding_offer"])
	}
	if evs := r.eventsOf(subscribers.EventBlocked); len(evs) != 1 || evs[0].ISP != "" || evs[0].MAC != [6]byte(mac(m)) {
		t.Errorf("blocked events %+v", evs)
	}
	if n := r.p.OnboardingStats().Ends[subscribers.OnboardingEndBlocked]; n != 1 {
		t.Errorf("OnboardingStats ends blocked = %d", n)
	}
}

// TestOnboardingRestoreBlocked: an onboarding lease stored for a MAC the
// operator blocked meanwhile (while ispmux was down, or a crash between
// the block's commit and the lease's end) is ended at start (reason
// blocked), not bound in the garden again.
func TestOnboardingRestoreBlocked(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	now := time.Now()
	l := subscribers.OnboardingLease{MAC: [6]byte{2, 0x77, 0, 0, 0, 1}, Access: "acc0", IP: obAddr(2), Expires: now.Add(10 * time.Second)}
	if _, err := r.store.CommitOnboarding(l, subscribers.Event{}); err != nil {
		t.Fatal(err)
	}
	if err := r.store.PutRegistration(subscribers.Registration{MAC: l.MAC, Blocked: true, Source: "api"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.p.Restore(now); err != nil {
		t.Fatal(err)
	}
	if r.tab.isBound(0x027700000001) {
		t.Error("the blocked MAC's lease was bound in the garden again")
	}
	if ls, _ := r.store.OnboardingLeases(); len(ls) != 0 {
		t.Errorf("stored after restore: %+v", ls)
	}
	if evs := r.eventsOf(subscribers.EventOnboardingEnded); len(evs) != 1 || evs[0].Reason != subscribers.OnboardingEndBlocked {
		t.Errorf("onboarding-ended events %+v, want one, blocked", evs)
	}
}

// Restore: room is made in the tables for the leases to bind again, at
// once (not for the others); an
// unexpired lease is bound in the garden again, an expired one and one of
// a circuit without onboarding now are ended; every stored
// address is quarantined one lease time for the other MACs (its holder may
// have it back).
func TestOnboardingRestore(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, false)
	now := time.Now()
	for _, l := range []subscribers.OnboardingLease{
		{MAC: [6]byte{2, 0x77, 0, 0, 0, 1}, Access: "acc0", IP: obAddr(2), Expires: now.Add(10 * time.Second)},
		{MAC: [6]byte{2, 0x77, 0, 0, 0, 2}, Access: "acc0", IP: obAddr(3), Expires: now.Add(-time.Second)},
		{MAC: [6]byte{2, 0x77, 0, 0, 0, 3}, Access: "gone", IP: obAddr(4), Expires: now.Add(10 * time.Second)},
	} {
		if _, err := r.store.CommitOnboarding(l, subscribers.Event{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.p.Restore(now); err != nil {
		t.Fatal(err)
	}
	// Room made at once for the one lease of the 3 read that is bound
	// again (after the ISP bindings' Reserve, of none here): not for the
	// expired one nor the one of a circuit without onboarding, which are
	// ended.
	if !slices.Equal(r.tab.reserved, []int{0, 1}) {
		t.Errorf("Reserve calls %v, want [0 1]", r.tab.reserved)
	}
	if vrf, ip, ok := r.vrfOf(0x027700000001); !ok || vrf != binding.GardenVRF || ip != obAddr(2) {
		t.Errorf("unexpired lease not restored: %v %v %v", vrf, ip, ok)
	}
	if r.tab.isBound(0x027700000002) || r.tab.isBound(0x027700000003) {
		t.Error("expired or removed lease bound")
	}
	if ls, _ := r.store.OnboardingLeases(); len(ls) != 1 || ls[0].IP != obAddr(2) {
		t.Errorf("stored after restore: %+v", ls)
	}
	reasons := map[string]bool{}
	for _, e := range r.eventsOf(subscribers.EventOnboardingEnded) {
		reasons[e.Reason] = true
	}
	if len(reasons) != 2 || !reasons[subscribers.OnboardingEndExpired] || !reasons[subscribers.OnboardingEndRemoved] {
		t.Errorf("end reasons %v, want expired and removed", reasons)
	}
	if l, ok := r.p.OnboardingByAddr(obAddr(2)); !ok || l.MAC != 0x027700000001 {
		t.Errorf("OnboardingByAddr(.2) = %+v, %v", l, ok)
	}
	// Another MAC is not offered .2 (leased), .3 (quarantined) nor .4
	// (quarantined although its lease was removed).
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:77:00:00:00:09"))))
	if o := r.one(dhcpv4.MessageTypeOffer); addrOf(o.YourIPAddr) != obAddr(5) {
		t.Errorf("new MAC offered %v, want .5", o.YourIPAddr)
	}
	// The expired lease's holder gets its address back.
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:77:00:00:00:02"))))
	if o := r.one(dhcpv4.MessageTypeOffer); addrOf(o.YourIPAddr) != obAddr(3) {
		t.Errorf("former holder offered %v, want .3", o.YourIPAddr)
	}
	// The restored lease renews; its holder's INIT-REBOOT is ACKed.
	r.fromClient(initReboot(t, "02:77:00:00:00:01", obAddr(2)))
	checkOptions(t, r.one(dhcpv4.MessageTypeAck), obAddr(2))
}

// wantGardenOnAcc0 checks that m48's onboarding lease of ip on acc0 is
// still held and bound in the garden, and no onboarding lease ended.
func (r *prig) wantGardenOnAcc0(m48 uint64, ip netip.Addr, what string) {
	r.t.Helper()
	ls := r.p.OnboardingLeases()
	vrf, bound, ok := r.vrfOf(m48)
	if len(ls) != 1 || ls[0].Access != "acc0" || ls[0].IP != ip || !ok || vrf != binding.GardenVRF || bound != ip {
		r.t.Errorf("%s: onboarding leases %+v, bound %v %v %v; want %v held on acc0 and in the garden (counters %v)",
			what, ls, vrf, bound, ok, ip, r.p.Counters())
	}
	if evs := r.eventsOf(subscribers.EventOnboardingEnded); len(evs) != 0 {
		r.t.Errorf("%s: onboarding ended %+v", what, evs)
	}
}

// wantRefusedNamingAcc0 checks the onboarding_moved_refused counter and a
// rejected event on acc1 naming acc0.
func (r *prig) wantRefusedNamingAcc0(n uint64) {
	r.t.Helper()
	if got := r.p.Counters()["onboarding_moved_refused"]; got != n {
		r.t.Errorf("onboarding_moved_refused %d, want %d", got, n)
	}
	found := false
	for _, e := range r.eventsOf(subscribers.EventRejected) {
		found = found || e.Access == "acc1" && strings.Contains(e.Reason, "access acc0")
	}
	if !found {
		r.t.Errorf("no rejected event on acc1 naming acc0 (events %v)", r.eventsOf(subscribers.EventRejected))
	}
}

// A MAC holding an onboarding lease on acc0 that DISCOVERs on acc1: no
// offer while that lease may be in use (a device on acc1 forging the MAC
// must not cut the device on acc0 out of the portal: see
// TestOnboardingForgedMACOnAnotherCircuit). Once the lease has run out
// unrenewed (one lease time at most), the old lease ends (moved) and acc1
// offers from its own pool. Before, the first DISCOVER ended it.
func TestOnboardingMoved(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, true)
	const m, m48 = "02:77:00:00:00:01", 0x027700000001
	r.obDORA(m)
	r.fromClientVLAN(5, discover(t, dhcpv4.WithHwAddr(mac(m))))
	if got := r.clientMsgs(); len(got) != 0 {
		t.Errorf("DISCOVER on acc1 while the acc0 lease is live: %v, want no answer", got)
	}
	r.wantGardenOnAcc0(m48, obAddr(2), "DISCOVER on acc1")
	r.pastT1(20 * time.Second)
	r.fromClientVLAN(5, discover(t, dhcpv4.WithHwAddr(mac(m))))
	if o := r.one(dhcpv4.MessageTypeOffer); addrOf(o.YourIPAddr) != netip.MustParseAddr("100.65.1.2") {
		t.Errorf("offered %v on acc1", o.YourIPAddr)
	}
	if r.tab.isBound(m48) {
		t.Error("still bound on acc0")
	}
	if evs := r.eventsOf(subscribers.EventOnboardingEnded); len(evs) != 1 || evs[0].Reason != subscribers.OnboardingEndMoved || evs[0].Access != "acc0" {
		t.Errorf("events %+v", evs)
	}
}

// A device on acc1 forging the MAC of a device without a record that holds
// an onboarding lease on acc0 (in the portal) DISCOVERs again and again;
// the device on acc0 renews. No DISCOVER is answered or ends the lease:
// each is counted (onboarding_moved_refused) with a rejected event naming
// acc0, and the renewal keeps the lease past its first end. Before, the
// first DISCOVER ended the lease (moved): the device on acc0 lost the
// garden (and the portal) mid-onboarding, and the forger got an address.
func TestOnboardingForgedMACOnAnotherCircuit(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, true)
	const m, m48 = "02:77:00:00:00:01", 0x027700000001
	ip := addrOf(r.obDORA(m).YourIPAddr)
	r.fromClientVLAN(5, discover(t, dhcpv4.WithHwAddr(mac(m))))
	if got := r.clientMsgs(); len(got) != 0 {
		t.Errorf("forged DISCOVER on acc1 answered: %v", got)
	}
	r.wantGardenOnAcc0(m48, ip, "forged DISCOVER on acc1")
	r.wantRefusedNamingAcc0(1)
	// The device renews at T1, on acc0.
	r.pastT1(10 * time.Second)
	r.fromClient(renewOf(t, m, ip))
	checkOptions(t, r.one(dhcpv4.MessageTypeAck), ip)
	// Past the lease's first end, not its renewed one: still refused.
	r.pastT1(25 * time.Second)
	r.p.expire(r.p.now())
	r.fromClientVLAN(5, discover(t, dhcpv4.WithHwAddr(mac(m))))
	if got := r.clientMsgs(); len(got) != 0 {
		t.Errorf("forged DISCOVER on acc1 after the renewal answered: %v", got)
	}
	r.wantGardenOnAcc0(m48, ip, "forged DISCOVER on acc1 after the renewal")
	r.wantRefusedNamingAcc0(2)
}

// registeredInGarden is the two-circuit onboarding rig with MAC m holding
// an onboarding lease on acc0 and then registered at alpha for any access
// (the API, a claim token: not pinned), its handover not done yet. It
// returns the lease's address.
func registeredInGarden(t *testing.T, m string) (*prig, netip.Addr) {
	r := newORig(t, Onboarding{}, 0, true)
	ip := addrOf(r.obDORA(m).YourIPAddr)
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(m)), CustomerID: "c-s1", ISP: "alpha", Source: "api"}); err != nil {
		t.Fatal(err)
	}
	return r, ip
}

// A registered MAC's RELEASE or DECLINE of its onboarding lease, sent on
// another circuit than the lease's (a device there forging the MAC, the
// address guessed), ends nothing and is counted (release_not_own_address,
// decline_not_own_address: it holds nothing there); a DECLINE quarantines nothing. Before, either
// ended the device's onboarding lease on acc0 (released, declined).
func TestOnboardingEndFromAnotherCircuitIgnored(t *testing.T) {
	const m, m48 = "02:77:00:00:00:01", 0x027700000001
	for _, mt := range []dhcpv4.MessageType{dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline} {
		t.Run(mt.String(), func(t *testing.T) {
			r, ip := registeredInGarden(t, m)
			named := dhcpv4.WithClientIP(net.IP(ip.AsSlice()))
			if mt == dhcpv4.MessageTypeDecline {
				named = dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP(ip.AsSlice())))
			}
			r.fromClientVLAN(5, clientMsg(t, m, mt, named, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice())))))
			if got := r.clientMsgs(); len(got) != 0 {
				t.Errorf("%s on acc1: %v", mt, got)
			}
			r.wantGardenOnAcc0(m48, ip, mt.String()+" on acc1")
			counter := "release_not_own_address"
			if mt == dhcpv4.MessageTypeDecline {
				counter = "decline_not_own_address"
			}
			if n := r.p.Counters()[counter]; n != 1 {
				t.Errorf("%s %d, want 1 (counters %v)", counter, n, r.p.Counters())
			}
			// The same message on acc0 ends it.
			r.fromClient(clientMsg(t, m, mt, named, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice())))))
			r.clientMsgs()
			if r.tab.isBound(m48) || len(r.p.OnboardingLeases()) != 0 {
				t.Errorf("%s on acc0 left the lease", mt)
			}
		})
	}
}

// The handover of a registered MAC (any access) from the garden to its
// ISP cannot be triggered or taken from another circuit. From acc1 (a
// device forging the MAC): an INIT-REBOOT of the onboarding address is
// NAKed there and ends nothing; a DISCOVER and a SELECTING REQUEST for an
// ISP's address are refused (onboarding_moved_refused, rejected events
// naming acc0) and reach no ISP. The device's handover on acc0 then goes
// as usual, and while it does its DORA with alpha (the onboarding lease
// ended by the handover NAK), acc1's DISCOVER is still refused: acc1
// cannot be bound first, which would leave the device on acc0 refused for
// client_lease_max (endOtherCircuits). Before, each of the three messages
// ended the onboarding lease on acc0 (handover), the DISCOVER and REQUEST
// were relayed, and the forger could be bound at alpha with the device's
// service.
func TestOnboardingHandoverFromAnotherCircuit(t *testing.T) {
	const m, m48 = "02:77:00:00:00:01", 0x027700000001
	r, ip := registeredInGarden(t, m)
	isp := net.IP(netip.MustParseAddr("100.64.0.100").AsSlice())
	r.fromClientVLAN(5, initReboot(t, m, ip))
	if got := r.toPorts(); len(got[upPort]) != 0 || len(got[accPort]) != 1 || got[accPort][0].MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("INIT-REBOOT of the onboarding address on acc1: %v, want a NAK on the access only", got)
	}
	r.wantGardenOnAcc0(m48, ip, "INIT-REBOOT on acc1")
	for _, msg := range []*dhcpv4.DHCPv4{
		discover(t, dhcpv4.WithHwAddr(mac(m))),
		clientMsg(t, m, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(isp)),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice())))),
	} {
		r.fromClientVLAN(5, msg)
		r.p.committing.Wait()
		if got := r.toPorts(); len(got[upPort]) != 0 || len(got[accPort]) != 0 {
			t.Errorf("%s on acc1: relayed %v, answered %v; want it refused", msg.MessageType(), got[upPort], got[accPort])
		}
		r.wantGardenOnAcc0(m48, ip, msg.MessageType().String()+" on acc1")
	}
	r.wantRefusedNamingAcc0(2)

	// The handover on acc0: its renewal NAKed, the onboarding lease
	// ended; acc1's DISCOVER meanwhile refused; its DORA with alpha.
	r.fromClient(renewOf(t, m, ip))
	r.one(dhcpv4.MessageTypeNak)
	r.fromClientVLAN(5, discover(t, dhcpv4.WithHwAddr(mac(m))))
	r.p.committing.Wait()
	if got := r.toPorts(); len(got[upPort]) != 0 || len(got[accPort]) != 0 {
		t.Errorf("DISCOVER on acc1 after acc0's handover NAK: relayed %v, answered %v; want it refused", got[upPort], got[accPort])
	}
	got := r.dora(m, kea(t, time.Hour), nil)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("the handover's DORA on acc0: %v (counters %v)", got, r.p.Counters())
	}
	if _, ok := r.p.Lease(accPort, 0, m48); !ok {
		t.Errorf("not bound at alpha on acc0 after the handover (counters %v)", r.p.Counters())
	}
	r.wantRefusedNamingAcc0(3)
}

// The handover's DORA with the ISP takes longer than one onboarding lease
// time (the ISP silent: its server does not know the customer yet, or is
// down), the device on acc0 DISCOVERing all along. A DISCOVER with its
// MAC on acc1 is refused for as long as the device keeps asking on acc0
// (each of its DISCOVERs holds the MAC there one more lease time), and
// again once the ISP answers: the device's DORA on acc0 binds it. Before,
// the hold ended one lease time after the handover whatever the device
// did: acc1's DISCOVER was relayed, and whoever the ISP answered first
// was bound (acc1 spamming, acc0 backing off), the device on acc0 then
// refused client_lease_max and for good while acc1 renewed.
func TestOnboardingHandoverHoldLastsWhileTheDeviceAsks(t *testing.T) {
	const m, m48 = "02:77:00:00:00:01", 0x027700000001
	r, ip := registeredInGarden(t, m)
	r.fromClient(renewOf(t, m, ip))
	r.one(dhcpv4.MessageTypeNak) // the handover: the MAC held on acc0
	for _, at := range []time.Duration{0, 10 * time.Second, 18 * time.Second} {
		r.pastT1(at)
		r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(m))))
		if got := r.toPorts(); len(got[upPort]) != 1 || got[upPort][0].MessageType() != dhcpv4.MessageTypeDiscover {
			t.Fatalf("the device's DISCOVER on acc0 %v after the handover: relayed %v, want it relayed", at, got[upPort])
		}
	}
	// One lease time and more after the handover, 7 s after the
	// device's last DISCOVER.
	r.pastT1(25 * time.Second)
	r.p.expire(r.p.now())
	r.fromClientVLAN(5, discover(t, dhcpv4.WithHwAddr(mac(m))))
	r.p.committing.Wait()
	if got := r.toPorts(); len(got[upPort]) != 0 || len(got[accPort]) != 0 {
		t.Errorf("DISCOVER on acc1 while the device on acc0 still asks: relayed %v, answered %v; want it refused (counters %v)",
			got[upPort], got[accPort], r.p.Counters())
	}
	got := r.dora(m, kea(t, time.Hour), nil)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("the handover's DORA on acc0 once alpha answers: %v (counters %v)", got, r.p.Counters())
	}
	if _, ok := r.p.Lease(accPort, 0, m48); !ok {
		t.Errorf("not bound at alpha on acc0 (counters %v)", r.p.Counters())
	}
}

// A registered MAC (any access) holding an onboarding lease on acc0,
// really moved to acc1: its DISCOVER there is refused while that lease is
// live; once it has run out unrenewed, the next DISCOVER ends it (moved)
// and is relayed to the ISP. Before, the first DISCOVER ended it
// (handover) and was relayed at once, whoever sent it.
func TestOnboardingRegisteredMoved(t *testing.T) {
	const m, m48 = "02:77:00:00:00:01", 0x027700000001
	r, ip := registeredInGarden(t, m)
	r.fromClientVLAN(5, discover(t, dhcpv4.WithHwAddr(mac(m))))
	r.p.committing.Wait()
	if got := r.toPorts(); len(got[upPort]) != 0 || len(got[accPort]) != 0 {
		t.Errorf("DISCOVER on acc1 while the acc0 lease is live: relayed %v, answered %v; want it refused", got[upPort], got[accPort])
	}
	r.wantGardenOnAcc0(m48, ip, "DISCOVER on acc1")
	r.pastT1(20 * time.Second)
	r.fromClientVLAN(5, discover(t, dhcpv4.WithHwAddr(mac(m))))
	r.p.committing.Wait()
	if got := r.toPorts(); len(got[upPort]) != 1 || got[upPort][0].MessageType() != dhcpv4.MessageTypeDiscover {
		t.Errorf("DISCOVER on acc1 one lease time later: relayed %v, want it relayed", got[upPort])
	}
	if evs := r.eventsOf(subscribers.EventOnboardingEnded); len(evs) != 1 || evs[0].Reason != subscribers.OnboardingEndMoved || evs[0].Access != "acc0" {
		t.Errorf("onboarding ended %+v, want acc0's lease moved", evs)
	}
	if len(r.p.OnboardingLeases()) != 0 {
		t.Errorf("onboarding leases %+v, want none", r.p.OnboardingLeases())
	}
}

// A device the portal registered is pinned to the access it claimed from
// (the portal sends the onboarding lease's access): from another circuit
// its messages are refused outright (wrong_circuit) and its onboarding
// lease is untouched. (A guard: this held before.)
func TestOnboardingPortalClaimPinned(t *testing.T) {
	r := newORig(t, Onboarding{}, 0, true)
	const m, m48 = "02:77:00:00:00:01", 0x027700000001
	ip := addrOf(r.obDORA(m).YourIPAddr)
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(m)), CustomerID: "c-s1", ISP: "alpha", Access: "acc0", Source: "claim"}); err != nil {
		t.Fatal(err)
	}
	for _, msg := range []*dhcpv4.DHCPv4{
		initReboot(t, m, ip), discover(t, dhcpv4.WithHwAddr(mac(m))),
		clientMsg(t, m, dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(net.IP(ip.AsSlice()))),
	} {
		r.fromClientVLAN(5, msg)
		if got := r.toPorts(); len(got) != 0 {
			t.Errorf("%s on acc1: %v", msg.MessageType(), got)
		}
		r.wantGardenOnAcc0(m48, ip, msg.MessageType().String()+" on acc1")
	}
	if n := r.p.Counters()["wrong_circuit"]; n != 3 {
		t.Errorf("wrong_circuit %d, want 3", n)
	}
	// Counted for alpha as misplaced, not rejected: where a MAC is
	// seen says nothing of its ISP (a refusal ratio per ISP must not
	// blame alpha for a clone of its customer's MAC).
	c := r.p.ISPCounters()[0]
	if c.Outcomes[OutcomeMisplaced] != 3 || c.Outcomes[OutcomeRejected] != 0 {
		t.Errorf("alpha's outcomes %v, want 3 misplaced and none rejected", c.Outcomes)
	}
}

// A server acts only on the DHCPRELEASE and DHCPDECLINE naming it (RFC
// 2131 §4.3.3, §4.3.4: option 54 says which server the client means). An
// onboarding DECLINE, and a registered MAC's RELEASE or DECLINE of its
// onboarding lease (the handover path), ended the onboarding lease
// whatever server they named: a client's message for some other server on
// its link ended its garden lease (and a DECLINE quarantined the address).
// They are ignored and counted now, as the onboarding RELEASE already was;
// the same message naming ispmux still ends the lease.
func TestOnboardingEndNamingOtherServerIgnored(t *testing.T) {
	other := net.IPv4(192, 168, 1, 1) // another DHCP server on the link
	for _, tc := range []struct {
		name       string
		registered bool
		mt         dhcpv4.MessageType
		counter    string
		reason     string
	}{
		{"release", false, dhcpv4.MessageTypeRelease, "onboarding_release_not_own", subscribers.OnboardingEndReleased},
		{"decline", false, dhcpv4.MessageTypeDecline, "onboarding_decline_not_own", subscribers.OnboardingEndDeclined},
		{"handover release", true, dhcpv4.MessageTypeRelease, "onboarding_release_not_own", subscribers.OnboardingEndReleased},
		{"handover decline", true, dhcpv4.MessageTypeDecline, "onboarding_decline_not_own", subscribers.OnboardingEndDeclined},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newORig(t, Onboarding{}, 0, false)
			const m, m48 = "02:77:00:00:00:01", 0x027700000001
			ip := addrOf(r.obDORA(m).YourIPAddr)
			if tc.registered {
				if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(m)), CustomerID: "c-s1", ISP: "alpha", Source: "claim"}); err != nil {
					t.Fatal(err)
				}
			}
			msg := func(sid net.IP) *dhcpv4.DHCPv4 {
				named := dhcpv4.WithClientIP(net.IP(ip.AsSlice()))
				if tc.mt == dhcpv4.MessageTypeDecline {
					named = dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP(ip.AsSlice())))
				}
				return clientMsg(t, m, tc.mt, named, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(sid)))
			}
			r.fromClient(msg(other))
			if got := r.clientMsgs(); len(got) != 0 {
				t.Errorf("%s for server %v answered: %v", tc.mt, other, got)
			}
			if vrf, _, ok := r.vrfOf(m48); !ok || vrf != binding.GardenVRF {
				t.Errorf("%s naming server %v ended the onboarding lease of %v", tc.mt, other, ip)
			}
			if evs := r.eventsOf(subscribers.EventOnboardingEnded); len(evs) != 0 {
				t.Errorf("%s naming server %v: events %+v", tc.mt, other, evs)
			}
			if n := r.p.Counters()[tc.counter]; n != 1 {
				t.Errorf("%s = %d, want 1 (counters %v)", tc.counter, n, r.p.Counters())
			}
			// Naming ispmux, it ends the lease.
			r.fromClient(msg(net.IP(ourSID.AsSlice())))
			r.clientMsgs()
			if r.tab.isBound(m48) {
				t.Errorf("%s naming ispmux left the lease bound", tc.mt)
			}
			if evs := r.eventsOf(subscribers.EventOnboardingEnded); len(evs) != 1 || evs[0].Reason != tc.reason {
				t.Errorf("%s naming ispmux: events %+v, want one %s", tc.mt, evs, tc.reason)
			}
		})
	}
}

// TestOnboardingShareLeavesOtherCircuits: made-up MACs on one onboarding
// circuit (acc0) hold at most three quarters of max_onboarding (its
// share: 3 of 4), so a new device on another circuit (acc1, VLAN 5)
// still gets an onboarding offer while the flood's offers are held.
// Before, the flood took the whole cap (acc0's pool and MaxLeases are
// larger) and acc1's new device was refused (onboarding_full).
func TestOnboardingShareLeavesOtherCircuits(t *testing.T) {
	r := newORig(t, Onboarding{}, 4, true)
	for i := range 10 {
		r.fromClient(discover(t, dhcpv4.WithHwAddr(net.HardwareAddr{0x02, 0x66, 0, 0, 0, byte(i)})))
	}
	if got := r.clientMsgs(); len(got) != 3 {
		t.Errorf("acc0's flood got %d offers, want 3 (its share of max_onboarding 4)", len(got))
	}
	if n := r.p.Counters()["onboarding_full"]; n != 7 {
		t.Errorf("onboarding_full %d, want 7", n)
	}
	r.fromClientVLAN(5, discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:05:01"))))
	got := r.clientMsgs()
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer || !netip.MustParsePrefix("100.65.1.0/29").Contains(addrOf(got[0].YourIPAddr)) {
		t.Fatalf("acc1's new device during acc0's flood got %v, want an offer from acc1's pool (counters %v)", got, r.p.Counters())
	}
	// The cap over all circuits still holds: acc1's next is refused.
	r.fromClientVLAN(5, discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:05:02"))))
	if got := r.clientMsgs(); len(got) != 0 {
		t.Errorf("past max_onboarding acc1 got %v", got)
	}
	if got, want := oneShare(4, 1), 4; got != want {
		t.Errorf("one circuit's share of 4: %d, want %d", got, want)
	}
}
