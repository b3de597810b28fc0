package dhcpproxy

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/registry"
)

// A refused end puts its subscriber's transactions back within the
// table's bound (MaxPending: 16 in the rig): while the end was being
// committed, other clients' messages took the slots it freed, and the
// transactions that find no room are dropped and counted
// (transactions_dropped_pending_full). Put back regardless, the table
// went past MaxPending, 18 of 16.
func TestRefusedEndPutBackWithinBound(t *testing.T) {
	for _, c := range []struct {
		meanwhile, back int // new transactions while parked; parked put back
	}{{0, 2}, {1, 1}, {2, 0}} {
		r := newPRig(t)
		x := &r.p.tx
		sk := subKey{circuit: circuitKey{port: accPort}, mac: 0x020000000101}
		other := func(i int) {
			o := subKey{circuit: sk.circuit, mac: 0x030000000000 | uint64(i)}
			x.put(pendKey{[4]byte{1}, o.mac, 0}, &txn{sub: o, isp: r.p.isps["alpha"], msgType: dhcpv4.MessageTypeRequest})
		}
		x.mu.Lock()
		for i := range 2 {
			x.put(pendKey{[4]byte{byte(i)}, sk.mac, 0}, &txn{sub: sk, isp: r.p.isps["alpha"], msgType: dhcpv4.MessageTypeRequest})
		}
		for i := range 14 {
			other(i)
		}
		x.mu.Unlock()

		m := r.p.endBeforeCommit(sk, true)
		x.mu.Lock()
		for i := range c.meanwhile {
			other(100 + i)
		}
		x.mu.Unlock()
		r.p.endRefused(sk, m)

		x.mu.Lock()
		n, back := len(x.pending), len(x.keysOf(sk))
		x.mu.Unlock()
		if want := 14 + c.meanwhile + c.back; n != want || back != c.back {
			t.Errorf("%d begun while parked: %d pending, %d of the subscriber's put back; want %d, %d", c.meanwhile, n, back, want, c.back)
		}
		if got := r.p.counter("transactions_dropped_pending_full"); got != uint64(2-c.back) {
			t.Errorf("%d begun while parked: transactions_dropped_pending_full %d, want %d", c.meanwhile, got, 2-c.back)
		}
	}
}

// A retransmission while a refused end was being committed began a
// transaction of its own under the parked one's key: once the end is
// refused, it takes what begin would have kept of the parked one
// (carryParked). Before, the parked one was forgotten with what it knew: a
// DISCOVER lost the REQUEST it took over (whose late ACK or NAK it then
// took as its own answer), a retransmitted DISCOVER the server whose
// OFFER the client had been sent (another server's OFFER was taken).
func TestRefusedEndRetransmissionKeepsParkedState(t *testing.T) {
	alpha, beta := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	isp := &ISP{Name: "alpha", Servers: []netip.Addr{alpha, beta}}
	sk := subKey{mac: 0x020000000101}
	pk := pendKey{[4]byte{1}, sk.mac, 0}
	hw := net.HardwareAddr{2, 0, 0, 0, 1, 1}
	now := time.Now()
	msg := func(mt dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
		m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(mt)}, mods...)...)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	asked := netip.MustParseAddr("100.64.0.5")
	request := msg(dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(asked.AsSlice())))
	discover := msg(dhcpv4.MessageTypeDiscover)
	begin := func(x *txns, m *dhcpv4.DHCPv4) *txn {
		tx, _, err := x.begin(pk, sk, &Circuit{}, isp, registry.Entry{}, nil, m.ToBytes(), m, netip.Addr{}, 0, now, time.Second, 16, 16)
		if err != nil {
			t.Fatal(err)
		}
		return tx
	}
	// parkThen begins first, parks it (an end), begins then (the
	// retransmission), and ends the park: refused (restore) or not.
	parkThen := func(first, then *dhcpv4.DHCPv4, offerFrom netip.Addr, restore bool) (*txns, *txn) {
		var x txns
		x.init()
		tx := begin(&x, first)
		if offerFrom.IsValid() {
			x.offer(tx, isp, offerFrom, offerFrom, now, time.Second)
		}
		d := x.dropSub(sk)
		n := begin(&x, then)
		x.unpark(sk, d, restore, 16, 16, time.Time{}, 0)
		if x.get(pk) != n {
			t.Fatal("the retransmission's transaction is not the one pending")
		}
		return &x, n
	}

	x, n := parkThen(request, discover, netip.Addr{}, true)
	if got, ok := x.overtakenAnswer(n); !ok || got != asked {
		t.Errorf("a DISCOVER after a parked REQUEST, the end refused: the REQUEST taken over %v (asked for %v); want it, asking for %v", ok, got, asked)
	}
	x, n = parkThen(request, discover, netip.Addr{}, false)
	if _, ok := x.overtakenAnswer(n); ok {
		t.Error("the end committed: the DISCOVER took over the REQUEST it ended")
	}

	x, n = parkThen(discover, discover, alpha, true)
	if got := x.chosen(n); got != alpha {
		t.Errorf("a DISCOVER retransmitted while parked, the end refused: the server chosen %v, want %v (its OFFER was sent)", got, alpha)
	}
	if x.offer(n, isp, beta, beta, now, time.Second) == offerTaken {
		t.Error("the end refused: another server's OFFER to the retransmitted DISCOVER was taken")
	}
	x, n = parkThen(discover, discover, alpha, false)
	if got := x.chosen(n); got.IsValid() {
		t.Errorf("the end committed: the server chosen %v, want none (a new selection)", got)
	}
}

// Two subscribers' ends in flight at once, the same MAC and xid on two
// circuits (the device moved): the second one's dropSub parks its
// transaction under the key the first one's parked. Each end's unpark
// touches its own subscriber's only. Before, the first end, refused, put
// the second subscriber's transaction back while its end was being
// committed (its REQUEST's late ACK could bind it again after its
// RELEASE), or, committed, forgot it where the second end was refused.
func TestUnparkOtherSubscribersParked(t *testing.T) {
	isp := &ISP{Name: "alpha", Servers: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}
	a := subKey{circuit: circuitKey{port: 1}, mac: 0x020000000101}
	b := subKey{circuit: circuitKey{port: 2}, mac: a.mac}
	pk := pendKey{[4]byte{1}, a.mac, 0}
	for _, aRefused := range []bool{true, false} {
		var x txns
		x.init()
		x.mu.Lock()
		x.put(pk, &txn{sub: a, isp: isp, msgType: dhcpv4.MessageTypeRequest})
		x.mu.Unlock()
		da := x.dropSub(a)
		x.mu.Lock()
		tb := &txn{sub: b, isp: isp, msgType: dhcpv4.MessageTypeRequest}
		x.put(pk, tb)
		x.mu.Unlock()
		db := x.dropSub(b)
		x.unpark(a, da, aRefused, 16, 16, time.Time{}, 0)
		if got := x.get(pk); got == tb {
			t.Errorf("a's end refused %v: b's transaction pending again while b's end is being committed", aRefused)
		}
		x.unpark(b, db, true, 16, 16, time.Time{}, 0)
		if got := x.get(pk); got != tb {
			t.Errorf("a's end refused %v, then b's: b's transaction not put back (pending: %v)", aRefused, got)
		}
		x.mu.Lock()
		np := len(x.parked)
		x.mu.Unlock()
		if np != 0 {
			t.Errorf("a's end refused %v: %d left parked", aRefused, np)
		}
	}
}

// An answer takes its own subscriber's exchanges under its key, not
// another's (the same MAC and xid on two circuits: the device moved).
// Before, take forgot whatever was parked or pending under the key: a
// NAK to b's REQUEST forgot a's exchange, parked while a's end was being
// committed, so a's end, refused, did not put it back; and a NAK to a's
// REQUEST, its transaction replaced by b's meanwhile, took b's.
func TestTakeLeavesOthersExchange(t *testing.T) {
	isp := &ISP{Name: "alpha", Servers: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}
	a := subKey{circuit: circuitKey{port: 1}, mac: 0x020000000101}
	b := subKey{circuit: circuitKey{port: 2}, mac: a.mac}
	pk := pendKey{[4]byte{1}, a.mac, 0}
	put := func(x *txns, sk subKey) *txn {
		tx := &txn{sub: sk, isp: isp, msgType: dhcpv4.MessageTypeRequest}
		x.mu.Lock()
		x.put(pk, tx)
		x.mu.Unlock()
		return tx
	}

	var x txns
	x.init()
	ta := put(&x, a)
	da := x.dropSub(a)
	tb := put(&x, b)
	if got := x.take(pk, tb); got != tb {
		t.Fatalf("b's NAK took %p, want b's transaction %p", got, tb)
	}
	x.unpark(a, da, true, 16, 16, time.Time{}, 0)
	if got := x.get(pk); got != ta {
		t.Errorf("b's NAK taken while a's exchange was parked, a's end refused: pending %p, want a's transaction %p put back", got, ta)
	}

	x.init()
	ta = put(&x, a)
	tb = put(&x, b) // a's answer read ta (get) before b's message replaced it
	if got := x.take(pk, ta); got != nil || x.get(pk) != tb {
		t.Errorf("a's NAK taken after b's transaction replaced a's: took %p, pending %p; want none, b's %p", got, x.get(pk), tb)
	}

	// a's own exchange: the NAK to its retransmission, begun while the
	// first copy's transaction was parked, answers that too (the same
	// xid), which a's end, refused, does not put back.
	x.init()
	put(&x, a)
	da = x.dropSub(a)
	x.take(pk, put(&x, a))
	x.unpark(a, da, true, 16, 16, time.Time{}, 0)
	if got := x.get(pk); got != nil {
		t.Errorf("a's retransmission NAKed while its first copy was parked, a's end refused: pending %p, want none", got)
	}
}

// A DISCOVER that took over a REQUEST, parked past both their deadlines
// and put back (the end refused): neither times out before the ISP's time
// from the put-back (resume moves the DISCOVER's deadline and the
// REQUEST's due), then each once, noted as put back.
func TestPutBackOvertakenDue(t *testing.T) {
	isp := &ISP{Name: "alpha", Servers: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")}}
	sk := subKey{mac: 0x020000000101}
	pk := pendKey{[4]byte{1}, sk.mac, 0}
	now := time.Unix(1e9, 0)
	var x txns
	x.init()
	for _, mt := range []dhcpv4.MessageType{dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeDiscover} {
		m, err := dhcpv4.New(dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 1, 1}), dhcpv4.WithMessageType(mt))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := x.begin(pk, sk, &Circuit{}, isp, registry.Entry{}, nil, m.ToBytes(), m, netip.Addr{}, 0, now, time.Second, 16, 16); err != nil {
			t.Fatal(err)
		}
		now = now.Add(100 * time.Millisecond) // the DISCOVER retransmitted once (resent)
	}
	d := x.dropSub(sk)
	back := now.Add(2 * time.Second)
	x.unpark(sk, d, true, 16, 16, back, time.Second)
	if tos := x.expire(back.Add(500 * time.Millisecond)); len(tos) != 0 {
		t.Fatalf("500 ms after the put-back (the ISP's time 1 s): %d timeouts, want none", len(tos))
	}
	tos := x.expire(back.Add(1050 * time.Millisecond))
	if len(tos) != 2 || !tos[0].putBack || !tos[1].putBack {
		t.Fatalf("past the ISP's time from the put-back: %d timeouts (put back %v); want the REQUEST's and the DISCOVER's, noted put back", len(tos), putBacks(tos))
	}
	if tos := x.expire(back.Add(3 * time.Second)); len(tos) != 0 || x.get(pk) != nil {
		t.Errorf("later: %d more timeouts, pending %v; want none, nothing (the DISCOVER's copies before the park wait with it)", len(tos), x.get(pk))
	}
}

// A copy the client sends once its exchange is put back is heard in full:
// the exchange's timeout is the put-back's (noted), the copy's, later, is
// not.
func TestPutBackThenRetransmitted(t *testing.T) {
	isp := &ISP{Name: "alpha", Servers: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}
	sk := subKey{mac: 0x020000000101}
	pk := pendKey{[4]byte{1}, sk.mac, 0}
	m, err := dhcpv4.New(dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 1, 1}), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest))
	if err != nil {
		t.Fatal(err)
	}
	var x txns
	x.init()
	begin := func(now time.Time) {
		if _, _, err := x.begin(pk, sk, &Circuit{}, isp, registry.Entry{}, nil, m.ToBytes(), m, netip.Addr{}, 0, now, time.Second, 16, 16); err != nil {
			t.Fatal(err)
		}
	}
	first := time.Unix(1e9, 0)
	begin(first)
	d := x.dropSub(sk)
	back := first.Add(2 * time.Second)
	x.unpark(sk, d, true, 16, 16, back, time.Second)
	begin(back.Add(500 * time.Millisecond)) // the client's retransmission
	tos := x.expire(back.Add(1100 * time.Millisecond))
	if len(tos) != 1 || !tos[0].putBack {
		t.Fatalf("the ISP's time past from the put-back: %d timeouts (%v), want one noted put back", len(tos), putBacks(tos))
	}
	tos = x.expire(back.Add(time.Minute))
	if len(tos) != 1 || tos[0].putBack {
		t.Errorf("the retransmission after the put-back unanswered: %d timeouts (%v), want one not noted put back (it was relayed after)", len(tos), putBacks(tos))
	}
}

// putBacks lists each timeout's putBack.
func putBacks(tos []timedOut) []bool {
	var b []bool
	for _, to := range tos {
		b = append(b, to.putBack)
	}
	return b
}

// A retransmission begun under a parked transaction's key, the end
// refused, keeps the exchange's history as begin keeps a
// retransmission's (carryHistory): its first relay (the ISP's answer
// time), a refused answer, a DISCOVER's NAK, the notes its timeout names.
// Before, they were lost: the DISCOVER whose OFFER ispmux refused, or
// which a server NAKed, timed out as the ISP's silence ("no answer from
// the ISP"), and the answer time counted from the retransmission.
func TestRefusedEndRetransmissionKeepsHistory(t *testing.T) {
	alpha, beta := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	isp := &ISP{Name: "alpha", Servers: []netip.Addr{alpha, beta}}
	sk := subKey{mac: 0x020000000101}
	pk := pendKey{[4]byte{1}, sk.mac, 0}
	m, err := dhcpv4.New(dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 1, 1}), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover))
	if err != nil {
		t.Fatal(err)
	}
	first := time.Unix(1e9, 0)
	for _, c := range []struct {
		name string
		note func(x *txns, tx *txn)
		want func(tos []timedOut) bool // its end
	}{
		// Refused (rejected, reported when it came): no timeout.
		{"an OFFER refused", func(x *txns, tx *txn) { x.refuse(tx) }, func(tos []timedOut) bool { return len(tos) == 0 }},
		{"a NAK", func(x *txns, tx *txn) { x.nak(tx, beta) }, func(tos []timedOut) bool { return len(tos) == 1 && tos[0].nakBy == beta }},
		{"an unlisted server's answer", func(x *txns, tx *txn) { x.noteUnlisted(0, pk.xid, pk.mac, netip.MustParseAddr("192.0.2.77")) },
			func(tos []timedOut) bool { return len(tos) == 1 && tos[0].unlisted.IsValid() }},
	} {
		var x txns
		x.init()
		begin := func(now time.Time) *txn {
			tx, _, err := x.begin(pk, sk, &Circuit{}, isp, registry.Entry{}, nil, m.ToBytes(), m, netip.Addr{}, 0, now, time.Second, 16, 16)
			if err != nil {
				t.Fatal(err)
			}
			return tx
		}
		c.note(&x, begin(first))
		d := x.dropSub(sk)
		n := begin(first.Add(2 * time.Second)) // the client's retransmission, the end being committed
		x.unpark(sk, d, true, 16, 16, first.Add(2500*time.Millisecond), time.Second)
		if got := x.relayedAt(n); !got.Equal(first) {
			t.Errorf("%s, then the DISCOVER retransmitted while parked: first relayed %v after the first copy, want 0 (the ISP's answer time)", c.name, got.Sub(first))
		}
		if tos := x.expire(first.Add(3100 * time.Millisecond)); !c.want(tos) {
			var to timedOut
			if len(tos) > 0 {
				to = tos[0]
			}
			t.Errorf("%s, then the DISCOVER retransmitted while parked: %d timeouts (the first's refused %v, NAK by %v, unlisted %v); want it noted",
				c.name, len(tos), to.refused, to.nakBy, to.unlisted)
		}
	}
}

// A transaction begun while its subscriber's was parked (an end being
// committed) that moved on meanwhile to another message (txn.retyped) is
// no retransmission of the parked one's, even back at its type: the end
// refused, it keeps nothing of that exchange, as begin would have kept
// nothing had the parked one stayed pending. Before, carryParked compared
// the types only: a REQUEST after a DISCOVER after a refused REQUEST took
// that refusal (its silence never reported as a timeout) and its first
// relay; a DISCOVER after a REQUEST after a DISCOVER took the server
// whose OFFER the first had taken (another server's OFFER refused).
func TestRefusedEndRetypedKeepsNothing(t *testing.T) {
	alpha, beta := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	isp := &ISP{Name: "alpha", Servers: []netip.Addr{alpha, beta}}
	sk := subKey{mac: 0x020000000101}
	pk := pendKey{[4]byte{1}, sk.mac, 0}
	msg := func(mt dhcpv4.MessageType) *dhcpv4.DHCPv4 {
		m, err := dhcpv4.New(dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 1, 1}), dhcpv4.WithMessageType(mt))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	discover, request := msg(dhcpv4.MessageTypeDiscover), msg(dhcpv4.MessageTypeRequest)
	var x txns
	begin := func(m *dhcpv4.DHCPv4, now time.Time) *txn {
		tx, _, err := x.begin(pk, sk, &Circuit{}, isp, registry.Entry{}, nil, m.ToBytes(), m, netip.Addr{}, 0, now, time.Second, 16, 16)
		if err != nil {
			t.Fatal(err)
		}
		return tx
	}
	first := time.Unix(1e9, 0)

	x.init()
	x.refuse(begin(request, first))
	d := x.dropSub(sk)
	begin(discover, first.Add(2*time.Second))
	n := begin(request, first.Add(2100*time.Millisecond))
	x.unpark(sk, d, true, 16, 16, first.Add(2500*time.Millisecond), time.Second)
	if got := x.relayedAt(n); !got.Equal(first.Add(2100 * time.Millisecond)) {
		t.Errorf("a REQUEST after a DISCOVER after the parked REQUEST: first relayed %v after the parked one, want 2.1s (its own)", got.Sub(first))
	}
	if tos := x.expire(first.Add(3200 * time.Millisecond)); len(tos) != 1 || tos[0].mt != dhcpv4.MessageTypeRequest || tos[0].refused {
		t.Errorf("a REQUEST after a DISCOVER after the parked REQUEST, refused, unanswered: %d timeouts (refused %v); want one of the REQUEST, not refused", len(tos), len(tos) > 0 && tos[0].refused)
	}

	x.init()
	x.offer(begin(discover, first), isp, alpha, alpha, first, time.Second)
	d = x.dropSub(sk)
	begin(discover, first.Add(2*time.Second))
	begin(request, first.Add(2100*time.Millisecond))
	n = begin(discover, first.Add(2200*time.Millisecond))
	x.unpark(sk, d, true, 16, 16, first.Add(2500*time.Millisecond), time.Second)
	if got := x.chosen(n); got.IsValid() {
		t.Errorf("a DISCOVER after a REQUEST after the parked DISCOVER: the server chosen %v, want none (a new selection)", got)
	}
	if x.offer(n, isp, beta, beta, first.Add(2600*time.Millisecond), time.Second) != offerTaken {
		t.Error("a DISCOVER after a REQUEST after the parked DISCOVER: another server's OFFER refused")
	}
}

// A REQUEST put back (the end refused), then taken over by the client's
// DISCOVER under its xid before the ISP's time from the put-back ran out:
// its timeout, counted from the put-back (resume), says so. Before, the
// note was the DISCOVER's (txn.putBack), which begin clears on the change
// of message: the REQUEST's timeout read as the ISP's silence for the
// whole timeout, where an answer while it was parked went unheard.
func TestPutBackRequestOvertakenNoted(t *testing.T) {
	isp := &ISP{Name: "alpha", Servers: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")}}
	sk := subKey{mac: 0x020000000101}
	pk := pendKey{[4]byte{1}, sk.mac, 0}
	var x txns
	x.init()
	begin := func(mt dhcpv4.MessageType, now time.Time) {
		m, err := dhcpv4.New(dhcpv4.WithHwAddr(net.HardwareAddr{2, 0, 0, 0, 1, 1}), dhcpv4.WithMessageType(mt))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := x.begin(pk, sk, &Circuit{}, isp, registry.Entry{}, nil, m.ToBytes(), m, netip.Addr{}, 0, now, time.Second, 16, 16); err != nil {
			t.Fatal(err)
		}
	}
	first := time.Unix(1e9, 0)
	begin(dhcpv4.MessageTypeRequest, first)
	d := x.dropSub(sk)
	back := first.Add(2 * time.Second)
	x.unpark(sk, d, true, 16, 16, back, time.Second)
	begin(dhcpv4.MessageTypeDiscover, back.Add(500*time.Millisecond))
	tos := x.expire(back.Add(1100 * time.Millisecond))
	if len(tos) != 1 || tos[0].mt != dhcpv4.MessageTypeRequest || !tos[0].putBack {
		t.Errorf("the put-back REQUEST, taken over by a DISCOVER, past the ISP's time from the put-back: %d timeouts (put back %v); want the REQUEST's, noted put back", len(tos), putBacks(tos))
	}
	if tos := x.expire(back.Add(1600 * time.Millisecond)); len(tos) != 1 || tos[0].mt != dhcpv4.MessageTypeDiscover || tos[0].putBack {
		t.Errorf("the DISCOVER, relayed after the put-back, unanswered: %d timeouts (put back %v); want the DISCOVER's, not noted put back", len(tos), putBacks(tos))
	}
}
