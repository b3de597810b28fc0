package dhcpproxy

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// downISPTables is the rig's tables with one ISP's next hop unresolved
// (its uplink lost) and the others reachable.
type downISPTables struct {
	*fakeTables
	down uint8
}

func (d downISPTables) NextHopMAC(isp uint8) (uint64, bool) {
	if isp == d.down {
		return 0, false
	}
	return d.fakeTables.NextHopMAC(isp)
}

// A device bound at alpha moves to beta (the portal, the API) while
// alpha's uplink is down. Its DISCOVER ends the alpha binding through an
// intent (the RELEASE to alpha waits for alpha's next hop) and reaches
// beta: a RELEASE to alpha cannot free a lease at beta, so nothing is to
// be ordered between the two. Before, it was dropped
// (relay_after_pending_intent) at every retransmission for as long as
// alpha was unreachable.
func TestMoveAwayFromUnreachableISP(t *testing.T) {
	r, cs := boundAtAlpha(t)
	r.p = New(r.p.config(), cs, r.p.reg, downISPTables{r.tab, 0}, r.snd, nil)
	if _, err := r.p.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	r.moveTo("beta")
	r.p.RevalidateMACs([]uint64{s1MAC})
	for i := range 3 {
		d := discover(t, dhcpv4.WithHwAddr(mac(s1)))
		d.TransactionID[3] = byte(i + 1)
		r.fromClient(d)
		r.p.expire(time.Now())
	}
	if r.tab.isBound(s1MAC) {
		t.Error("still bound at alpha")
	}
	sent := r.toPorts()
	if len(sent[betaPort]) == 0 {
		t.Errorf("no DISCOVER reached beta in 3 tries while alpha is unreachable (counters %v)", r.p.Counters())
	}
	if r.p.PendingIntents() != 1 {
		t.Errorf("pending intents %d, want alpha's RELEASE kept", r.p.PendingIntents())
	}
}

// A stored binding of a circuit no longer configured (the operator removed
// access acc1, VLAN 5, while ispmux was stopped) is ended at the restore
// with a revoked event, by its stored key, and its ISP, still configured,
// gets a RELEASE with the binding's stored Option 82 (before, nothing:
// the ISP held the address, its customer online, until the lease ran
// out). Before that, its end was keyed
// with the zero circuit (VLAN 0), not the binding's VLAN: (a) the store
// kept it, ended again with a new event at every start; (b) once acc1 was
// configured again it was restored and forwarded, after the log said it
// ended; (c) the end removed the same MAC's binding on port 0, VLAN 0
// (acc0) from the lease and forwarding tables, though the store kept it.
func TestRestoreEndsRemovedCircuitsBinding(t *testing.T) {
	r := newPRig(t)
	now := time.Now()
	m := [6]byte(mac(s1))
	goneOp82 := (&relayInfo{CircuitID: []byte("acc1:5"), RemoteID: mac(s1)}).encode()
	gone := subscribers.Binding{MAC: m, Access: "acc1", VLAN: 5, ISP: "alpha", IP: netip.MustParseAddr("100.64.0.101"),
		Expires: now.Add(time.Hour), Updated: now, LeaseTime: 2 * time.Hour, ServerID: ispSID, Option82: goneOp82}
	live := subscribers.Binding{MAC: m, Access: "acc0", VLAN: 0, ISP: "alpha", IP: netip.MustParseAddr("100.64.0.100"),
		Expires: now.Add(time.Hour), Updated: now, LeaseTime: 2 * time.Hour}
	for _, b := range []subscribers.Binding{gone, live} {
		if err := r.store.CommitBinding(b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.p.Restore(now); err != nil {
		t.Fatal(err)
	}
	r.p.notes.wait()
	ended := 0
	evs, _ := r.store.Events(0, 100)
	for _, e := range evs {
		if e.Kind == subscribers.EventRevoked && e.Access == "acc1" {
			ended++
		}
	}
	if ended != 1 {
		t.Fatalf("%d revoked events for acc1's binding, want 1 (events %v)", ended, evs)
	}
	var release *dhcpv4.DHCPv4
	if rels := r.sentUp(dhcpv4.MessageTypeRelease); len(rels) > 0 {
		release = rels[len(rels)-1]
	}
	if release == nil {
		t.Fatal("no RELEASE to alpha for the removed circuit's binding")
	}
	if !release.ClientIPAddr.Equal(net.IP(gone.IP.AsSlice())) || !bytes.Equal(release.Options.Get(dhcpv4.OptionRelayAgentInformation), goneOp82) {
		t.Errorf("RELEASE: ciaddr %v, option 82 %x; want %v and the binding's stored %x", release.ClientIPAddr, release.Options.Get(dhcpv4.OptionRelayAgentInformation), gone.IP, goneOp82)
	}
	if _, err := r.store.Binding("acc1", 5, m); err == nil {
		t.Error("(a) the binding of the removed circuit is still stored after its end event")
	}
	_, leased := r.p.Lease(accPort, 0, s1MAC)
	_, serr := r.store.Binding("acc0", 0, m)
	if !leased || !r.tab.isBound(s1MAC) {
		t.Errorf("(c) the live binding at acc0 (port 0, VLAN 0): in the lease table %v, forwarding %v, stored %v; want all three",
			leased, r.tab.isBound(s1MAC), serr == nil)
	}

	// acc1 is configured again: the ended binding comes back.
	cfg := r.p.config()
	cfg.Circuits = append(cfg.Circuits, Circuit{Name: "acc1", Interface: "acc1", Port: 3, VLAN: 5, MAC: accMAC, Addr: ourSID})
	r.tab = &fakeTables{bound: map[uint64]binding.Binding{}, store: r.store}
	p2 := New(cfg, r.store, r.p.reg, r.tab, r.snd, nil)
	if _, err := p2.Restore(time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, ok := p2.Lease(3, 5, s1MAC); ok {
		t.Error("(b) the binding ended at the previous start is restored on acc1 again")
	}
}

// engineTables has engine.Control's conflict rule: an address at an ISP
// is another subscriber's when its FIB entry names another (MAC, port,
// VLAN); the MAC table is keyed by (port, VLAN, MAC).
type engineTables struct {
	mu  sync.Mutex
	mac map[subKey]binding.Binding
	fib map[[2]any]subKey
}

func newEngineTables() *engineTables {
	return &engineTables{mac: map[subKey]binding.Binding{}, fib: map[[2]any]subKey{}}
}

func (e *engineTables) conflict(b binding.Binding) error {
	if d, ok := e.fib[[2]any{b.ISP, b.IP}]; ok && d != (subKey{circuitKey{b.Port, b.VLAN}, b.MAC}) {
		return binding.ErrConflict
	}
	return nil
}

func (e *engineTables) CheckBind(b binding.Binding) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.conflict(b)
}

func (e *engineTables) Bind(b binding.Binding) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.conflict(b); err != nil {
		return err
	}
	k := subKey{circuitKey{b.Port, b.VLAN}, b.MAC}
	if old, ok := e.mac[k]; ok {
		delete(e.fib, [2]any{old.ISP, old.IP})
	}
	e.mac[k] = b
	e.fib[[2]any{b.ISP, b.IP}] = k
	return nil
}

func (e *engineTables) Unbind(port uint8, vlan uint16, m uint64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := subKey{circuitKey{port, vlan}, m}
	old, ok := e.mac[k]
	if ok {
		delete(e.mac, k)
		delete(e.fib, [2]any{old.ISP, old.IP})
	}
	return ok
}

func (e *engineTables) Holder(isp uint8, a netip.Addr) (binding.Binding, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	k, ok := e.fib[[2]any{isp, a}]
	if !ok {
		return binding.Binding{}, false
	}
	return e.mac[k], true
}

func (e *engineTables) NextHopMAC(uint8) (uint64, bool) { return gwMAC, true }

func (e *engineTables) boundOn(vlan uint16, m uint64) (binding.Binding, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b, ok := e.mac[subKey{circuitKey{accPort, vlan}, m}]
	return b, ok
}

// boundOnAcc0 is the rig with a second circuit, acc1 (VLAN 5 of the same
// port), and s1, registered for any access (the registry's Access ""),
// bound at alpha on acc0 (a one-hour lease, client_lease_max 10 min).
func boundOnAcc0(t *testing.T) (*prig, *engineTables) {
	t.Helper()
	r := newPRig(t)
	et := newEngineTables()
	cfg := r.p.config()
	cfg.Circuits = append(cfg.Circuits, Circuit{Name: "acc1", Interface: "acc0", Port: accPort, VLAN: 5, MAC: accMAC, Addr: ourSID})
	r.p = New(cfg, r.store, r.p.reg, et, r.snd, nil)
	if got := r.dora(s1, kea(t, time.Hour), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("DORA on acc0: %v", got)
	}
	if _, ok := et.boundOn(0, s1MAC); !ok {
		t.Fatal("not bound on acc0")
	}
	return r, et
}

// discoverOnAcc1 sends s1's DISCOVER on acc1 and returns what the ISP and
// the subscriber were sent.
func (r *prig) discoverOnAcc1() map[uint8][]*dhcpv4.DHCPv4 {
	r.t.Helper()
	r.fromClientVLAN(5, discover(r.t, dhcpv4.WithHwAddr(mac(s1))))
	r.p.committing.Wait()
	r.p.notes.wait()
	return r.toPorts()
}

// A device registered for any access bound on acc0 is plugged in on acc1
// (another VLAN). Its INIT-REBOOT is NAKed (no binding on acc1). Its
// DISCOVER is refused while the lease ispmux gave it on acc0 may still be
// in use (a device on acc1 forging its MAC must not take it over: see
// TestForgedMACOnAnotherCircuit); once client_lease_max has passed since,
// without a word from acc0, its DISCOVER ends the binding on acc0 (a
// RELEASE to alpha) and is relayed; alpha hands it the same address and
// the device is bound on acc1. Before, the acc0 binding was never ended
// nor alpha told, and ispmux refused alpha's ACK as "the address of DHCP
// subscriber <itself>": the device stayed offline until the ISP's lease
// ran out (an hour here).
func TestDeviceMovedToAnotherCircuit(t *testing.T) {
	r, et := boundOnAcc0(t)
	// Plugged in on acc1: INIT-REBOOT, NAKed; then DISCOVER.
	r.fromClientVLAN(5, initReboot(t, s1, netip.MustParseAddr(s1Addr)))
	if got := r.serve(kea(t, time.Hour)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("INIT-REBOOT on acc1: %v, want a NAK", got)
	}
	if sent := r.discoverOnAcc1(); len(sent[upPort]) != 0 || len(sent[accPort]) != 0 {
		t.Fatalf("DISCOVER on acc1 while the acc0 lease may be in use: %v relayed, %v answered; want it refused", sent[upPort], sent[accPort])
	}
	// client_lease_max later, acc0 silent: every lease ispmux gave the
	// device there has run out.
	r.pastT1(r.p.Limits().ClientLeaseMax)
	r.fromClientVLAN(5, discover(t, dhcpv4.WithHwAddr(mac(s1))))
	got := r.serve(kea(t, time.Hour))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("DISCOVER on acc1 client_lease_max later: %v (counters %v)", got, r.p.Counters())
	}
	r.wantMovedToAcc1(et, got[0])
}

// wantMovedToAcc1 completes s1's DORA on acc1 from alpha's offer and
// checks that s1 is bound there and that its binding on acc0 ended as
// revoked, its RELEASE sent to alpha.
func (r *prig) wantMovedToAcc1(et *engineTables, offer *dhcpv4.DHCPv4) {
	r.t.Helper()
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	r.fromClientVLAN(5, req)
	got := r.serve(kea(r.t, time.Hour))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		r.t.Errorf("REQUEST on acc1: %v, want the ACK (counters %v)", got, r.p.Counters())
	}
	if _, ok := et.boundOn(5, s1MAC); !ok {
		r.t.Error("not bound on acc1")
	}
	if _, ok := et.boundOn(0, s1MAC); ok {
		r.t.Error("still forwarding on acc0, where the device no longer is")
	}
	r.p.notes.wait()
	revoked := false
	evs, _ := r.store.Events(0, 100)
	for _, e := range evs {
		revoked = revoked || e.Kind == subscribers.EventRevoked && e.Access == "acc0"
	}
	if sent := r.p.Counters()["intent_sent_release"]; !revoked || sent != 1 {
		r.t.Errorf("acc0's binding: revoked event %v, RELEASEs sent %d (want its RELEASE sent to alpha)", revoked, sent)
	}
}

// wantHeldOnAcc0 checks that s1's binding on acc0 is still forwarding and
// held, and that nothing of s1's reached alpha (sent: what was sent since
// the DORA, by port).
func (r *prig) wantHeldOnAcc0(et *engineTables, what string, sent map[uint8][]*dhcpv4.DHCPv4) {
	r.t.Helper()
	if len(sent[upPort]) != 0 {
		r.t.Errorf("%s: sent to alpha %v; want nothing (no RELEASE of acc0's lease, nothing relayed)", what, sent[upPort])
	}
	_, fwd := et.boundOn(0, s1MAC)
	_, held := r.p.Lease(accPort, 0, s1MAC)
	if !fwd || !held {
		r.t.Fatalf("%s: s1's binding on acc0: forwarding %v, held %v; want both (counters %v)", what, fwd, held, r.p.Counters())
	}
}

// A device on acc1 forging the MAC of s1, registered for any access and
// bound on acc0, sends every DHCP message that could end or move a
// binding: INIT-REBOOT, RELEASE and DECLINE of s1's address, DISCOVER, a
// SELECTING REQUEST. None ends s1's binding or reaches alpha (the
// INIT-REBOOT gets a NAK on acc1 only); each DISCOVER and REQUEST is
// counted (moved_circuit_refused) and a rejected event says why. Before,
// its first DISCOVER revoked s1's binding (a RELEASE to alpha: s1
// offline) and was relayed, and the forger was bound on acc1 with s1's
// service.
func TestForgedMACOnAnotherCircuit(t *testing.T) {
	r, et := boundOnAcc0(t)
	ip := netip.MustParseAddr(s1Addr)
	for _, m := range []struct {
		what string
		msg  *dhcpv4.DHCPv4
	}{
		{"INIT-REBOOT", initReboot(t, s1, ip)},
		{"RELEASE", clientMsg(t, s1, dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(net.IP(ip.AsSlice())),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice()))))},
		{"DECLINE", clientMsg(t, s1, dhcpv4.MessageTypeDecline, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP(ip.AsSlice()))),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice()))))},
		{"DISCOVER", discover(t, dhcpv4.WithHwAddr(mac(s1)))},
		{"SELECTING REQUEST", clientMsg(t, s1, dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP(ip.AsSlice()))),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice()))))},
	} {
		r.fromClientVLAN(5, m.msg)
		r.p.committing.Wait()
		r.p.notes.wait()
		r.wantHeldOnAcc0(et, m.what+" on acc1", r.toPorts())
	}
	if n := r.p.Counters()["moved_circuit_refused"]; n != 2 {
		t.Errorf("moved_circuit_refused %d, want 2 (the DISCOVER and the REQUEST)", n)
	}
	if c := r.p.ISPCounters()[0]; c.Outcomes[OutcomeMisplaced] != 2 || c.Outcomes[OutcomeRejected] != 0 {
		t.Errorf("alpha's outcomes %v, want the 2 refusals misplaced, none rejected (the forger is not alpha's doing)", c.Outcomes)
	}
	found := false
	for _, e := range r.eventsOf(subscribers.EventRejected) {
		found = found || e.Access == "acc1" && strings.Contains(e.Reason, "bound on access acc0")
	}
	if !found {
		t.Errorf("no rejected event on acc1 naming acc0's binding (events %v)", r.eventsOf(subscribers.EventRejected))
	}
}

// The forger on acc1 keeps asking for s1's MAC; s1, still on acc0, renews
// there within its client lease. Its renewal withdraws acc1's claim
// (moved_circuit_withdrawn): acc1's DISCOVER past client_lease_max from
// its first is still refused, and s1 keeps its binding for as long as it
// renews. Before, acc1's first DISCOVER revoked it.
func TestRenewalOnOwnCircuitWithdrawsAnotherCircuitsClaim(t *testing.T) {
	r, et := boundOnAcc0(t)
	clm := r.p.Limits().ClientLeaseMax
	r.wantHeldOnAcc0(et, "DISCOVER on acc1", r.discoverOnAcc1())
	// s1 renews on acc0 at its client lease's half: answered from the
	// binding.
	r.pastT1(clm / 2)
	r.fromClient(renewing(t, s1, s1Addr))
	if got := r.serve(kea(t, time.Hour)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("s1's renewal on acc0: %v, want an ACK", got)
	}
	if n := r.p.Counters()["moved_circuit_withdrawn"]; n != 1 {
		t.Errorf("moved_circuit_withdrawn %d, want 1", n)
	}
	r.pastT1(clm)
	r.wantHeldOnAcc0(et, "DISCOVER on acc1 client_lease_max after its first", r.discoverOnAcc1())
	r.pastT1(clm * 3 / 2)
	r.fromClient(renewing(t, s1, s1Addr))
	r.serve(kea(t, time.Hour))
	r.pastT1(2 * clm)
	r.wantHeldOnAcc0(et, "DISCOVER on acc1 client_lease_max after its second", r.discoverOnAcc1())
	if n := r.p.Counters()["moved_circuit_refused"]; n != 3 {
		t.Errorf("moved_circuit_refused %d, want 3", n)
	}
}

// The forger on acc1 floods DISCOVERs with s1's MAC, far over the
// per-MAC rate limit, before and through s1's renewals on acc0. The
// flood spends only its own budget: s1's renewal on acc0 is answered and
// withdraws acc1's claim, and acc1's DISCOVER client_lease_max after the
// flood began still takes nothing over. Before, the MAC's one bucket was
// shared by every circuit: the flood on acc1 left s1's renewal on acc0
// rate-limited (no ACK, the claim kept), so the forger, having silenced
// the holder it could not outrun, took its binding over
// client_lease_max later.
func TestForgedFloodOnAnotherCircuitDoesNotSilenceTheHolder(t *testing.T) {
	r, et := boundOnAcc0(t)
	r.p.setLimits(func(l *Limits) { l.MACRate, l.MACBurst = 1, 3 })
	clm := r.p.Limits().ClientLeaseMax
	flood := func(what string) {
		for range 20 {
			r.fromClientVLAN(5, discover(t, dhcpv4.WithHwAddr(mac(s1))))
		}
		r.p.committing.Wait()
		r.p.notes.wait()
		r.wantHeldOnAcc0(et, what, r.toPorts())
	}
	flood("flood on acc1")
	r.pastT1(clm / 2)
	flood("flood on acc1 at s1's T1")
	r.fromClient(renewing(t, s1, s1Addr))
	if got := r.serve(kea(t, time.Hour)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("s1's renewal on acc0 during acc1's flood: %v, want an ACK (counters %v)", got, r.p.Counters())
	}
	if n := r.p.Counters()["moved_circuit_withdrawn"]; n != 1 {
		t.Errorf("moved_circuit_withdrawn %d, want 1", n)
	}
	r.pastT1(clm + time.Second)
	flood("flood on acc1 client_lease_max after its first")
}

// wantOfferOnAcc1 sends s1's DISCOVER on acc1 and returns alpha's OFFER
// to it, failing the test if it was not relayed and answered.
func (r *prig) wantOfferOnAcc1(what string) *dhcpv4.DHCPv4 {
	r.t.Helper()
	r.fromClientVLAN(5, discover(r.t, dhcpv4.WithHwAddr(mac(s1))))
	got := r.serve(kea(r.t, time.Hour))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		r.t.Fatalf("%s: %v, want alpha's OFFER (counters %v)", what, got, r.p.Counters())
	}
	return got[0]
}

// s1, bound on acc0 with a client lease of client_lease_max (the ISP's is
// an hour), is unplugged and plugged in on acc1 halfway through that
// lease. Its DISCOVER there is refused while the lease may still be in
// use on acc0; once it has run out with no word from acc0 (a device
// still there renews before), its next DISCOVER on acc1 ends acc0's
// binding and is served: the move waits the rest of the client lease
// ispmux gave, not client_lease_max from acc1's first DISCOVER. Before,
// it waited client_lease_max from the claim: refused here, half a client
// lease longer.
func TestDeviceMovedServedOnceItsClientLeaseRanOut(t *testing.T) {
	r, et := boundOnAcc0(t)
	clm := r.p.Limits().ClientLeaseMax
	r.pastT1(clm / 2)
	r.wantHeldOnAcc0(et, "DISCOVER on acc1 halfway through acc0's client lease", r.discoverOnAcc1())
	r.pastT1(clm - 2*time.Second)
	r.wantHeldOnAcc0(et, "DISCOVER on acc1 2 s before acc0's client lease ends", r.discoverOnAcc1())
	r.pastT1(clm + 2*time.Second)
	r.wantMovedToAcc1(et, r.wantOfferOnAcc1("DISCOVER on acc1 once acc0's client lease ran out"))
}

// Every lease ispmux gives the holder on acc0 counts, however it was
// given: a RENEWING or INIT-REBOOT REQUEST answered from the binding
// before the ISP's T1, or a renewal past it relayed and ACKed by alpha.
// From each, the holder's lease runs client_lease_max: a DISCOVER on
// acc1 is refused until then (2 s before its end too), and served once
// it has run out unrenewed. Before, the move waited client_lease_max
// from acc1's first DISCOVER (half a client lease later here).
func TestMoveWaitsForTheHoldersLastClientLease(t *testing.T) {
	ip := netip.MustParseAddr(s1Addr)
	for _, c := range []struct {
		what string
		at   time.Duration // since the DORA
		msg  func(t *testing.T) *dhcpv4.DHCPv4
	}{
		{"RENEWING answered from the binding", 5 * time.Minute, func(t *testing.T) *dhcpv4.DHCPv4 { return renewing(t, s1, s1Addr) }},
		{"INIT-REBOOT answered from the binding", 5 * time.Minute, func(t *testing.T) *dhcpv4.DHCPv4 { return initReboot(t, s1, ip) }},
		{"RENEWING past the ISP's T1, ACKed by alpha", 31 * time.Minute, func(t *testing.T) *dhcpv4.DHCPv4 { return renewing(t, s1, s1Addr) }},
	} {
		t.Run(c.what, func(t *testing.T) {
			r, et := boundOnAcc0(t)
			clm := r.p.Limits().ClientLeaseMax
			r.pastT1(c.at)
			r.fromClient(c.msg(t))
			if got := r.serve(kea(t, time.Hour)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
				t.Fatalf("%s on acc0: %v, want an ACK", c.what, got)
			}
			r.pastT1(c.at + clm/2)
			r.wantHeldOnAcc0(et, "DISCOVER on acc1 halfway through the lease", r.discoverOnAcc1())
			r.pastT1(c.at + clm - 2*time.Second)
			r.wantHeldOnAcc0(et, "DISCOVER on acc1 2 s before the lease ends", r.discoverOnAcc1())
			r.pastT1(c.at + clm + 2*time.Second)
			r.wantMovedToAcc1(et, r.wantOfferOnAcc1("DISCOVER on acc1 once the lease ran out"))
		})
	}
}

// s1's client lease on acc0 has run out, and s1, still there, DISCOVERs
// again (alpha silent, as when its server is down): a holder asking on
// its own circuit is there whatever its lease, so acc1's DISCOVER is
// refused client_lease_max from its first, as it was before client
// leases were counted, not served at once because the last lease ispmux
// gave has run out.
func TestHolderAskingAfterItsLeaseKeepsTheFullWait(t *testing.T) {
	r, et := boundOnAcc0(t)
	clm := r.p.Limits().ClientLeaseMax
	r.pastT1(clm + 30*time.Second)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	if sent := r.toPorts(); len(sent[upPort]) != 1 {
		t.Fatalf("s1's DISCOVER on acc0: sent to alpha %v, want it relayed", sent[upPort])
	}
	r.pastT1(clm + 31*time.Second)
	r.wantHeldOnAcc0(et, "DISCOVER on acc1 just after s1's on acc0", r.discoverOnAcc1())
	r.pastT1(2*clm + 29*time.Second)
	r.wantHeldOnAcc0(et, "DISCOVER on acc1 client_lease_max - 2 s after its first", r.discoverOnAcc1())
	r.pastT1(2*clm + 33*time.Second)
	r.wantMovedToAcc1(et, r.wantOfferOnAcc1("DISCOVER on acc1 client_lease_max after its first"))
}

// A restart forgets the client leases ispmux gave (RAM): the binding on
// acc0 restored, a DISCOVER on acc1 waits client_lease_max from its
// first, as before client leases were counted, never less.
func TestMoveAfterRestartWaitsClientLeaseMax(t *testing.T) {
	r, et := boundOnAcc0(t)
	clm := r.p.Limits().ClientLeaseMax
	r.p = New(r.p.config(), r.store, r.p.reg, et, r.snd, nil)
	if n, err := r.p.Restore(time.Now()); err != nil || n != 1 {
		t.Fatalf("restored %d, %v", n, err)
	}
	r.pastT1(clm / 2)
	r.wantHeldOnAcc0(et, "DISCOVER on acc1 after the restart", r.discoverOnAcc1())
	r.pastT1(clm + 2*time.Second)
	r.wantHeldOnAcc0(et, "DISCOVER on acc1 once the client lease given before the restart ran out", r.discoverOnAcc1())
	r.pastT1(clm*3/2 + 2*time.Second)
	r.wantMovedToAcc1(et, r.wantOfferOnAcc1("DISCOVER on acc1 client_lease_max after its first"))
}

// A device registered for any access, bound at alpha on acc0, is moved to
// beta: its old binding forwards until its next message or
// client_lease_max (make-before-break), and meanwhile refuses another
// circuit's DISCOVER of its MAC (endOtherCircuits). Then ispmux restarts.
// The restore ended the old binding at once (a stale registration): the
// MAC held no binding anywhere, and a device forging it on acc1 was
// served at its first DISCOVER (relayed to beta), then held the service
// against the device, answering ARP there. The old binding is restored
// now, with the move's deadline client_lease_max from the restore (every
// client lease given before has run out by then): the forger is refused,
// and the binding ends at that deadline.
func TestMovedDeviceOldBindingKeptAcrossRestart(t *testing.T) {
	r, _ := newSRig(t)
	cfg := r.p.config()
	cfg.Circuits = append(cfg.Circuits, Circuit{Name: "acc1", Interface: "acc0", Port: accPort, VLAN: 5, MAC: accMAC, Addr: ourSID})
	r.p = New(cfg, r.store, r.p.reg, newEngineTables(), r.snd, nil)
	if got := r.dora(s1, kea(t, time.Hour), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("DORA on acc0: %v", got)
	}
	r.moveTo("beta")
	if n := r.p.RevalidateMACs([]uint64{s1MAC}); n != 1 || r.p.MovesPending() != 1 {
		t.Fatalf("RevalidateMACs = %d, moves pending %d; want the move pending", n, r.p.MovesPending())
	}
	r.p.committing.Wait()
	r.p.notes.wait()
	r.snd.take()

	et := newEngineTables()
	start := time.Now()
	r.p = New(cfg, r.store, r.p.reg, et, r.snd, nil)
	if _, err := r.p.Restore(start); err != nil {
		t.Fatal(err)
	}
	r.p.notes.wait()
	sent := r.discoverOnAcc1()
	if len(sent[betaPort]) != 0 || r.p.Counters()["moved_circuit_refused"] != 1 {
		t.Errorf("a DISCOVER of s1's MAC on acc1 after the restart: relayed to beta %v (counters %v); want it refused while s1's old binding on acc0 lasts",
			sent[betaPort], r.p.Counters())
	}
	r.wantHeldOnAcc0(et, "after the restart", sent)
	if r.p.MovesPending() != 1 {
		t.Errorf("moves pending %d after the restart, want the old binding's deadline", r.p.MovesPending())
	}
	r.p.expire(start.Add(cfg.Limits.ClientLeaseMax - time.Second))
	r.snd.take() // the probes of acc0
	if _, ok := et.boundOn(0, s1MAC); !ok {
		t.Fatal("the old binding ended before client_lease_max from the restore")
	}
	r.p.expire(start.Add(cfg.Limits.ClientLeaseMax + time.Second))
	r.p.notes.wait()
	if _, ok := et.boundOn(0, s1MAC); ok || r.p.MovesPending() != 0 || r.p.Counters()["move_cut"] != 1 {
		t.Errorf("client_lease_max after the restore: still forwarding %v, moves pending %d (counters %v); want the old binding cut",
			ok, r.p.MovesPending(), r.p.Counters())
	}
}

// arpSent takes what the proxy sent and returns the ARP frames decoded,
// with their port; anything else sent fails the test.
func (r *prig) arpSent(what string) []arpOut {
	r.t.Helper()
	var out []arpOut
	for _, s := range r.snd.take() {
		var pkt classifier.Packet
		if pkt.Decode(s.frame) != classifier.ReasonNone || pkt.Kind != classifier.KindARP {
			r.t.Fatalf("%s: sent on port %d a frame that is not ARP: %x", what, s.port, s.frame)
		}
		out = append(out, arpOut{s.port, pkt})
	}
	return out
}

type arpOut struct {
	port uint8
	pkt  classifier.Packet
}

// wantProbe checks that the proxy sent, on its tick at, one ARP probe of
// s1's address on the access port, VLAN vlan: a request (Ethernet unicast
// to s1, target hardware address zero) from our MAC and the circuit's
// gateway address.
func (r *prig) wantProbe(at time.Time, vlan uint16, what string) {
	r.t.Helper()
	r.p.expire(at)
	got := r.arpSent(what)
	if len(got) != 1 {
		r.t.Fatalf("%s: %d ARP frames sent, want one probe (counters %v)", what, len(got), r.p.Counters())
	}
	a := got[0].pkt
	tagged := vlan != 0
	if got[0].port != accPort || a.VLAN&0xfff != vlan || a.Tagged != tagged || a.Dst != s1MAC || a.Src != accMAC ||
		a.ARPOp != 1 || a.SHA != accMAC || a.SPA != ip4(ourSID) || a.THA != 0 || a.TPA != ip4(netip.MustParseAddr(s1Addr)) {
		r.t.Errorf("%s: sent on port %d %+v; want on port %d, VLAN %d (tagged %v), a request to %x from %x: who has %s, tell %s",
			what, got[0].port, a, accPort, vlan, tagged, uint64(s1MAC), uint64(accMAC), s1Addr, ourSID)
	}
}

// wantNoARP checks that the proxy's tick at sends nothing.
func (r *prig) wantNoARP(at time.Time, what string) {
	r.t.Helper()
	r.p.expire(at)
	if got := r.arpSent(what); len(got) != 0 {
		r.t.Errorf("%s: sent %d ARP frames, want none", what, len(got))
	}
}

// arpReplyFrom is s1's ARP reply on VLAN vlan to a probe: s1Addr is at
// s1's MAC, to our MAC and the gateway address.
func (r *prig) arpReplyFrom(vlan uint16) {
	f := make([]byte, 64)
	n := fib.ARPReply(f, s1MAC, ip4(netip.MustParseAddr(s1Addr)), accMAC, ip4(ourSID), vlan, vlan != 0)
	r.p.HandleFrame(accPort, f[:n])
}

// A DISCOVER with s1's MAC on acc1, s1 bound on acc0: the claim starts
// one probe set of s1's circuit, three ARP requests a second apart on
// acc0 (VLAN 0, untagged) to s1's MAC for its address. s1 answers there
// (the second probe): the claim is withdrawn (moved_circuit_probe_answered),
// no more probes are sent, and acc1's DISCOVER is still refused, after
// the probes' time as much as before; s1 keeps its binding. Before, no
// probe was sent.
func TestClaimProbeAnsweredOnTheHoldersCircuit(t *testing.T) {
	r, et := boundOnAcc0(t)
	t0 := time.Now()
	r.wantHeldOnAcc0(et, "DISCOVER on acc1", r.discoverOnAcc1())
	r.wantProbe(t0, 0, "first tick after the claim")
	r.wantNoARP(t0.Add(500*time.Millisecond), "half a second later")
	r.wantProbe(t0.Add(time.Second), 0, "a second later")
	r.arpReplyFrom(0)
	if n := r.p.Counters()["moved_circuit_probe_answered"]; n != 1 {
		t.Errorf("moved_circuit_probe_answered %d, want 1 (counters %v)", n, r.p.Counters())
	}
	r.wantNoARP(t0.Add(2*time.Second), "after the answer")
	r.wantNoARP(t0.Add(3*time.Second), "when the probes would have ended")
	r.wantNoARP(t0.Add(4*time.Second), "a second after")
	if n := r.p.Counters()["moved_circuit_probe_silent"]; n != 0 {
		t.Errorf("moved_circuit_probe_silent %d, want 0", n)
	}
	r.pastT1(5 * time.Second)
	r.wantHeldOnAcc0(et, "DISCOVER on acc1 after the answered probes", r.discoverOnAcc1())
	r.pastT1(r.p.Limits().ClientLeaseMax / 2)
	r.wantHeldOnAcc0(et, "DISCOVER on acc1 half a client lease later", r.discoverOnAcc1())
}

// s1 moved from acc0 to acc1 (unplugged, plugged in on the other
// circuit): its DISCOVER on acc1 is refused and starts the probes of
// acc0, which nobody answers there (a reply with s1's MAC on acc1, where
// s1 now is or a forger might be, is not an answer). Once the three
// probes and a second have passed, the claim may take the binding over
// (moved_circuit_probe_silent): s1's next DISCOVER on acc1, seconds after
// its first, is served and s1 bound there, its acc0 binding revoked.
// Bound on acc1 (VLAN 5), its MAC asking on acc0 again probes acc1,
// tagged. Before, acc1's DISCOVER was refused until acc0's client lease
// (10 min) had run out.
func TestClaimProbeSilentServesTheMoveInSeconds(t *testing.T) {
	r, et := boundOnAcc0(t)
	t0 := time.Now()
	r.wantHeldOnAcc0(et, "DISCOVER on acc1", r.discoverOnAcc1())
	for i := range 3 {
		r.wantProbe(t0.Add(time.Duration(i)*time.Second), 0, fmt.Sprintf("probe %d", i+1))
		r.arpReplyFrom(5)
	}
	r.pastT1(2500 * time.Millisecond)
	r.wantHeldOnAcc0(et, "DISCOVER on acc1 before the probes ended", r.discoverOnAcc1())
	r.wantNoARP(t0.Add(3*time.Second), "a second after the last probe")
	if n := r.p.Counters()["moved_circuit_probe_silent"]; n != 1 {
		t.Errorf("moved_circuit_probe_silent %d, want 1 (counters %v)", n, r.p.Counters())
	}
	if n := r.p.Counters()["moved_circuit_probe_answered"]; n != 0 {
		t.Errorf("moved_circuit_probe_answered %d, want 0: the replies came from acc1", n)
	}
	r.pastT1(4 * time.Second)
	r.wantMovedToAcc1(et, r.wantOfferOnAcc1("DISCOVER on acc1 4 s after its first"))
	r.snd.take()
	r.pastT1(5 * time.Second)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	if sent := r.toPorts(); len(sent[upPort]) != 0 || len(sent[accPort]) != 0 {
		t.Fatalf("DISCOVER on acc0 with s1 bound on acc1: %v relayed, %v answered; want it refused", sent[upPort], sent[accPort])
	}
	r.wantProbe(t0.Add(5*time.Second), 5, "probe of acc1")
}

// Probe sets are budgeted per probed circuit: probeSetBurst at once, then
// probeSetRate a second; a circuit's budget spends none of another's. A
// claim over the budget sends nothing (moved_circuit_probe_skipped) and
// leaves the client-lease rule to decide: acc1's DISCOVER is still
// refused after the probes' time; its next message, the budget refilled,
// starts the claim's probe set.
func TestClaimProbesBudgetedPerCircuit(t *testing.T) {
	r, et := boundOnAcc0(t)
	t0 := time.Now()
	acc0 := circuitKey{accPort, 0}
	for i := range probeSetBurst {
		if !r.p.probes.start(subKey{acc0, uint64(0x026600000000 + i)}, [4]byte{100, 64, 1, byte(i)}, t0) {
			t.Fatalf("probe set %d of acc0 refused, within the burst of %d", i+1, probeSetBurst)
		}
	}
	if r.p.probes.start(subKey{acc0, 0x0266000000ff}, [4]byte{100, 64, 1, 255}, t0) {
		t.Errorf("probe set %d of acc0 started at once, over the burst", probeSetBurst+1)
	}
	if !r.p.probes.start(subKey{circuitKey{accPort, 5}, 0x0266000000ff}, [4]byte{100, 64, 1, 255}, t0) {
		t.Error("acc1's first probe set refused: acc0's spent budget is not acc1's")
	}
	r.wantHeldOnAcc0(et, "DISCOVER on acc1, acc0's probe budget spent", r.discoverOnAcc1())
	if n := r.p.Counters()["moved_circuit_probe_skipped"]; n != 1 {
		t.Errorf("moved_circuit_probe_skipped %d, want 1", n)
	}
	// The other sets' bindings are not held: they stop, unsent.
	r.wantNoARP(t0, "first tick, the claim unprobed")
	r.wantNoARP(t0.Add(3*time.Second), "the probes' time later")
	r.pastT1(3 * time.Second)
	r.wantHeldOnAcc0(et, "DISCOVER on acc1 3 s later", r.discoverOnAcc1())
	r.wantProbe(t0.Add(3*time.Second), 0, "the budget refilled, acc1's next DISCOVER")
}

// s1's answer to the probes of acc0 comes late, after the tick that
// found the probes unanswered (moved_circuit_probe_silent): s1 is there
// all the same, on its own circuit, for its own address, which no device
// on acc1 can answer for. The answer withdraws the claim, as an answer in
// time does (moved_circuit_probe_answered), and acc1's next DISCOVER is
// refused. Before, an answer with no probe set in flight was no answer
// (arp_not_probe_answer): acc1's DISCOVER took s1's live binding over.
func TestClaimProbeAnsweredLate(t *testing.T) {
	r, et := boundOnAcc0(t)
	t0 := time.Now()
	r.wantHeldOnAcc0(et, "DISCOVER on acc1", r.discoverOnAcc1())
	for i := range 3 {
		r.wantProbe(t0.Add(time.Duration(i)*time.Second), 0, fmt.Sprintf("probe %d", i+1))
	}
	r.wantNoARP(t0.Add(3*time.Second), "a second after the last probe")
	if n := r.p.Counters()["moved_circuit_probe_silent"]; n != 1 {
		t.Fatalf("moved_circuit_probe_silent %d, want 1 (counters %v)", n, r.p.Counters())
	}
	r.arpReplyFrom(0)
	if n := r.p.Counters()["moved_circuit_probe_answered"]; n != 1 {
		t.Errorf("moved_circuit_probe_answered %d, want 1 (counters %v)", n, r.p.Counters())
	}
	r.pastT1(4 * time.Second)
	r.wantHeldOnAcc0(et, "DISCOVER on acc1 after s1's late answer", r.discoverOnAcc1())
}

// The probes of acc0 go unanswered (s1's link down for a few seconds, a
// CPE busy rebooting its radio), and the device on acc1 with s1's MAC
// does not ask again within the two minutes that silence lets it take
// the binding over (probeVerdict). s1, back, has no reason to speak DHCP
// before its renewal, up to half a client lease away. acc1's DISCOVER
// three minutes later is refused and probes acc0 again, where s1 answers:
// the claim is withdrawn. Before, the silence let acc1 take s1's live
// binding over whenever it asked until s1 next spoke DHCP (hours, with a
// long client_lease_max).
func TestClaimProbeSilenceGoesStale(t *testing.T) {
	r, et := boundOnAcc0(t)
	t0 := time.Now()
	r.wantHeldOnAcc0(et, "DISCOVER on acc1", r.discoverOnAcc1())
	for i := range 3 {
		r.wantProbe(t0.Add(time.Duration(i)*time.Second), 0, fmt.Sprintf("probe %d", i+1))
	}
	r.wantNoARP(t0.Add(3*time.Second), "a second after the last probe")
	if n := r.p.Counters()["moved_circuit_probe_silent"]; n != 1 {
		t.Fatalf("moved_circuit_probe_silent %d, want 1 (counters %v)", n, r.p.Counters())
	}
	r.pastT1(3 * time.Minute)
	r.wantHeldOnAcc0(et, "DISCOVER on acc1 three minutes after the silence", r.discoverOnAcc1())
	r.wantProbe(t0.Add(3*time.Minute), 0, "acc1's DISCOVER three minutes after the silence")
	r.arpReplyFrom(0)
	if n := r.p.Counters()["moved_circuit_probe_answered"]; n != 1 {
		t.Errorf("moved_circuit_probe_answered %d, want 1 (counters %v)", n, r.p.Counters())
	}
	r.wantNoARP(t0.Add(3*time.Minute+time.Second), "after the answer")
	r.pastT1(3*time.Minute + 5*time.Second)
	r.wantHeldOnAcc0(et, "DISCOVER on acc1 after s1's answer", r.discoverOnAcc1())
}

// A device that moved (nobody answers on acc0) and asks again on acc1
// within probeVerdict of the silence (its DHCP client backed off to 64 s)
// is served, at the last moment too.
func TestClaimProbeSilenceServesWithinProbeVerdict(t *testing.T) {
	r, et := boundOnAcc0(t)
	t0 := time.Now()
	r.wantHeldOnAcc0(et, "DISCOVER on acc1", r.discoverOnAcc1())
	for i := range 4 {
		r.p.expire(t0.Add(time.Duration(i) * time.Second))
	}
	r.arpSent("the probes")
	r.pastT1(3*time.Second + probeVerdict - time.Second)
	r.wantMovedToAcc1(et, r.wantOfferOnAcc1("DISCOVER on acc1 a second before probeVerdict after the silence"))
}

// TestClaimProbesBudgetedOverall: claims on many circuits at once (one
// claiming circuit forging the MACs of devices on a thousand others) start
// at most probeAllBurst probe sets, then probeAllRate a second, however
// many circuits each budget allows: ispmux's ARP output stays bounded.
func TestClaimProbesBudgetedOverall(t *testing.T) {
	var pt probeTable
	pt.init()
	now := time.Unix(1e9, 0)
	started := 0
	for i := range 1000 {
		sk := subKey{circuit: circuitKey{port: uint8(i % 4), vlan: uint16(1 + i/4)}, mac: uint64(i)}
		if pt.start(sk, [4]byte{100, 64, byte(i >> 8), byte(i)}, now) {
			started++
		}
	}
	if started != probeAllBurst {
		t.Errorf("1000 claims on 1000 circuits at once started %d probe sets, want %d", started, probeAllBurst)
	}
	later := 0
	for i := range 1000 {
		sk := subKey{circuit: circuitKey{port: uint8(i % 4), vlan: uint16(1 + i/4)}, mac: uint64(5000 + i)}
		if pt.start(sk, [4]byte{100, 65, byte(i >> 8), byte(i)}, now.Add(time.Second)) {
			later++
		}
	}
	if later > probeAllRate+1 {
		t.Errorf("a second later, %d more probe sets started, want at most %d", later, probeAllRate)
	}
}
