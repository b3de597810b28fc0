package dhcpproxy

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

// The unit rig: a real store (bbolt in a temp dir), fake tables and a fake
// sender that records frames per port. Port 0 is the access port (our MAC
// 02:aa::, address 100.64.0.1); port 1 the uplink of ISP "alpha" (our
// 192.0.2.2, server 192.0.2.1, next hop MAC 02:bb::1).
const (
	accPort, upPort = 0, 1
	accMAC          = 0x02aa00000000
	upMAC           = 0x02aa00000001
	gwMAC           = 0x02bb00000001
)

// storeRegistry reads registrations from the store, so the unit tests can
// change them with PutRegistration (the appliance publishes them to a
// registry.Registry; see package tenants).
type storeRegistry struct{ st *subscribers.Store }

func (r storeRegistry) Lookup(mac uint64) (registry.Entry, bool) {
	reg, err := r.st.Registration(binding.MACBytes(mac))
	if err != nil {
		return registry.Entry{}, false
	}
	return registry.Entry{ISP: reg.ISP, CustomerID: reg.CustomerID, Access: reg.Access, Blocked: reg.Blocked, Source: reg.Source}, true
}

type fakeTables struct {
	mu    sync.Mutex
	bound map[uint64]binding.Binding
	store *subscribers.Store
	// committedFirst records, at each Bind, whether the store already had
	// the binding (the durable-before-install order).
	committedFirst []bool
	// uplinkDown makes NextHopMAC report the ISP unreachable.
	uplinkDown bool
	// full makes Bind fail as a full MAC table does.
	full bool
	// reserved records each Reserve's n.
	reserved []int
}

// Reserve records n (engine.Control makes room for n bindings).
func (f *fakeTables) Reserve(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reserved = append(f.reserved, n)
}

// errTablesFull is Bind's error when the fake's tables are full.
var errTablesFull = errors.New("bind: mac table: table full")

func (f *fakeTables) Bind(b binding.Binding) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var m [6]byte
	copy(m[:], macBytes(b.MAC))
	_, err := f.store.Binding("acc0", b.VLAN, m)
	f.committedFirst = append(f.committedFirst, err == nil)
	if f.full {
		return errTablesFull
	}
	for m, o := range f.bound {
		if m != b.MAC && o.IP == b.IP && o.ISP == b.ISP {
			return binding.ErrConflict
		}
	}
	f.bound[b.MAC] = b
	return nil
}

// CheckBind conflicts when another MAC holds the address (any ISP: the rig
// has one).
func (f *fakeTables) CheckBind(b binding.Binding) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for m, o := range f.bound {
		if m != b.MAC && o.IP == b.IP && o.ISP == b.ISP {
			return binding.ErrConflict
		}
	}
	return nil
}

func (f *fakeTables) Unbind(port uint8, vlan uint16, mac uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.bound[mac]
	delete(f.bound, mac)
	return ok
}

func (f *fakeTables) Holder(isp uint8, a netip.Addr) (binding.Binding, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range f.bound {
		if o.IP == a && o.ISP == isp {
			return o, true
		}
	}
	return binding.Binding{}, false
}

func (f *fakeTables) NextHopMAC(isp uint8) (uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return gwMAC, !f.uplinkDown
}

func (f *fakeTables) isBound(mac uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.bound[mac]
	return ok
}

type sent struct {
	port  uint8
	frame []byte
}

type fakeSender struct {
	mu     sync.Mutex
	frames []sent
	// onACK runs when an ACK is sent to the subscriber (ordering checks).
	onACK func()
}

func (f *fakeSender) Inject(port uint8, frame []byte) bool {
	f.mu.Lock()
	f.frames = append(f.frames, sent{port, append([]byte(nil), frame...)})
	cb := f.onACK
	f.mu.Unlock()
	if port == accPort && cb != nil {
		if m := dhcpOf(frame); m != nil && m.MessageType() == dhcpv4.MessageTypeAck {
			cb()
		}
	}
	return true
}

func (f *fakeSender) take() []sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.frames
	f.frames = nil
	return out
}

func dhcpOf(frame []byte) *dhcpv4.DHCPv4 {
	var p classifier.Packet
	if p.Decode(frame) != classifier.ReasonNone {
		return nil
	}
	pl, ok := udpPayload(&p, frame)
	if !ok {
		return nil
	}
	m, err := dhcpv4.FromBytes(pl)
	if err != nil {
		return nil
	}
	return m
}

type prig struct {
	t     *testing.T
	p     *Proxy
	store *subscribers.Store
	tab   *fakeTables
	snd   *fakeSender
	// gardenIP is the onboarding address handedOverOn's device held
	// before its handover.
	gardenIP netip.Addr
}

func newPRig(t *testing.T) *prig {
	st, err := subscribers.Open(filepath.Join(t.TempDir(), "s.db"), subscribers.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &prig{t: t, store: st, tab: &fakeTables{bound: map[uint64]binding.Binding{}, store: st}, snd: &fakeSender{}}
	cfg := Config{
		Limits:   Limits{Timeout: 300 * time.Millisecond, MaxPending: 16, MACRate: 100, MACBurst: 100, CircuitRate: 1000, CircuitBurst: 1000, MaxBindingsPerCircuit: 10},
		Circuits: []Circuit{{Name: "acc0", Interface: "acc0", Port: accPort, MAC: accMAC, Addr: ourSID}},
		ISPs: []ISP{{Index: 0, Name: "alpha", Port: upPort, MAC: upMAC, Addr: giaddr,
			Servers: []netip.Addr{ispSID}, CircuitID: "{interface}:{vlan}"}},
	}
	r.p = New(cfg, st, storeRegistry{st}, r.tab, r.snd, nil)
	for i, mac := range []string{"02:00:00:00:01:01", "02:00:00:00:01:02"} {
		hw, _ := net.ParseMAC(mac)
		if err := st.PutRegistration(subscribers.Registration{MAC: [6]byte(hw), CustomerID: []string{"c-s1", "c-s2"}[i], ISP: "alpha", Source: "api"}); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// fromClient sends a client message as a broadcast frame from its chaddr.
func (r *prig) fromClient(m *dhcpv4.DHCPv4) {
	r.sendRaw(binding.MAC48([6]byte(m.ClientHWAddr)), m.ToBytes())
}

// serve plays the ISP's server for every relayed message sent so far:
// reply(m) returns the reply (nil: silence). It returns the messages the
// subscriber was sent.
func (r *prig) serve(reply func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4) []*dhcpv4.DHCPv4 {
	r.t.Helper()
	var toClient []*dhcpv4.DHCPv4
	for _, s := range r.snd.take() {
		m := dhcpOf(s.frame)
		if m == nil {
			r.t.Fatalf("proxy sent a frame that is not DHCP: %x", s.frame)
		}
		if s.port == accPort {
			toClient = append(toClient, m)
			continue
		}
		if rep := reply(m); rep != nil {
			f := fib.UDPFrame(upMAC, gwMAC, 0, ispSID, giaddr, 67, 67, rep.ToBytes())
			r.p.HandleFrame(upPort, f)
		}
	}
	r.p.committing.Wait()
	r.p.notes.wait()
	for _, s := range r.snd.take() {
		if s.port == accPort {
			toClient = append(toClient, dhcpOf(s.frame))
		} else {
			// Sent to the ISP meanwhile (a DECLINE): left for the
			// test to take.
			r.snd.mu.Lock()
			r.snd.frames = append(r.snd.frames, s)
			r.snd.mu.Unlock()
		}
	}
	return toClient
}

// eventsAfterTimeout lets newPRig's dhcp.timeout (300 ms) run out, ends
// the transactions it ended (their timeout events) and returns the store's
// first 100 events.
func (r *prig) eventsAfterTimeout() []subscribers.Event {
	time.Sleep(350 * time.Millisecond)
	r.p.expire(time.Now())
	r.p.notes.wait()
	evs, _ := r.store.Events(0, 100)
	return evs
}

// wantRejectedNoTimeout checks that evs hold one rejected event and no
// timeout event: the ISP answered (why), with a reply ispmux refused.
func wantRejectedNoTimeout(t *testing.T, evs []subscribers.Event, why string) {
	t.Helper()
	rejected := 0
	for _, e := range evs {
		switch e.Kind {
		case subscribers.EventRejected:
			rejected++
		case subscribers.EventTimeout:
			t.Errorf("timeout event (%q) though %s", e.Reason, why)
		}
	}
	if rejected != 1 {
		t.Errorf("%d rejected events, want 1", rejected)
	}
}

// kea answers like the lab's Kea: it knows customer c-s1 only.
func kea(t *testing.T, lease time.Duration) func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	return func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		sub, err := parseOption82(m.Options.Get(dhcpv4.OptionRelayAgentInformation))
		if err != nil || string(sub[subSubscriberID]) != "c-s1" {
			return nil
		}
		if !m.GatewayIPAddr.Equal(net.IP(giaddr.AsSlice())) {
			t.Errorf("relayed with giaddr %v", m.GatewayIPAddr)
		}
		mt := dhcpv4.MessageTypeOffer
		switch m.MessageType() {
		case dhcpv4.MessageTypeRequest:
			mt = dhcpv4.MessageTypeAck
			if sid := m.ServerIdentifier(); sid != nil && !sid.Equal(net.IP(ispSID.AsSlice())) {
				mt = dhcpv4.MessageTypeNak // not our server id: as Kea would ignore/refuse
			}
		case dhcpv4.MessageTypeRelease:
			return nil
		}
		rep, _ := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(mt),
			dhcpv4.WithYourIP(net.IPv4(100, 64, 0, 100)),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ispSID.AsSlice()))),
			dhcpv4.WithLeaseTime(uint32(lease/time.Second)),
			dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, m.Options.Get(dhcpv4.OptionRelayAgentInformation)))
		return rep
	}
}

func mac(s string) net.HardwareAddr { hw, _ := net.ParseMAC(s); return hw }

func TestDORA(t *testing.T) {
	r := newPRig(t)
	d := discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")))
	r.fromClient(d)
	got := r.serve(kea(t, time.Minute))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("subscriber got %v, want one OFFER", got)
	}
	offer := got[0]
	if !offer.ServerIdentifier().Equal(net.IP(ourSID.AsSlice())) || offer.Options.Has(dhcpv4.OptionRelayAgentInformation) {
		t.Errorf("OFFER to the subscriber: server id %v, option 82 present %v", offer.ServerIdentifier(), offer.Options.Has(dhcpv4.OptionRelayAgentInformation))
	}
	// ACK must reach the subscriber only after the store and the tables
	// have the binding.
	var ackSeen bool
	r.snd.onACK = func() {
		ackSeen = true
		if !r.tab.isBound(0x020000000101) {
			t.Error("ACK sent before the binding was installed")
		}
		if _, err := r.store.Binding("acc0", 0, [6]byte(mac("02:00:00:00:01:01"))); err != nil {
			t.Errorf("ACK sent before the binding was stored: %v", err)
		}
	}
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	r.fromClient(req)
	got = r.serve(kea(t, time.Minute))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck || !ackSeen {
		t.Fatalf("subscriber got %v, want one ACK", got)
	}
	if len(r.tab.committedFirst) != 1 || !r.tab.committedFirst[0] {
		t.Errorf("installed before committed: %v", r.tab.committedFirst)
	}
	b, err := r.store.Binding("acc0", 0, [6]byte(mac("02:00:00:00:01:01")))
	if err != nil || b.IP != netip.MustParseAddr("100.64.0.100") || b.ServerID != ispSID || b.ISP != "alpha" || b.Circuit != "acc0:0" {
		t.Errorf("stored binding %+v, %v", b, err)
	}

	// RELEASE: relayed, unbound, removed.
	rel, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease),
		dhcpv4.WithClientIP(net.IPv4(100, 64, 0, 100)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice()))))
	r.fromClient(rel)
	r.serve(kea(t, time.Minute))
	if r.tab.isBound(0x020000000101) {
		t.Error("still bound after RELEASE")
	}
	if _, err := r.store.Binding("acc0", 0, [6]byte(mac("02:00:00:00:01:01"))); !errors.Is(err, subscribers.ErrNotFound) {
		t.Errorf("binding still stored after RELEASE: %v", err)
	}
}

func TestRejections(t *testing.T) {
	r := newPRig(t)
	// Unregistered: not relayed at all; its retransmission is counted but
	// not recorded as a second event.
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:09"))))
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:09"))))
	if s := r.snd.take(); len(s) != 0 {
		t.Errorf("unregistered subscriber relayed: %d frames", len(s))
	}
	// Registered here, unknown to the ISP (silence): a timeout event.
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:02"))))
	if got := r.serve(kea(t, time.Minute)); len(got) != 0 {
		t.Errorf("subscriber refused by the ISP got %v", got)
	}
	time.Sleep(350 * time.Millisecond)
	r.p.expire(time.Now())
	r.p.notes.wait()
	evs, err := r.store.Events(0, 100)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[subscribers.EventKind]int{}
	for _, e := range evs {
		kinds[e.Kind]++
	}
	if kinds[subscribers.EventUnknown] != 1 || kinds[subscribers.EventTimeout] != 1 {
		t.Errorf("events %v, want one unknown and one timeout", kinds)
	}
	c := r.p.Counters()
	if c["unknown_subscriber"] != 2 || c["timeout"] != 1 {
		t.Errorf("counters %v", c)
	}
}

func TestBadClientFramesCounted(t *testing.T) {
	r := newPRig(t)
	good := discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")))
	src := uint64(0x020000000101)
	send := func(payload []byte, from uint64) {
		f := fib.UDPFrame(0xffffffffffff, from, 0, netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67, payload)
		r.p.HandleFrame(accPort, f)
	}
	b := good.ToBytes()
	send(b[:100], src)                                // truncated
	overrun := append([]byte(nil), b[:240]...)        // header + cookie
	overrun = append(overrun, 12, 200, 'x', 'y', 255) // option length overruns
	send(overrun, src)
	send(b, 0x020000000199) // chaddr ≠ source MAC
	send(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")), dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(2), []byte("x"))))).ToBytes(), src)
	send(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")), dhcpv4.WithGatewayIP(net.IPv4(10, 1, 1, 1))).ToBytes(), src)
	send(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")), dhcpv4.WithReply(good)).ToBytes(), src)
	send(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")), dhcpv4.WithGeneric(dhcpv4.OptionOptionOverload, []byte{1})).ToBytes(), src)
	if s := r.snd.take(); len(s) != 0 {
		t.Errorf("bad frames relayed: %d", len(s))
	}
	c := r.p.Counters()
	for _, k := range []string{"malformed", "chaddr_mismatch", "client_option82", "client_giaddr", "bootreply_from_client", "option_overload"} {
		if c[k] == 0 {
			t.Errorf("counter %s not incremented: %v", k, c)
		}
	}
	if c["malformed"] != 2 {
		t.Errorf("malformed %d, want 2 (truncated, overrun)", c["malformed"])
	}
	// A DORA right after works.
	r.fromClient(good)
	if got := r.serve(kea(t, time.Minute)); len(got) != 1 {
		t.Errorf("DORA after bad frames: %v", got)
	}
}

func TestServerRepliesChecked(t *testing.T) {
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	// The ISP's reply with a tampered option 82 is dropped.
	got := r.serve(func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := kea(t, time.Minute)(m)
		rep.UpdateOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte("other"))))
		return rep
	})
	if len(got) != 0 || r.p.Counters()["option82_mismatch"] != 1 {
		t.Errorf("tampered echo: subscriber got %v, counters %v", got, r.p.Counters())
	}
	// A reply matching no transaction is dropped.
	stray, _ := dhcpv4.NewReplyFromRequest(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:02"))), dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer))
	r.p.HandleFrame(upPort, fib.UDPFrame(upMAC, gwMAC, 0, ispSID, giaddr, 67, 67, stray.ToBytes()))
	if r.p.Counters()["no_transaction"] != 1 {
		t.Errorf("stray reply not counted: %v", r.p.Counters())
	}
}

func TestLeaseExpiry(t *testing.T) {
	r := newPRig(t)
	r.dora("02:00:00:00:01:01", kea(t, time.Second), nil)
	if !r.tab.isBound(0x020000000101) {
		t.Fatal("not bound")
	}
	r.p.expire(time.Now().Add(2 * time.Second))
	if r.tab.isBound(0x020000000101) || r.p.Leases() != 0 {
		t.Error("still bound after the lease expired")
	}
	r.p.notes.wait()
	if evs, _ := r.store.Events(0, 100); len(evs) == 0 || evs[len(evs)-1].Kind != subscribers.EventExpired || evs[len(evs)-1].ISP != "alpha" {
		t.Errorf("events %+v: want the last one expired, at alpha", evs)
	}
}

func TestRestore(t *testing.T) {
	r := newPRig(t)
	now := time.Now()
	for i, exp := range []time.Time{now.Add(time.Hour), now.Add(-time.Second)} {
		b := subscribers.Binding{MAC: [6]byte{2, 0, 0, 0, 1, byte(i + 1)}, Access: "acc0", ISP: "alpha",
			IP: netip.AddrFrom4([4]byte{100, 64, 0, byte(100 + i)}), Expires: exp, Updated: now}
		if err := r.store.CommitBinding(b); err != nil {
			t.Fatal(err)
		}
	}
	n, err := r.p.Restore(now)
	if err != nil || n != 1 {
		t.Fatalf("restored %d, %v; want 1", n, err)
	}
	// Room made at once for the one unexpired binding read (the lapsed
	// one is not installed).
	if !slices.Equal(r.tab.reserved, []int{1}) {
		t.Errorf("Reserve calls %v, want [1]", r.tab.reserved)
	}
	r.p.lapsing.Wait() // the lapsed binding's end runs beside the start
	if !r.tab.isBound(0x020000000101) || r.tab.isBound(0x020000000102) {
		t.Error("wrong bindings restored")
	}
	if bs, _ := r.store.Bindings(); len(bs) != 1 {
		t.Errorf("expired binding left in the store: %d", len(bs))
	}
	r.p.notes.wait()
	if evs, _ := r.store.Events(0, 10); len(evs) != 1 || evs[0].Kind != subscribers.EventExpired || evs[0].MAC != [6]byte{2, 0, 0, 0, 1, 2} {
		t.Errorf("events %+v, want one expired for the lease that ran out while stopped", evs)
	}
}

// A registration changed while ispmux was down (blocked, withdrawn, pinned
// to another access) revokes the stored binding at restore: it must not
// forward until its lease would have run out. One only moved to another
// ISP (pinned to its access here) keeps its old binding until its next
// message or its move's deadline, as without a restart
// (TestMovedPinnedDeviceKeptAcrossRestart,
// TestMovedDeviceOldBindingKeptAcrossRestart).
func TestRestoreRevokesChangedRegistrations(t *testing.T) {
	r := newPRig(t)
	now := time.Now()
	regs := []subscribers.Registration{
		{MAC: [6]byte{2, 0, 0, 0, 2, 1}, CustomerID: "keep", ISP: "alpha"},
		{MAC: [6]byte{2, 0, 0, 0, 2, 2}, CustomerID: "blocked", ISP: "alpha", Blocked: true},
		{MAC: [6]byte{2, 0, 0, 0, 2, 3}, CustomerID: "moved", ISP: "beta", Access: "acc0"},
		{MAC: [6]byte{2, 0, 0, 0, 2, 4}, CustomerID: "elsewhere", ISP: "alpha", Access: "acc9"},
		// 02:00:00:00:02:05 has no registration at all.
	}
	for _, reg := range regs {
		reg.Source = "api"
		if err := r.store.PutRegistration(reg); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		b := subscribers.Binding{MAC: [6]byte{2, 0, 0, 0, 2, byte(i + 1)}, Access: "acc0", ISP: "alpha",
			IP: netip.AddrFrom4([4]byte{100, 64, 1, byte(i + 1)}), Expires: now.Add(time.Hour), Updated: now}
		if err := r.store.CommitBinding(b); err != nil {
			t.Fatal(err)
		}
	}
	n, err := r.p.Restore(now)
	if err != nil || n != 2 {
		t.Fatalf("restored %d, %v; want 2", n, err)
	}
	if !r.tab.isBound(0x020000000201) {
		t.Error("unchanged registration not restored")
	}
	if !r.tab.isBound(0x020000000203) || r.p.MovesPending() != 1 {
		t.Errorf("moved registration: forwarding %v, moves pending %d; want its old binding kept until its deadline",
			r.tab.isBound(0x020000000203), r.p.MovesPending())
	}
	// The lease table (filled beside the checks) keeps only those two.
	if r.p.Leases() != 2 || !r.p.hasLease(subKey{circuitKey{accPort, 0}, 0x020000000201}) || !r.p.hasLease(subKey{circuitKey{accPort, 0}, 0x020000000203}) {
		t.Errorf("%d leases after the restore, want the unchanged and the moved one", r.p.Leases())
	}
	for _, m := range []uint64{0x020000000202, 0x020000000204, 0x020000000205} {
		if r.tab.isBound(m) {
			t.Errorf("%012x restored despite its registration", m)
		}
	}
	if bs, _ := r.store.Bindings(); len(bs) != 2 {
		t.Errorf("%d bindings left in the store, want 2", len(bs))
	}
	r.p.notes.wait()
	evs, _ := r.store.Events(0, 100)
	revoked := 0
	for _, e := range evs {
		if e.Kind == subscribers.EventRevoked {
			revoked++
		}
	}
	if revoked != 3 || r.p.Counters()["binding_revoked"] != 3 {
		t.Errorf("%d revoked events, counter %d; want 3", revoked, r.p.Counters()["binding_revoked"])
	}
}

func TestNAKUnbinds(t *testing.T) {
	r := newPRig(t)
	d := discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")))
	r.fromClient(d)
	offer := r.serve(kea(t, time.Minute))[0]
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	r.fromClient(req)
	r.serve(kea(t, time.Minute))
	if !r.tab.isBound(0x020000000101) {
		t.Fatal("not bound")
	}
	// The ISP refuses the next request (NAK): unbound, the NAK reaches the
	// subscriber (broadcast), and an event says why.
	again, _ := dhcpv4.NewRequestFromOffer(offer)
	r.fromClient(again)
	got := r.serve(func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep, _ := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ispSID.AsSlice()))),
			dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, m.Options.Get(dhcpv4.OptionRelayAgentInformation)))
		return rep
	})
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("subscriber got %v, want the NAK", got)
	}
	if r.tab.isBound(0x020000000101) {
		t.Error("still bound after NAK")
	}
	evs, _ := r.store.Events(0, 100)
	if len(evs) == 0 || evs[len(evs)-1].Kind != subscribers.EventNak || evs[len(evs)-1].Reason != "the ISP refused (DHCPNAK)" ||
		evs[len(evs)-1].IP != netip.MustParseAddr("100.64.0.100") {
		t.Errorf("last event %+v, want nak", evs)
	}
}

func TestLimits(t *testing.T) {
	r := newPRig(t)
	r.p.setLimits(func(l *Limits) { l.MACRate, l.MACBurst = 1, 3 })
	for range 5 {
		r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	}
	if c := r.p.Counters(); c["rate_limited"] != 2 || c["rate_limited_mac"] != 2 || c["rate_limited_circuit"] != 0 || c["relayed_discover"] != 3 {
		t.Errorf("per-MAC limit: %v, want 3 relayed and 2 rate_limited", c)
	}
	// Pending cap: distinct transactions beyond MaxPending are dropped.
	r2 := newPRig(t)
	r2.p.setLimits(func(l *Limits) { l.MaxPending = 2 })
	for i := range 4 {
		d := discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")))
		d.TransactionID = dhcpv4.TransactionID{0, 0, 0, byte(i + 1)}
		r2.fromClient(d)
	}
	if c := r2.p.Counters(); c["pending_full"] != 2 {
		t.Errorf("pending cap: %v, want 2 pending_full", c)
	}
}

func TestBindingsPerCircuitCap(t *testing.T) {
	r := newPRig(t)
	r.p.setLimits(func(l *Limits) { l.MaxBindingsPerCircuit = 1 })
	// Both MACs are customer c-s1, which the fake ISP accepts.
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac("02:00:00:00:01:02")), CustomerID: "c-s1", ISP: "alpha", Source: "api"}); err != nil {
		t.Fatal(err)
	}
	if got := r.dora("02:00:00:00:01:01", kea(t, time.Minute), nil); len(got) != 1 {
		t.Fatalf("first subscriber: %v", got)
	}
	if got := r.dora("02:00:00:00:01:02", kea(t, time.Minute), nil); len(got) != 0 {
		t.Errorf("second subscriber on a full circuit got %v", got)
	}
	if r.p.Counters()["circuit_full"] != 1 || r.tab.isBound(0x020000000102) {
		t.Errorf("circuit cap not applied: %v", r.p.Counters())
	}
}

// FuzzHandleFrame feeds arbitrary frames to both sides of the proxy, once
// with the ISP's next hop resolved and once never resolved since start
// (messages wait in relayLater): it must never panic, and nothing it sends
// to the subscriber side may carry option 82.
func FuzzHandleFrame(f *testing.F) {
	d := discover(f, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")))
	f.Add(uint8(accPort), fib.UDPFrame(0xffffffffffff, 0x020000000101, 0, netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67, d.ToBytes()))
	lq := discover(f, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")), dhcpv4.WithMessageType(dhcpv4.MessageType(10)))
	f.Add(uint8(accPort), fib.UDPFrame(0xffffffffffff, 0x020000000101, 0, netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67, lq.ToBytes()))
	offer, _ := dhcpv4.NewReplyFromRequest(d, dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer))
	f.Add(uint8(upPort), fib.UDPFrame(upMAC, gwMAC, 0, ispSID, giaddr, 67, 67, offer.ToBytes()))
	st, err := subscribers.Open(filepath.Join(f.TempDir(), "s.db"), subscribers.Options{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	if err := st.PutRegistration(subscribers.Registration{MAC: [6]byte(mac("02:00:00:00:01:01")), CustomerID: "c-s1", ISP: "alpha", Source: "api"}); err != nil {
		f.Fatal(err)
	}
	type proxy struct {
		p   *Proxy
		snd *fakeSender
	}
	var ps []proxy
	for _, down := range []bool{false, true} {
		snd := &fakeSender{}
		tab := &fakeTables{bound: map[uint64]binding.Binding{}, store: st, uplinkDown: down}
		p := New(Config{Limits: Limits{Timeout: time.Second, MaxPending: 64, MACRate: 1000, MACBurst: 1000, CircuitRate: 1000, CircuitBurst: 1000, MaxBindingsPerCircuit: 10},
			Circuits: []Circuit{{Name: "acc0", Interface: "acc0", Port: accPort, MAC: accMAC, Addr: ourSID}},
			ISPs:     []ISP{{Index: 0, Name: "alpha", Port: upPort, MAC: upMAC, Addr: giaddr, Servers: []netip.Addr{ispSID}, CircuitID: "{interface}:{vlan}"}},
		}, st, storeRegistry{st}, tab, snd, nil)
		ps = append(ps, proxy{p, snd})
	}
	f.Fuzz(func(t *testing.T, port uint8, frame []byte) {
		for _, x := range ps {
			x.p.HandleFrame(port%2, frame)
			x.p.committing.Wait()
			x.p.notes.wait()
			for _, s := range x.snd.take() {
				if s.port != accPort {
					continue
				}
				if m := dhcpOf(s.frame); m != nil && m.Options.Has(dhcpv4.OptionRelayAgentInformation) {
					t.Fatalf("option 82 sent to a subscriber")
				}
			}
		}
	})
}

// BenchmarkDORA measures the proxy's CPU per full DORA (both directions of
// both exchanges, the store write with fsync off, the event, the frames):
// what bounds DORA/s when the disk is not the limit.
func BenchmarkDORA(b *testing.B) {
	// The DORAs cycle over 1000 subscribers; the registry holds 1000 or
	// 100,000 (DHCP must cost the same with a large customer base).
	for _, registered := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("registered=%d", registered), func(b *testing.B) { benchDORA(b, registered) })
	}
}

func benchDORA(b *testing.B, registered int) {
	st, err := subscribers.Open(filepath.Join(b.TempDir(), "s.db"), subscribers.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	const n = 1000
	reg := registry.New()
	for i := range registered {
		m := [6]byte{2, 0x20, 0, byte(i >> 16), byte(i >> 8), byte(i)}
		reg.Put(binding.MAC48(m), registry.Entry{CustomerID: "c-s1", ISP: "alpha", Source: "api"}, false)
	}
	snd := &fakeSender{}
	tab := &fakeTables{bound: map[uint64]binding.Binding{}, store: st}
	p := New(Config{Limits: Limits{Timeout: time.Second, MaxPending: 4096, MACRate: 1000, MACBurst: 1000, CircuitRate: 1 << 20, CircuitBurst: 1 << 20, MaxBindingsPerCircuit: 1 << 20},
		Circuits: []Circuit{{Name: "acc0", Interface: "acc0", Port: accPort, MAC: accMAC, Addr: ourSID}},
		ISPs:     []ISP{{Index: 0, Name: "alpha", Port: upPort, MAC: upMAC, Addr: giaddr, Servers: []netip.Addr{ispSID}, CircuitID: "{interface}:{vlan}"}},
	}, st, reg, tab, snd, nil)
	r := &prig{p: p, store: st, tab: tab, snd: snd}
	// kea gives every client the same address: here each its own (else
	// every ACK is the conflict path and its NAK).
	lab := kea(&testing.T{}, time.Hour)
	server := func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := lab(m)
		if rep != nil {
			rep.YourIPAddr = net.IPv4(10, m.ClientHWAddr[4], m.ClientHWAddr[5], 1)
		}
		return rep
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		m := net.HardwareAddr{2, 0x20, 0, 0, byte(i % n >> 8), byte(i % n)}
		d, _ := dhcpv4.NewDiscovery(m)
		r.fromClient(d)
		for _, s := range snd.take() {
			if rep := server(dhcpOf(s.frame)); rep != nil {
				p.HandleFrame(upPort, fib.UDPFrame(upMAC, gwMAC, 0, ispSID, giaddr, 67, 67, rep.ToBytes()))
			}
		}
		offer := dhcpOf(snd.take()[0].frame)
		req, _ := dhcpv4.NewRequestFromOffer(offer)
		r.fromClient(req)
		for _, s := range snd.take() {
			if rep := server(dhcpOf(s.frame)); rep != nil {
				p.HandleFrame(upPort, fib.UDPFrame(upMAC, gwMAC, 0, ispSID, giaddr, 67, 67, rep.ToBytes()))
			}
		}
		p.committing.Wait()
		if acks := snd.take(); len(acks) != 1 || dhcpOf(acks[0].frame).MessageType() != dhcpv4.MessageTypeAck {
			b.Fatalf("DORA %d: got %d frames, counters %v", i, len(acks), p.Counters())
		}
	}
	b.StopTimer()
	p.notes.wait()
}

// TestCircuitWithoutAddress: DHCP on an access port with no address (only
// static subscribers there) is counted and dropped, never a crash.
func TestCircuitWithoutAddress(t *testing.T) {
	r := newPRig(t)
	r.p.cfg.Circuits[0].Addr = netip.Addr{}
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	if s := r.snd.take(); len(s) != 0 || r.p.Counters()["no_access_address"] != 1 {
		t.Errorf("sent %d frames, counters %v", len(s), r.p.Counters())
	}
}

// Two live servers at one ISP both answer a DISCOVER: the subscriber sees
// only the first OFFER, the REQUEST carries that server's identifier, so
// only it ACKs (the other sees it was not chosen), and the binding records
// it.
func TestTwoServersFirstOfferWins(t *testing.T) {
	r := newPRig(t)
	second := netip.MustParseAddr("192.0.2.3")
	r.p.isps["alpha"].Servers = []netip.Addr{ispSID, second}
	// serveBoth answers every relayed message from each server in turn,
	// as a server that offers its own address and ACKs only requests
	// that name it.
	serveBoth := func() []*dhcpv4.DHCPv4 {
		var toClient []*dhcpv4.DHCPv4
		relayed := 0
		for _, s := range r.snd.take() {
			if s.port == accPort {
				toClient = append(toClient, dhcpOf(s.frame))
				continue
			}
			relayed++
			m := dhcpOf(s.frame)
			var p classifier.Packet
			p.Decode(s.frame)
			srv := addr4(p.DstIP)
			mt := dhcpv4.MessageTypeOffer
			if m.MessageType() == dhcpv4.MessageTypeRequest {
				if !m.ServerIdentifier().Equal(net.IP(srv.AsSlice())) {
					continue // not chosen
				}
				mt = dhcpv4.MessageTypeAck
			}
			rep, _ := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(mt),
				dhcpv4.WithYourIP(net.IPv4(100, 64, 0, 100+srv.As4()[3])),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(srv.AsSlice()))),
				dhcpv4.WithLeaseTime(60),
				dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, m.Options.Get(dhcpv4.OptionRelayAgentInformation)))
			r.p.HandleFrame(upPort, fib.UDPFrame(upMAC, gwMAC, 0, srv, giaddr, 67, 67, rep.ToBytes()))
		}
		if relayed != 2 {
			t.Errorf("relayed %d copies, want one per server", relayed)
		}
		r.p.committing.Wait()
		for _, s := range r.snd.take() {
			if s.port == accPort {
				toClient = append(toClient, dhcpOf(s.frame))
			}
		}
		return toClient
	}
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	got := serveBoth()
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer || !got[0].YourIPAddr.Equal(net.IPv4(100, 64, 0, 101)) {
		t.Fatalf("subscriber got %v, want only the first server's OFFER", got)
	}
	if r.p.Counters()["offer_other_server"] != 1 {
		t.Errorf("second OFFER not counted: %v", r.p.Counters())
	}
	req, _ := dhcpv4.NewRequestFromOffer(got[0])
	r.fromClient(req)
	got = serveBoth()
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck || !got[0].YourIPAddr.Equal(net.IPv4(100, 64, 0, 101)) {
		t.Fatalf("subscriber got %v, want the first server's ACK", got)
	}
	b, err := r.store.Binding("acc0", 0, [6]byte(mac("02:00:00:00:01:01")))
	if err != nil || b.ServerID != ispSID || b.IP != netip.MustParseAddr("100.64.0.101") {
		t.Errorf("binding %+v, %v; want 100.64.0.101 from %v", b, err, ispSID)
	}
}

// A registration blocked while the subscriber is bound: Revalidate unbinds
// it at once, with an event; an unchanged one stays.
func TestRevalidate(t *testing.T) {
	r := newPRig(t)
	r.dora("02:00:00:00:01:01", kea(t, time.Minute), nil)
	if !r.tab.isBound(0x020000000101) {
		t.Fatal("not bound")
	}
	if n := r.p.Revalidate(); n != 0 {
		t.Fatalf("revoked %d with nothing changed", n)
	}
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac("02:00:00:00:01:01")), CustomerID: "c-s1", ISP: "alpha", Blocked: true, Source: "api"}); err != nil {
		t.Fatal(err)
	}
	if n := r.p.Revalidate(); n != 1 {
		t.Fatalf("revoked %d, want 1", n)
	}
	if r.tab.isBound(0x020000000101) || r.p.Leases() != 0 {
		t.Error("still bound after its registration was blocked")
	}
	if _, err := r.store.Binding("acc0", 0, [6]byte(mac("02:00:00:00:01:01"))); !errors.Is(err, subscribers.ErrNotFound) {
		t.Errorf("binding still stored: %v", err)
	}
	r.p.notes.wait()
	evs, _ := r.store.Events(0, 100)
	if len(evs) == 0 || evs[len(evs)-1].Kind != subscribers.EventRevoked || evs[len(evs)-1].Reason != "subscriber blocked" {
		t.Errorf("last event %+v, want revoked: subscriber blocked", evs[len(evs)-1])
	}
}

// A flood of DISCOVERs from made-up MACs on a circuit neither spends the
// circuit's budget (a registered subscriber still gets through) nor floods
// the event log (refusals beyond the event rate are counted only).
func TestFloodOfUnknownMACs(t *testing.T) {
	r := newPRig(t)
	r.p.setLimits(func(l *Limits) { l.CircuitRate, l.CircuitBurst = 5, 5 })
	for i := range 2000 {
		hw := net.HardwareAddr{0x02, 0x66, 0, 0, byte(i >> 8), byte(i)}
		r.fromClient(discover(t, dhcpv4.WithHwAddr(hw)))
	}
	// A single registered MAC over its own limit does not spend the
	// circuit's budget either.
	r.p.setLimits(func(l *Limits) { l.MACRate, l.MACBurst = 1, 2 })
	for range 20 {
		r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:02"))))
	}
	r.snd.take()
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	if got := r.serve(kea(t, time.Minute)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("registered subscriber after the flood got %v, want an OFFER", got)
	}
	c := r.p.Counters()
	if c["unknown_subscriber"] != 2000 || c["rate_limited"] != 18 {
		t.Errorf("counters %v: want 2000 unknown_subscriber, 18 rate_limited", c)
	}
	r.p.notes.wait()
	evs, _ := r.store.Events(0, 10000)
	// Two budgets are in play (no ISP's: the unregistered MACs; alpha's),
	// refilling at noiseRate while the flood runs.
	if len(evs) > 2*noiseBurst || c["events_suppressed"] == 0 {
		t.Errorf("%d events stored, %d suppressed: the flood was not held back", len(evs), c["events_suppressed"])
	}
}

// A legal DISCOVER that no longer fits the uplink's MTU once Option 82 is
// added is refused with a reason, not sent to die on the wire (and then
// reported as the ISP's silence).
func TestRelayTooBig(t *testing.T) {
	r := newPRig(t)
	r.p.isps["alpha"].MTU = 1500
	big := func(n int) *dhcpv4.DHCPv4 {
		return discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")),
			dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, bytes.Repeat([]byte("A"), 255)),
			dhcpv4.WithGeneric(dhcpv4.OptionClassIdentifier, bytes.Repeat([]byte("V"), n)))
	}
	// Grow a DISCOVER to exactly 1500 bytes of IP: it fits the
	// subscriber's link, not ours once Option 82 is added.
	d := big(255)
	d.Options.Update(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(224), bytes.Repeat([]byte("X"), 255)))
	d.Options.Update(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(225), bytes.Repeat([]byte("Y"), 255)))
	fill := 1500 - 28 - len(d.ToBytes()) - 2
	if fill < 0 || fill > 255 {
		t.Fatalf("test message of %d bytes: cannot fill to 1500", len(d.ToBytes()))
	}
	d.Options.Update(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(226), bytes.Repeat([]byte("Z"), fill)))
	if n := len(d.ToBytes()) + 28; n != 1500 {
		t.Fatalf("test DISCOVER is %d bytes of IP, want 1500", n)
	}
	r.fromClient(d)
	if got := r.snd.take(); len(got) != 0 {
		t.Fatalf("relayed %d frames; want none", len(got))
	}
	if c := r.p.Counters(); c["relay_too_big"] != 1 {
		t.Errorf("counters %v, want relay_too_big 1", c)
	}
	r.p.notes.wait()
	evs, _ := r.store.Events(0, 10)
	if len(evs) != 1 || evs[0].Kind != subscribers.EventRejected || !strings.Contains(evs[0].Reason, "MTU") {
		t.Errorf("events %+v, want one rejection naming the MTU", evs)
	}
	// A smaller one goes through.
	r.fromClient(big(10))
	if got := r.serve(kea(t, time.Minute)); len(got) != 1 {
		t.Errorf("a DISCOVER that fits was not relayed: %v", got)
	}
}

// The ISP ACKs an address another subscriber holds at that ISP (here a
// static customer): nothing is committed, no bound event, the subscriber
// gets a NAK, and the ISP gets a DECLINE for the address with our Option 82.
func TestACKOfAnAddressInUse(t *testing.T) {
	r := newPRig(t)
	static := binding.Binding{Port: accPort, MAC: 0x020000000199, IP: netip.MustParseAddr("100.64.0.100"), Static: true}
	r.tab.bound[static.MAC] = static
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	offer := r.serve(kea(t, time.Minute))[0]
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	r.fromClient(req)
	var toISP []*dhcpv4.DHCPv4
	got := r.serve(func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		toISP = append(toISP, m)
		return kea(t, time.Minute)(m)
	})
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("subscriber got %v, want a NAK", got)
	}
	if !got[0].ServerIdentifier().Equal(net.IP(ourSID.AsSlice())) || got[0].Options.Has(dhcpv4.OptionRelayAgentInformation) {
		t.Errorf("NAK %v: want our server id and no option 82", got[0])
	}
	// The DECLINE went out after the REQUEST was served: take it now.
	var decl *dhcpv4.DHCPv4
	for _, s := range r.snd.take() {
		if m := dhcpOf(s.frame); s.port == upPort && m != nil && m.MessageType() == dhcpv4.MessageTypeDecline {
			decl = m
		}
	}
	if decl == nil {
		t.Fatal("no DECLINE sent to the ISP")
	}
	if !decl.RequestedIPAddress().Equal(net.IPv4(100, 64, 0, 100)) || !decl.ServerIdentifier().Equal(net.IP(ispSID.AsSlice())) ||
		!decl.GatewayIPAddr.Equal(net.IP(giaddr.AsSlice())) || !bytes.Equal(decl.Options.Get(dhcpv4.OptionRelayAgentInformation), toISP[0].Options.Get(dhcpv4.OptionRelayAgentInformation)) {
		t.Errorf("DECLINE %v: want 100.64.0.100, the ISP's server id, our giaddr and our option 82", decl)
	}
	if r.tab.isBound(0x020000000101) {
		t.Error("the subscriber was bound to an address in use")
	}
	if _, err := r.store.Binding("acc0", 0, [6]byte(mac("02:00:00:00:01:01"))); !errors.Is(err, subscribers.ErrNotFound) {
		t.Errorf("binding committed: %v", err)
	}
	r.p.notes.wait()
	evs, _ := r.store.Events(0, 10)
	for _, e := range evs {
		if e.Kind == subscribers.EventBound {
			t.Errorf("a bound event was recorded: %+v", e)
		}
	}
	if len(evs) == 0 || evs[len(evs)-1].Kind != subscribers.EventRejected {
		t.Errorf("events %+v, want a rejection", evs)
	}
}

// The DECLINE of an ACKed address in use cannot be sent at once (the ISP's
// next hop went unresolved while its server answered): the subscriber is
// NAKed all the same, and the DECLINE stays pending (an intent) and is sent
// once the next hop is back, then completed. Before, it was dropped: the
// ISP kept the lease of the address in conflict until it expired.
func TestACKOfAnAddressInUseDeclinedWhenUplinkBack(t *testing.T) {
	r := newPRig(t)
	static := binding.Binding{Port: accPort, MAC: 0x020000000199, IP: netip.MustParseAddr("100.64.0.100"), Static: true}
	r.tab.bound[static.MAC] = static
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	offer := r.serve(kea(t, time.Minute))[0]
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	r.fromClient(req)
	got := r.serve(func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		r.setUplinkDown(true)
		return kea(t, time.Minute)(m)
	})
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("subscriber got %v, want a NAK", got)
	}
	declines := func() int {
		n := 0
		for _, s := range r.snd.take() {
			if m := dhcpOf(s.frame); s.port == upPort && m != nil && m.MessageType() == dhcpv4.MessageTypeDecline {
				n++
				if !m.RequestedIPAddress().Equal(net.IPv4(100, 64, 0, 100)) {
					t.Errorf("DECLINE of %v, want 100.64.0.100", m.RequestedIPAddress())
				}
			}
		}
		return n
	}
	if n := declines(); n != 0 {
		t.Fatalf("%d DECLINEs sent with the uplink down", n)
	}
	r.setUplinkDown(false)
	now := time.Now()
	r.p.expire(now)
	if n := declines(); n != 1 {
		ins, _ := r.store.Intents()
		t.Fatalf("%d DECLINEs sent once the uplink is back, want 1 (intents stored %d): the ISP keeps the lease of an address in use", n, len(ins))
	}
	r.p.expire(now.Add(time.Second))
	if n := declines(); n != 0 {
		t.Errorf("%d more DECLINEs after the completion", n)
	}
	if ins, _ := r.store.Intents(); len(ins) != 0 || r.p.PendingIntents() != 0 {
		t.Errorf("intents stored %d, pending %d after the DECLINE left; want none", len(ins), r.p.PendingIntents())
	}
}

// A registration whose customer ID would make Option 82 overflow is refused
// (not cut, not split into two options).
func TestOption82TooLong(t *testing.T) {
	r := newPRig(t)
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac("02:00:00:00:01:01")), CustomerID: strings.Repeat("c", 250), ISP: "alpha", Source: "api"}); err != nil {
		t.Fatal(err)
	}
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	if got := r.snd.take(); len(got) != 0 {
		t.Fatalf("relayed %d frames, want none", len(got))
	}
	if c := r.p.Counters(); c["option82_too_long"] != 1 {
		t.Errorf("counters %v", c)
	}
}

// With the ISP's next hop unresolved (its uplink down), a DISCOVER is
// refused at once with a reason, and no timeout blames the ISP later.
func TestISPUnreachable(t *testing.T) {
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:02")))) // the next hop was resolved once
	r.snd.take()
	r.p.notes.wait()
	r.tab.mu.Lock()
	r.tab.uplinkDown = true
	r.tab.mu.Unlock()
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	if got := r.snd.take(); len(got) != 0 {
		t.Fatalf("sent %d frames with the ISP unreachable", len(got))
	}
	time.Sleep(350 * time.Millisecond)
	r.p.expire(time.Now())
	r.p.notes.wait()
	evs, _ := r.store.Events(0, 10)
	var mine []subscribers.Event
	for _, e := range evs {
		if e.MAC == [6]byte(mac("02:00:00:00:01:01")) {
			mine = append(mine, e)
		}
	}
	if len(mine) != 1 || mine[0].Kind != subscribers.EventRejected || !strings.Contains(mine[0].Reason, "unreachable") {
		t.Errorf("events %+v, want one rejection saying the ISP is unreachable (and no timeout)", mine)
	}
}

// Right after start, before the ISP's next hop was ever resolved, a
// DISCOVER waits for it (bounded) instead of being refused; if it never
// comes, the refusal says it is ispmux's start-up, not the ISP.
func TestStartupWaitsForNextHop(t *testing.T) {
	r := newPRig(t)
	r.tab.uplinkDown = true
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	if got := r.snd.take(); len(got) != 0 {
		t.Fatalf("sent %d frames before the next hop was resolved", len(got))
	}
	time.Sleep(400 * time.Millisecond) // longer than the proxy's timeout
	r.p.expire(time.Now())
	r.tab.mu.Lock()
	r.tab.uplinkDown = false
	r.tab.mu.Unlock()
	r.p.committing.Wait()
	if got := r.serve(kea(t, time.Minute)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("subscriber got %v after the next hop was resolved, want the OFFER", got)
	}
	r.p.notes.wait()
	if evs, _ := r.store.Events(0, 10); len(evs) != 0 {
		t.Errorf("events %+v, want none (the wait is not a refusal)", evs)
	}
	if c := r.p.Counters(); c["waited_for_next_hop"] != 1 || c["no_next_hop"] != 0 {
		t.Errorf("counters %v", c)
	}

	r2 := newPRig(t)
	r2.tab.uplinkDown = true
	r2.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	r2.p.committing.Wait() // startupWait passes
	r2.p.expire(time.Now())
	r2.p.notes.wait()
	evs, _ := r2.store.Events(0, 10)
	if len(evs) != 1 || evs[0].Kind != subscribers.EventRejected || !strings.Contains(evs[0].Reason, "ispmux is starting") ||
		strings.Contains(evs[0].Reason, "uplink down") {
		t.Errorf("events %+v, want one rejection naming ispmux's start-up", evs)
	}
}

// An ISP whose next hop the control plane resolved at start, but to which
// no subscriber's message was relayed yet, is not "starting" when its
// uplink fails later: the message is refused at once as unreachable
// (no_next_hop), not held 2 s and blamed on ispmux's start-up (the proxy
// learnt of the resolution only by relaying, found in a new-user trial).
func TestOutageAfterStartIsNotStartup(t *testing.T) {
	r := newPRig(t)
	r.p.expire(time.Now()) // the tick: the next hop is resolved
	r.tab.mu.Lock()
	r.tab.uplinkDown = true
	r.tab.mu.Unlock()
	discoverRefusedUnreachable(t, r)
}

// discoverRefusedUnreachable sends s1's DISCOVER to r, whose ISP's next
// hop is not resolved, and checks it is refused at once as unreachable
// (no_next_hop, one rejected event saying so), not held as ispmux's
// start-up.
func discoverRefusedUnreachable(t *testing.T, r *prig) {
	t.Helper()
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	r.p.committing.Wait()
	r.p.notes.wait()
	if c := r.p.Counters(); c["no_next_hop"] != 1 || c["waited_for_next_hop"] != 0 || c["no_next_hop_startup"] != 0 {
		t.Errorf("counters %v, want no_next_hop 1 and no wait", c)
	}
	evs, _ := r.store.Events(0, 10)
	if len(evs) != 1 || !strings.Contains(evs[0].Reason, "unreachable") || strings.Contains(evs[0].Reason, "starting") {
		t.Errorf("events %+v, want one rejection saying the ISP is unreachable", evs)
	}
}

// A subscriber sending its own Option 82 (posing as a relay, or forging
// another's identity) is refused with an event, not only a counter.
func TestForgedOption82IsAnEvent(t *testing.T) {
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")),
		dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(2), []byte("spoof"))))))
	if got := r.snd.take(); len(got) != 0 {
		t.Fatalf("relayed %d frames", len(got))
	}
	r.p.notes.wait()
	evs, _ := r.store.Events(0, 10)
	if len(evs) != 1 || evs[0].Kind != subscribers.EventRejected || !strings.HasPrefix(evs[0].Reason, "DHCP message refused (client_option82): ") {
		t.Errorf("events %+v, want one rejection for client_option82", evs)
	}
}

// The rejected event of a client message refused before anything else
// (forged chaddr, Option 82 or giaddr from a subscriber port) gave the
// counter's name only, "DHCP message refused: client_giaddr", which the
// operator reading ctl events found explained nowhere. It says what the
// message carried, after the counter's name; a registered MAC's names its
// ISP and customer.
func TestClientRefusalEventSaysWhy(t *testing.T) {
	for _, tt := range []struct {
		name, want string
		m          func(t *testing.T) *dhcpv4.DHCPv4
	}{
		{"chaddr_mismatch", "its client hardware address (chaddr) is not the frame's source MAC", func(t *testing.T) *dhcpv4.DHCPv4 {
			return discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:09")))
		}},
		{"client_option82", "it carries Option 82 (relay agent information), which only a relay adds", func(t *testing.T) *dhcpv4.DHCPv4 {
			return discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")),
				dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(2), []byte("spoof")))))
		}},
		{"client_giaddr", "it carries a relay agent address (giaddr), which only a relay sets", func(t *testing.T) *dhcpv4.DHCPv4 {
			return discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")), dhcpv4.WithGatewayIP(net.IPv4(10, 9, 9, 9)))
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newPRig(t)
			f := fib.UDPFrame(0xffffffffffff, 0x020000000101, 0, netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67, tt.m(t).ToBytes())
			r.p.HandleFrame(accPort, f)
			r.p.notes.wait()
			evs := r.eventsOf(subscribers.EventRejected)
			want := "DHCP message refused (" + tt.name + "): " + tt.want
			if len(evs) != 1 || evs[0].Reason != want {
				t.Errorf("events %+v, want one rejection %q", evs, want)
			}
			// The frame's MAC (02:..:01:01) is alpha's customer c-s1,
			// not bound on this circuit: a forger anywhere could send
			// it, so the event names no ISP (it would spend alpha's
			// budget). Bound here, it is alpha's, where it named none.
			if len(evs) == 1 && evs[0].ISP != "" {
				t.Errorf("event of a MAC not bound here: ISP %q, want none", evs[0].ISP)
			}
			checkRefusalBoundHere(t, f)
		})
	}
}

// keaGiving is kea() answering with yiaddr ip.
func keaGiving(t *testing.T, ip string) func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	return func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := kea(t, time.Minute)(m)
		if rep != nil {
			rep.YourIPAddr = net.ParseIP(ip).To4()
		}
		return rep
	}
}

// keaAcking is kea offering its usual address and ACKing ip: the ACK's
// own checks (the OFFER's refuse an unusable address before).
func keaAcking(t *testing.T, ip string) func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	return func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := kea(t, time.Minute)(m)
		if rep != nil && rep.MessageType() == dhcpv4.MessageTypeAck {
			rep.YourIPAddr = net.ParseIP(ip).To4()
		}
		return rep
	}
}

// dora runs a whole exchange for the subscriber with MAC m, with server
// answers from serve (and between, if set, run between OFFER and REQUEST),
// and returns what the subscriber got last.
func (r *prig) dora(m string, serve func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4, between func()) []*dhcpv4.DHCPv4 {
	r.t.Helper()
	r.fromClient(discover(r.t, dhcpv4.WithHwAddr(mac(m))))
	got := r.serve(serve)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		r.t.Fatalf("got %v, want an OFFER", got)
	}
	if between != nil {
		between()
	}
	req, _ := dhcpv4.NewRequestFromOffer(got[0])
	r.fromClient(req)
	return r.serve(serve)
}

// Blocked while the ISP was answering: the ACK binds nothing, the
// subscriber is NAKed.
func TestACKAfterBlocked(t *testing.T) {
	// Relay the REQUEST, block, then the ISP's ACK arrives.
	r2 := newPRig(t)
	r2.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	offer := r2.serve(kea(t, time.Minute))[0]
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	r2.fromClient(req)
	if err := r2.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac("02:00:00:00:01:01")), CustomerID: "c-s1", ISP: "alpha", Blocked: true, Source: "api"}); err != nil {
		t.Fatal(err)
	}
	got := r2.serve(kea(t, time.Minute))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("subscriber got %v, want a NAK", got)
	}
	if r2.tab.isBound(0x020000000101) {
		t.Error("a subscriber blocked during its exchange was bound")
	}
}

// A RELEASE naming an address the subscriber does not hold changes nothing.
func TestReleaseOfAnotherAddress(t *testing.T) {
	r := newPRig(t)
	if got := r.dora("02:00:00:00:01:01", kea(t, time.Minute), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("got %v", got)
	}
	rel, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease),
		dhcpv4.WithClientIP(net.IPv4(10, 9, 9, 9)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice()))))
	r.fromClient(rel)
	if sent := r.snd.take(); len(sent) != 0 {
		t.Errorf("relayed %d frames", len(sent))
	}
	if !r.tab.isBound(0x020000000101) {
		t.Error("unbound by a RELEASE of another address")
	}
}

// A RELEASE or DECLINE of the subscriber's own address naming another
// server (option 54: a stray message for another server on its link, or a
// forged one) is ignored, as RFC 2131 §4.3.3/§4.3.4 servers ignore one not
// naming them: not relayed, the binding kept, counted by reason. Before,
// either ended the binding and released the lease at the ISP. One naming
// ispmux's server identifier still ends it.
func TestReleaseForOtherServerIgnored(t *testing.T) {
	r := newPRig(t)
	if got := r.dora(s1, kea(t, time.Minute), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("got %v", got)
	}
	other := dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 168, 1, 1)))
	for _, m := range []*dhcpv4.DHCPv4{
		clientMsg(t, s1, dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(net.IPv4(100, 64, 0, 100)), other),
		clientMsg(t, s1, dhcpv4.MessageTypeDecline, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(100, 64, 0, 100))), other),
	} {
		r.fromClient(m)
		r.p.committing.Wait()
		if sent := r.snd.take(); len(sent) != 0 {
			t.Errorf("%s for another server: sent %d frames", m.MessageType(), len(sent))
		}
		if _, err := r.store.Binding("acc0", 0, [6]byte(mac(s1))); err != nil || !r.tab.isBound(s1MAC) {
			t.Fatalf("%s for another server ended the binding (stored: %v, installed: %v)", m.MessageType(), err, r.tab.isBound(s1MAC))
		}
	}
	if c := r.p.Counters(); c["release_other_server"] != 1 || c["decline_other_server"] != 1 {
		t.Errorf("release_other_server %d, decline_other_server %d; want 1 each", c["release_other_server"], c["decline_other_server"])
	}
	r.fromClient(releaseOf100(t))
	r.p.committing.Wait()
	if r.tab.isBound(s1MAC) {
		t.Error("a RELEASE naming ispmux did not end the binding")
	}
}

// A client that takes longer than dhcp.timeout to REQUEST its OFFER: the
// REQUEST still carries the ISP's server-id, and the ISP ACKs.
func TestRequestAfterTransactionEnded(t *testing.T) {
	r := newPRig(t)
	got := r.dora("02:00:00:00:01:01", kea(t, time.Minute), func() {
		time.Sleep(350 * time.Millisecond) // past the rig's 300 ms timeout
		r.p.expire(time.Now())
	})
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("slow client got %v, want an ACK", got)
	}
}

// An ISP answering with ispmux's own gateway address: declined, NAKed.
func TestACKOfUnusableAddress(t *testing.T) {
	r := newPRig(t)
	got := r.dora("02:00:00:00:01:01", keaAcking(t, ourSID.String()), nil)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("got %v, want a NAK", got)
	}
	if r.tab.isBound(0x020000000101) || r.p.Counters()["ack_unusable_address"] != 1 {
		t.Errorf("bound to our gateway address, or not counted: %v", r.p.Counters())
	}
}

// A renewal that gets another address records a new bound event with it.
func TestAddressChangeIsRecorded(t *testing.T) {
	r := newPRig(t)
	r.dora("02:00:00:00:01:01", kea(t, time.Minute), nil)
	r.dora("02:00:00:00:01:01", keaGiving(t, "100.64.0.123"), nil)
	r.p.notes.wait()
	evs, _ := r.store.Events(0, 10)
	if len(evs) == 0 || evs[len(evs)-1].Kind != subscribers.EventBound || evs[len(evs)-1].IP != netip.MustParseAddr("100.64.0.123") {
		t.Errorf("events %+v, want the last one bound 100.64.0.123", evs)
	}
}

// A static subscriber's DISCOVER is refused (its address is configured; a
// lease would replace it) and a DHCP binding it held is stale.
func TestStaticSubscriberDHCP(t *testing.T) {
	r := newPRig(t)
	r.dora("02:00:00:00:01:01", kea(t, time.Minute), nil)
	if !r.tab.isBound(0x020000000101) {
		t.Fatal("not bound")
	}
	r.p.SetStatic([]uint64{0x020000000101})
	if n := r.p.Revalidate(); n != 1 {
		t.Errorf("revoked %d DHCP bindings of a subscriber made static, want 1", n)
	}
	// The ISP is told: a RELEASE on the subscriber's behalf, with the
	// lease's address and our Option 82.
	if sent := r.snd.take(); len(sent) != 1 || sent[0].port != upPort {
		t.Fatalf("revocation sent %d frames, want one RELEASE to the ISP", len(sent))
	} else if m := dhcpOf(sent[0].frame); m.MessageType() != dhcpv4.MessageTypeRelease || m.ClientIPAddr.IsUnspecified() ||
		!m.Options.Has(dhcpv4.OptionRelayAgentInformation) || !m.ServerIdentifier().Equal(net.IP(ispSID.AsSlice())) {
		t.Errorf("revocation sent %v, want a RELEASE of the lease with our Option 82 and the ISP's server-id", m)
	}
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	if sent := r.snd.take(); len(sent) != 0 || r.p.Counters()["static_subscriber"] != 1 {
		t.Errorf("a static subscriber's DISCOVER was relayed (%d frames, counters %v)", len(sent), r.p.Counters())
	}
}

// The ISP's router says its DHCP server's port is unreachable (Kea down):
// the timeout event names that cause instead of a silent server.
func TestServerPortUnreachable(t *testing.T) {
	serverUnreachable(t, 3, 0, "port unreachable")
}

// A router on the way says the relayed message needs fragmenting (ICMP
// 3/4, RFC 1191): the timeout event says the path's MTU is the cause, not
// a server that is down or silent.
func TestServerPathFragNeeded(t *testing.T) {
	serverUnreachable(t, 4, 576, "too big for the path to it (MTU 576)")
}

// serverUnreachable: the ISP's side answers a relayed DISCOVER with an
// ICMP destination unreachable of code (mtu: its next-hop MTU field); the
// timeout event must contain want.
func serverUnreachable(t *testing.T, code byte, mtu uint16, want string) {
	t.Helper()
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:02"))))
	sent := r.snd.take()
	if len(sent) != 1 {
		t.Fatalf("relayed %d frames", len(sent))
	}
	r.unreachableQuoting(code, mtu, sent[0].frame[14:]) // the IPv4 packet we sent
	if c := r.p.Counters(); c["server_unreachable"] != 1 {
		t.Fatalf("counters %v", c)
	}
	evs := r.eventsAfterTimeout()
	if len(evs) != 1 || evs[0].Kind != subscribers.EventTimeout || !strings.Contains(evs[0].Reason, want) {
		t.Errorf("events %+v, want a timeout saying %q", evs, want)
	}
}

// anyone answers every relayed message like kea(), for any subscriber,
// always with 100.64.0.100 (as Kea does for two clients sharing a client
// identifier).
func anyone(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	mt := dhcpv4.MessageTypeOffer
	if m.MessageType() == dhcpv4.MessageTypeRequest {
		mt = dhcpv4.MessageTypeAck
	}
	rep, _ := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(mt),
		dhcpv4.WithYourIP(net.IPv4(100, 64, 0, 100)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ispSID.AsSlice()))),
		dhcpv4.WithLeaseTime(60),
		dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, m.Options.Get(dhcpv4.OptionRelayAgentInformation)))
	return rep
}

// A subscriber given a neighbour's lease by the ISP (same client
// identifier) is refused, and nothing is declined: the neighbour keeps it.
// A DECLINE or RELEASE naming a neighbour's address is not relayed.
func TestNeighbourLeaseIsNotDeclined(t *testing.T) {
	r := newPRig(t)
	r.dora("02:00:00:00:01:01", anyone, nil) // 02:00:00:00:01:01 holds 100.64.0.100
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:02"))))
	offer := r.serve(anyone)[0]
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	r.fromClient(req)
	got := r.serve(anyone)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("the second subscriber got %v, want a NAK", got)
	}
	for _, s := range r.snd.take() {
		if m := dhcpOf(s.frame); m != nil && m.MessageType() == dhcpv4.MessageTypeDecline {
			t.Fatal("a DECLINE went to the ISP for the neighbour's address")
		}
	}
	if !r.tab.isBound(0x020000000101) {
		t.Error("the holder lost its binding")
	}
	for _, mt := range []dhcpv4.MessageType{dhcpv4.MessageTypeDecline, dhcpv4.MessageTypeRelease} {
		m, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac("02:00:00:00:01:02")), dhcpv4.WithMessageType(mt),
			dhcpv4.WithClientIP(net.IPv4(100, 64, 0, 100)),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(100, 64, 0, 100))),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice()))))
		r.fromClient(m)
		if sent := r.snd.take(); len(sent) != 0 {
			t.Errorf("a %s for the neighbour's address was relayed", mt)
		}
	}
}

// A reply the client asked to get broadcast (and a NAK) is an IP broadcast
// in a frame to the client's MAC only: its neighbours on the access network
// never see it.
func TestBroadcastRepliesGoToChaddrOnly(t *testing.T) {
	r := newPRig(t)
	d := discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")), dhcpv4.WithBroadcast(true))
	r.fromClient(d)
	for _, s := range r.snd.take() {
		if m := dhcpOf(s.frame); m == nil || s.port != upPort {
			continue
		} else if rep := kea(t, time.Minute)(m); rep != nil {
			r.p.HandleFrame(upPort, fib.UDPFrame(upMAC, gwMAC, 0, ispSID, giaddr, 67, 67, rep.ToBytes()))
		}
	}
	sent := r.snd.take()
	if len(sent) != 1 || sent[0].port != accPort {
		t.Fatalf("sent %d frames, want the OFFER", len(sent))
	}
	var pkt classifier.Packet
	if pkt.Decode(sent[0].frame) != classifier.ReasonNone || pkt.Dst != 0x020000000101 || pkt.DstIP != 0xffffffff {
		t.Errorf("OFFER to MAC %012x, IP %08x: want the client's MAC and 255.255.255.255", pkt.Dst, pkt.DstIP)
	}
}

// A stored lease whose address a static subscriber now holds is revoked at
// restore (with an event), not left half-installed.
func TestRestoreLeaseTakenByStatic(t *testing.T) {
	r := newPRig(t)
	now := time.Now()
	r.tab.bound[0x020000000199] = binding.Binding{Port: accPort, MAC: 0x020000000199, IP: netip.MustParseAddr("100.64.0.100"), Static: true}
	b := subscribers.Binding{MAC: [6]byte{2, 0, 0, 0, 1, 1}, Access: "acc0", ISP: "alpha",
		IP: netip.MustParseAddr("100.64.0.100"), Expires: now.Add(time.Hour), Updated: now}
	if err := r.store.CommitBinding(b); err != nil {
		t.Fatal(err)
	}
	if n, err := r.p.Restore(now); err != nil || n != 0 {
		t.Fatalf("restored %d, %v; want 0", n, err)
	}
	if r.p.Leases() != 0 {
		t.Errorf("%d leases after the restore, want 0", r.p.Leases())
	}
	if bs, _ := r.store.Bindings(); len(bs) != 0 {
		t.Errorf("%d bindings left in the store", len(bs))
	}
	r.p.notes.wait()
	if evs, _ := r.store.Events(0, 10); len(evs) != 1 || evs[0].Kind != subscribers.EventRevoked {
		t.Errorf("events %+v, want one revoked", evs)
	}
}

// TestRestoreEndsManyExpired: a restart after a long outage ends every
// binding that ran out meanwhile (side by side, grouped into few
// transactions), each with its event, and keeps the others.
func TestRestoreEndsManyExpired(t *testing.T) {
	r := newPRig(t)
	now := time.Now()
	const n = 500
	for i := range n {
		exp := now.Add(-time.Minute)
		if i%10 == 0 {
			exp = now.Add(time.Hour)
		}
		hw := [6]byte{2, 0, 0, 0, byte(i >> 8), byte(i)}
		if err := r.store.PutRegistration(subscribers.Registration{MAC: hw, CustomerID: "c-s1", ISP: "alpha", Source: "api"}); err != nil {
			t.Fatal(err)
		}
		b := subscribers.Binding{MAC: hw, Access: "acc0", ISP: "alpha",
			IP: netip.AddrFrom4([4]byte{100, 65, byte(i >> 8), byte(i)}), Expires: exp, Updated: now.Add(-2 * time.Hour)}
		if err := r.store.CommitBinding(b); err != nil {
			t.Fatal(err)
		}
	}
	r.p.setLimits(func(l *Limits) { l.MaxBindingsPerCircuit = n })
	got, err := r.p.Restore(now)
	if err != nil || got != n/10 {
		t.Fatalf("restored %d, %v; want %d", got, err, n/10)
	}
	r.p.lapsing.Wait()
	if bs, _ := r.store.Bindings(); len(bs) != n/10 {
		t.Errorf("%d bindings left in the store, want %d", len(bs), n/10)
	}
	r.p.notes.wait()
	evs, _ := r.store.Events(0, 2*n)
	seen := map[[6]byte]bool{}
	for _, e := range evs {
		if e.Kind != subscribers.EventExpired || seen[e.MAC] {
			t.Fatalf("event %+v (a second one, or not expired)", e)
		}
		seen[e.MAC] = true
	}
	if len(seen) != n-n/10 || r.p.Counters()["expired"] != uint64(n-n/10) {
		t.Errorf("%d expired events, counter %d; want %d", len(seen), r.p.Counters()["expired"], n-n/10)
	}
}

// TestRetransmissionOutlivesDeadline: the ISP drops the first copy of a
// DISCOVER; the client's retransmission, relayed before the first copy's
// time ran out, is answered only after it did (an ISP server behind, as
// in an outage). The first copy's silence is reported, but the
// transaction waits for the answer to the retransmission, which reaches
// the subscriber; without another copy the transaction then ends.
func TestRetransmissionOutlivesDeadline(t *testing.T) {
	r := newPRig(t) // dhcp timeout 300 ms
	d := discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")))
	t0 := time.Now()
	r.fromClient(d)
	r.snd.take() // the ISP's server drops the first copy
	time.Sleep(100 * time.Millisecond)
	r.fromClient(d) // the client retransmits
	r.p.expire(t0.Add(350 * time.Millisecond))
	if c := r.p.Counters(); c["timeout"] != 1 {
		t.Errorf("first copy's silence: counters %v, want 1 timeout", c)
	}
	got := r.serve(kea(t, time.Minute))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("answer to the retransmission: subscriber got %v (counters %v), want its OFFER", got, r.p.Counters())
	}
	// The retransmission's own time runs out: the transaction ends, and
	// a late answer finds none.
	r.p.expire(time.Now().Add(time.Second))
	if r.p.tx.get(pendKey{xid: d.TransactionID, mac: 0x020000000101, isp: 0}) != nil {
		t.Error("transaction still pending after the retransmission's time ran out")
	}
}

// An ISP whose router was never resolved, past startupGrace after the
// start (a trial: a wrong uplink VLAN): its subscribers' messages were
// held 2 s and refused as "ispmux is starting" for as long as it ran (90 s
// and more), counted against the ISP's refusals with a text saying it was
// not the ISP. Past the grace they are refused at once as unreachable, and
// the unresolved next hop is logged once.
func TestNeverResolvedIsNotStartupAfterGrace(t *testing.T) {
	r := newPRig(t)
	r.tab.uplinkDown = true
	r.p.born = time.Now().Add(-startupGrace - time.Second)
	r.p.expire(time.Now()) // the tick notes it unresolved
	if !r.p.unresolvedSaid[0].Load() {
		t.Error("the never resolved next hop was not logged")
	}
	discoverRefusedUnreachable(t, r)
}

// setLimits changes the limits in force as a test needs them.
func (p *Proxy) setLimits(f func(*Limits)) {
	l := p.Limits()
	f(&l)
	p.SetLimits(l)
}

// config is the configuration p runs with, its limits those in force: a
// test's restart (New) starts with them.
func (p *Proxy) config() Config {
	c := p.cfg
	c.Limits = p.Limits()
	return c
}

// A broken client's message, refused before anything else, is a rejected
// event saying why, as a forged one is (TestClientRefusalEventSaysWhy):
// it was only counted, so a trial's device sending DISCOVERs with option
// 52, a 5-byte option 54, no option 53, hops 16 or no END showed nothing
// in ctl subscriber or ctl events, and the operator could not tell which
// device the counters meant. A bound MAC's names its ISP and customer.
func TestBrokenClientRefusalIsAnEvent(t *testing.T) {
	bytesOf := func(mods ...dhcpv4.Modifier) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			return discover(t, append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac(s1))}, mods...)...).ToBytes()
		}
	}
	for _, tt := range []struct {
		name, want string
		payload    func(t *testing.T) []byte
	}{
		{"malformed", "it does not parse as DHCP (shorter than 240 bytes, or an option overrunning it), its op is neither BOOTREQUEST nor BOOTREPLY, or its hardware address is not Ethernet", func(t *testing.T) []byte {
			b := discover(t, dhcpv4.WithHwAddr(mac(s1))).ToBytes()
			return append(b[:240:240], 53, 1, 1, 61, 200, 1, 2) // option 61 overruns the message
		}},
		{"bootreply_from_client", "it is a BOOTREPLY (op 2), which only a server sends", bytesOf(func(d *dhcpv4.DHCPv4) { d.OpCode = dhcpv4.OpcodeBootReply })},
		{"option_overload", "it carries option 52 (options in sname or file), which ispmux does not relay", bytesOf(dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionOptionOverload, []byte{1})))},
		{"option_length", "an option has the wrong length", bytesOf(dhcpv4.WithGeneric(dhcpv4.OptionServerIdentifier, []byte{192, 0, 2, 1, 0}))},
		{"no_message_type", "it has no message type (option 53): BOOTP, not served", bytesOf(func(d *dhcpv4.DHCPv4) { d.Options.Del(dhcpv4.OptionDHCPMessageType) })},
		{"not_client_message", "its message type is not one a client sends (RFC 2131 table 2)", bytesOf(dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer))},
		{"too_many_hops", "its hops field is 16 or more (RFC 1542)", bytesOf(func(d *dhcpv4.DHCPv4) { d.HopCount = 16 })},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := fib.UDPFrame(0xffffffffffff, 0x020000000101, 0, netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67, tt.payload(t))
			r := newPRig(t)
			r.p.HandleFrame(accPort, f)
			r.p.notes.wait()
			if n := r.p.Counters()[tt.name]; n != 1 {
				t.Errorf("counter %s %d, want 1", tt.name, n)
			}
			want := "DHCP message refused (" + tt.name + "): " + tt.want
			evs := r.eventsOf(subscribers.EventRejected)
			if len(evs) != 1 || !strings.HasPrefix(evs[0].Reason, want) || evs[0].ISP != "" {
				t.Fatalf("events %+v, want one rejection %q naming no ISP", evs, want)
			}
			checkRefusalBoundHere(t, f)
		})
	}
}

// checkRefusalBoundHere: client frame f, refused before admission, from
// s1 bound to alpha on this circuit (after a DORA in a new rig) is one
// rejected event in alpha's name, with s1's customer.
func checkRefusalBoundHere(t *testing.T, f []byte) {
	t.Helper()
	r := newPRig(t)
	if got := r.dora(s1, kea(t, time.Minute), nil); len(got) != 1 {
		t.Fatalf("DORA: %v", got)
	}
	r.p.HandleFrame(accPort, f)
	r.p.notes.wait()
	if evs := r.eventsOf(subscribers.EventRejected); len(evs) != 1 || evs[0].ISP != "alpha" || evs[0].Customer != "c-s1" {
		t.Errorf("events %+v of a MAC bound here: want alpha's, customer c-s1", evs)
	}
}
