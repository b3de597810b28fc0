package dhcpproxy

import (
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
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
