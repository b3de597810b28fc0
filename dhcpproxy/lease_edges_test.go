package dhcpproxy

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/engine"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// restoreBoundN stores n registered bindings ending at end and restores
// them (all unexpired at now).
func restoreBoundN(t *testing.T, r *prig, n int, now, end time.Time) {
	t.Helper()
	for i := range n {
		hw := [6]byte{2, 0, 0, 1, byte(i >> 8), byte(i)}
		if err := r.store.PutRegistration(subscribers.Registration{MAC: hw, CustomerID: "c-s1", ISP: "alpha", Source: "api"}); err != nil {
			t.Fatal(err)
		}
		b := subscribers.Binding{MAC: hw, Access: "acc0", ISP: "alpha",
			IP: netip.AddrFrom4([4]byte{100, 65, byte(i >> 8), byte(i)}), Expires: end, Updated: now.Add(-time.Hour)}
		if err := r.store.CommitBinding(b); err != nil {
			t.Fatal(err)
		}
	}
	r.p.setLimits(func(l *Limits) { l.MaxBindingsPerCircuit = n })
	got, err := r.p.Restore(now)
	if err != nil || got != n {
		t.Fatalf("restored %d, %v; want %d", got, err, n)
	}
}

// TestExpiryEndsSideBySide: many leases that end together (bound together:
// an ISP outage, a start-up wave) were ended by the 250 ms tick one durable
// transaction after the other, on Run's goroutine. The tick groups its
// ends now (side by side, 64 at a time, through the store's group commit), so the last lease leaves the
// forwarding tables about as soon as the first, and Run's other timers
// (transactions' timeouts, intents, onboarding expiry) are not held up for
// n fsyncs. Counted in store transactions, not timed.
func TestExpiryEndsSideBySide(t *testing.T) {
	const n = 400
	now := time.Now()

	// Restore ending n expired bindings.
	r1 := newPRig(t)
	for i := range n {
		hw := [6]byte{2, 0, 0, 1, byte(i >> 8), byte(i)}
		b := subscribers.Binding{MAC: hw, Access: "acc0", ISP: "alpha",
			IP: netip.AddrFrom4([4]byte{100, 65, byte(i >> 8), byte(i)}), Expires: now.Add(-time.Minute), Updated: now.Add(-time.Hour)}
		if err := r1.store.CommitBinding(b); err != nil {
			t.Fatal(err)
		}
	}
	tx0 := r1.store.CommitStats().Transactions
	t0 := time.Now()
	if _, err := r1.p.Restore(now); err != nil {
		t.Fatal(err)
	}
	r1.p.lapsing.Wait()
	restoreTook, restoreTx := time.Since(t0), r1.store.CommitStats().Transactions-tx0

	// The tick ending n bindings that ran out together.
	r := newPRig(t)
	restoreBoundN(t, r, n, now, now.Add(time.Minute))
	tx0 = r.store.CommitStats().Transactions
	t0 = time.Now()
	r.p.expire(now.Add(2 * time.Minute))
	tickTook, tickTx := time.Since(t0), r.store.CommitStats().Transactions-tx0
	if r.p.Leases() != 0 {
		t.Fatalf("%d leases left", r.p.Leases())
	}
	t.Logf("restore: %d ends in %v, %d transactions; tick: %d ends in %v, %d transactions", n, restoreTook, restoreTx, n, tickTook, tickTx)
	if tickTx > n/8 {
		t.Errorf("the expiry tick ended %d leases in %d transactions (%v): one fsync after the other on Run's goroutine", n, tickTx, tickTook)
	}
	// The restore's expired bindings (never installed) end in batches
	// of Store.EndBindings: one transaction here. One each, even side by
	// side, cost ~95 µs a binding of a restart's outage (a trial: 9.5 s
	// at 100k).
	if restoreTx > 2 {
		t.Errorf("the restore ended %d expired bindings in %d transactions (%v), want one batch", n, restoreTx, restoreTook)
	}
}

// TestInfiniteLease: an ISP lease of 0xffffffff s (infinite, RFC
// 2131 §3.3) binds, gives the client ClientLeaseMax, survives a restart
// and is not expired by the tick.
func TestInfiniteLease(t *testing.T) {
	r := newPRig(t)
	got := r.dora("02:00:00:00:01:01", kea(t, 0xffffffff*time.Second), nil)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("got %v, want an ACK", got)
	}
	if lt := got[0].IPAddressLeaseTime(0); lt != DefaultClientLeaseMax {
		t.Errorf("client lease %v, want %v", lt, DefaultClientLeaseMax)
	}
	b, err := r.store.Binding("acc0", 0, [6]byte(mac("02:00:00:00:01:01")))
	if err != nil || b.Expires.Before(time.Now().Add(100*365*24*time.Hour)) {
		t.Fatalf("binding %+v, %v", b, err)
	}
	r.p.expire(time.Now().Add(50 * 365 * 24 * time.Hour))
	if !r.tab.isBound(0x020000000101) {
		t.Fatal("infinite lease expired")
	}
	// A renewal is answered locally.
	req, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.IPv4(100, 64, 0, 100)))
	r.fromClient(req)
	got = r.serve(func(*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return nil })
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck || got[0].IPAddressLeaseTime(0) != DefaultClientLeaseMax {
		t.Fatalf("renewal: got %v", got)
	}
	// A restart keeps it.
	p2 := New(r.p.config(), r.store, r.p.reg, &fakeTables{bound: map[uint64]binding.Binding{}, store: r.store}, r.snd, nil)
	if n, err := p2.Restore(time.Now().Add(24 * time.Hour)); err != nil || n != 1 {
		t.Fatalf("restored %d, %v", n, err)
	}
}

// TestZeroLease: an ISP whose OFFER and ACK carry option 51 = 0.
// ARCHITECTURE.md ("Client leases") promises options 51/58/59 in every
// OFFER and ACK ispmux delivers, and RFC 2131 Table 3 makes 51 a MUST in
// an OFFER: ispmux delivered the OFFER with no lease time at all (the
// ISP's 51 stripped, none written), then dropped the ACK with only a
// counter (no NAK: the client REQUESTed again and again; no event). Such
// an OFFER is dropped now, and such an ACK NAKed, both with a rejected
// event.
func TestZeroLease(t *testing.T) {
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	got := r.serve(kea(t, 0))
	for _, m := range got {
		if m.MessageType() == dhcpv4.MessageTypeOffer && !m.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
			t.Errorf("OFFER delivered without option 51")
		}
	}
	// The client REQUESTs what it was offered (as it would have from a
	// usable OFFER).
	req, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(100, 64, 0, 100))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice()))))
	r.fromClient(req)
	got = r.serve(kea(t, 0))
	r.p.notes.wait()
	evs, _ := r.store.Events(0, 100)
	if len(got) == 0 && len(evs) == 0 {
		t.Errorf("ACK with lease time 0: the subscriber got no answer and no event says why (counters %v)", r.p.Counters())
	}
}

// TestRestoreMadeStaticKeepsStatic: the configuration made a DHCP
// subscriber static while ispmux was down (same access circuit, a fixed
// address). At start the appliance installs the static bindings first
// (ctl.Bind of every static, then SetStatic, then RestoreLoaded); the
// restore revokes the stored DHCP binding ("subscriber is now static"),
// and its end must not unbind the circuit's MAC entry, which is the
// static binding by then (a review's check: it holds).
func TestRestoreMadeStaticKeepsStatic(t *testing.T) {
	st, err := subscribers.Open(t.TempDir()+"/s.db", subscribers.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	es, err := engine.NewState([]engine.PortConfig{
		{Name: "acc0", MAC: accMAC, AccessVLANs: []uint16{0}, AccessAddrs: map[uint16]uint32{0: 0x64400001}},
		{Name: "up", MAC: upMAC, Uplinks: map[uint16]uint8{0: 0}},
	}, 1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctl := engine.NewControl(es, &fakeSender{}, nil)
	cfg := Config{
		Limits:   Limits{Timeout: 300 * time.Millisecond, MaxPending: 16, MACRate: 100, MACBurst: 100, CircuitRate: 1000, CircuitBurst: 1000, MaxBindingsPerCircuit: 10},
		Circuits: []Circuit{{Name: "acc0", Interface: "acc0", Port: accPort, MAC: accMAC, Addr: ourSID}},
		ISPs: []ISP{{Index: 0, Name: "alpha", Port: upPort, MAC: upMAC, Addr: giaddr,
			Servers: []netip.Addr{ispSID}, CircuitID: "{interface}:{vlan}"}},
	}
	const m = 0x020000000101
	hw := [6]byte(binding.MACBytes(m))
	if err := st.PutRegistration(subscribers.Registration{MAC: hw, CustomerID: "c-s1", ISP: "alpha", Source: "config"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := st.CommitBinding(subscribers.Binding{MAC: hw, Access: "acc0", ISP: "alpha", IP: netip.MustParseAddr("100.64.0.100"),
		Expires: now.Add(time.Hour), Updated: now.Add(-time.Minute), LeaseTime: 2 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	// The appliance's start-up order.
	p := New(cfg, st, storeRegistry{st}, ctl, &fakeSender{}, nil)
	ld := p.LoadBindings(now)
	static := engine.Binding{Port: accPort, VLAN: 0, MAC: m, ISP: 0, IP: netip.MustParseAddr("100.64.9.9"), Static: true}
	if err := ctl.Bind(static); err != nil {
		t.Fatal(err)
	}
	p.SetStatic([]uint64{m})
	if _, err := p.RestoreLoaded(ld); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Binding("acc0", 0, hw); err == nil {
		t.Error("the DHCP binding of a subscriber made static was not ended")
	}
	if b, ok := ctl.Binding(accPort, 0, m); !ok || b != static {
		t.Errorf("after the restore the static subscriber's binding is %+v, %v; want %+v", b, ok, static)
	}
	if h, ok := ctl.Holder(0, static.IP); !ok || h.MAC != m {
		t.Errorf("the static address %v is not routed to the subscriber (%+v, %v)", static.IP, h, ok)
	}
}

// TestRevocationsSideBySide: a bulk tenant change (an import suspending
// thousands of customers) revokes their bindings side by side, through the
// store's group commit, where it revoked them one durable transaction after
// the other (a trial: ~310 a second). Counted in store transactions, not
// timed.
func TestRevocationsSideBySide(t *testing.T) {
	const n = 400
	now := time.Now()
	r := newPRig(t)
	restoreBoundN(t, r, n, now, now.Add(time.Hour))
	macs := make([]uint64, n)
	for i := range n {
		hw := [6]byte{2, 0, 0, 1, byte(i >> 8), byte(i)}
		if err := r.store.PutRegistration(subscribers.Registration{MAC: hw, CustomerID: "c-s1", ISP: "alpha", Blocked: true, Source: "api"}); err != nil {
			t.Fatal(err)
		}
		macs[i] = binding.MAC48(hw)
	}
	tx0 := r.store.CommitStats().Transactions
	// Every MAC listed twice (a reload lists a MAC whose entry changed
	// twice): each binding is revoked once (a review found two RELEASEs
	// and two revoked events each).
	if got := r.p.RevalidateMACs(append(macs, macs...)); got != n {
		t.Fatalf("revalidated %d, want %d", got, n)
	}
	if c := r.p.Counters(); c["binding_revoked"] != n {
		t.Errorf("binding_revoked %d, want %d", c["binding_revoked"], n)
	}
	if evs := r.eventsOf(subscribers.EventRevoked); len(evs) != n {
		t.Errorf("%d revoked events, want %d", len(evs), n)
	}
	tx := r.store.CommitStats().Transactions - tx0
	if r.p.Leases() != 0 {
		t.Fatalf("%d leases left", r.p.Leases())
	}
	if tx > n/8 {
		t.Errorf("%d revocations took %d store transactions: one after the other", n, tx)
	}
}

// TestAckAfterLapseIsNewBinding: an ACK for a subscriber whose lease ran
// out before it, the expiry tick not having ended it yet (ispmux frozen
// past the lease: a crash trial's SIGSTOP), ends the lapsed binding with
// its expired event and is a new binding (bound), as when the tick ran
// first; it was "renewed", and the ISP's history showed a lease going on
// where there was none.
func TestAckAfterLapseIsNewBinding(t *testing.T) {
	r := newPRig(t)
	if got := r.dora("02:00:00:00:01:01", kea(t, time.Second), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("first DORA: %v", got)
	}
	time.Sleep(1100 * time.Millisecond) // past the lease; no tick runs here
	if got := r.dora("02:00:00:00:01:01", kea(t, time.Minute), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("DORA after the lease ran out: %v", got)
	}
	r.p.notes.wait()
	want := []subscribers.EventKind{subscribers.EventBound, subscribers.EventExpired, subscribers.EventBound}
	if kinds := r.eventKinds(); !slices.Equal(kinds, want) {
		t.Errorf("events %v, want %v", kinds, want)
	}
	if !r.tab.isBound(0x020000000101) {
		t.Error("not bound after the new ACK")
	}
}

// The renewed event's reason reads right for an infinite lease too, and
// says the lease runs lt from the renewal, not that its end moved by lt.
func TestRenewedWhy(t *testing.T) {
	for lt, want := range map[time.Duration]string{
		time.Hour:                "lease renewed for 1h0m0s",
		0xffffffff * time.Second: "lease renewed (infinite)",
	} {
		if got := renewedWhy(lt); got != want {
			t.Errorf("renewedWhy(%v) = %q, want %q", lt, got, want)
		}
	}
}
