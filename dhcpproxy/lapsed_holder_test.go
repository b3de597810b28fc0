package dhcpproxy

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// sharedAddr is the address poolKea gives every client.
var sharedAddr = netip.MustParseAddr("100.64.0.200")

// poolKea answers every client (byMACKea) with sharedAddr for lease: a
// server that gives a lease that ran out to the next client.
func poolKea(lease time.Duration) func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	return func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := byMACKea(m)
		if rep != nil {
			rep.YourIPAddr = net.IP(sharedAddr.AsSlice())
			rep.UpdateOption(dhcpv4.OptIPAddressLeaseTime(lease))
		}
		return rep
	}
}

// A lease that ran out, the expiry tick not having ended it (a mass
// expiry ends 4096 a tick), holds its address in the tables: the ISP's
// ACK of that address to another subscriber ends it (its expired event,
// store and tables) and binds the asker, where it was refused as
// bind_conflict. A holder whose lease has not run out keeps its address:
// the asker is refused as before (NAKed, bind_conflict, a rejected
// event).
func TestAckTakesLapsedHoldersAddress(t *testing.T) {
	for _, lapsed := range []bool{true, false} {
		t.Run(map[bool]string{true: "lapsed", false: "live"}[lapsed], func(t *testing.T) {
			r := newPRig(t)
			holderLease := time.Minute
			if lapsed {
				holderLease = time.Second
			}
			if got := r.dora(s1, poolKea(holderLease), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
				t.Fatalf("s1's DORA: %v", got)
			}
			if lapsed {
				time.Sleep(1100 * time.Millisecond) // past s1's lease; no tick runs here
			}
			got := r.dora(s2, poolKea(time.Minute), nil)
			r.p.notes.wait()
			s1Bound, s2Bound := r.tab.isBound(binding.MAC48([6]byte(mac(s1)))), r.tab.isBound(binding.MAC48([6]byte(mac(s2))))
			_, s1Err := r.store.Binding("acc0", 0, [6]byte(mac(s1)))
			b2, s2Err := r.store.Binding("acc0", 0, [6]byte(mac(s2)))
			evs, err := r.store.Events(0, 0)
			if err != nil {
				t.Fatal(err)
			}
			var kinds []subscribers.EventKind
			for _, e := range evs {
				kinds = append(kinds, e.Kind)
			}
			c := r.p.Counters()
			if !lapsed {
				if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
					t.Errorf("s2 got %v, want a NAK: s1's live lease holds the address", got)
				}
				if !s1Bound || s1Err != nil || s2Bound || s2Err == nil {
					t.Errorf("bound s1 %v (stored: %v), s2 %v (stored: %v); want s1 alone", s1Bound, s1Err, s2Bound, s2Err)
				}
				want := []subscribers.EventKind{subscribers.EventBound, subscribers.EventRejected}
				if !slices.Equal(kinds, want) {
					t.Errorf("events %v, want %v", kinds, want)
				}
				if c["bind_conflict"] != 1 || c["bind_conflict_lapsed"] != 0 || c["expired"] != 0 {
					t.Errorf("counters %v, want one bind_conflict, nothing ended", c)
				}
				return
			}
			if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
				t.Fatalf("s2 got %v, want an ACK of s1's lapsed address (counters %v)", got, c)
			}
			if s1Bound || s1Err == nil {
				t.Errorf("s1's lapsed binding not ended: in the tables %v, stored %v", s1Bound, s1Err == nil)
			}
			if !s2Bound || s2Err != nil || b2.IP != sharedAddr {
				t.Errorf("s2 bound %v, stored %+v %v; want %v", s2Bound, b2, s2Err, sharedAddr)
			}
			want := []subscribers.EventKind{subscribers.EventBound, subscribers.EventExpired, subscribers.EventBound}
			if !slices.Equal(kinds, want) {
				t.Fatalf("events %v, want %v", kinds, want)
			}
			if evs[1].MAC != [6]byte(mac(s1)) || evs[1].IP != sharedAddr || evs[2].MAC != [6]byte(mac(s2)) {
				t.Errorf("events %+v, want s1's expiry of %v, then s2's binding", evs, sharedAddr)
			}
			if c["bind_conflict"] != 0 || c["bind_conflict_lapsed"] != 1 || c["expired"] != 1 || c["ack"] != 2 {
				t.Errorf("counters %v, want no bind_conflict, one bind_conflict_lapsed, one expired, two ack", c)
			}
			// The tick ends nothing more: s1's lease is gone, not ended twice.
			r.p.expire(time.Now())
			r.p.notes.wait()
			if n := len(r.eventKinds()); n != 3 || r.p.Counters()["expired"] != 1 {
				t.Errorf("after a tick: %d events, %d expired; want 3 and 1", n, r.p.Counters()["expired"])
			}
			if !r.tab.isBound(binding.MAC48([6]byte(mac(s2)))) {
				t.Error("s2 unbound by the tick")
			}
		})
	}
}

// The store refuses the lapsed holder's end: the holder keeps its
// binding, the asker is refused (NAKed, bind_conflict, a store_error),
// and its rejected event says the holder's lease ran out and the store
// refused to end it, not that the ISP's server gave a held address to a
// second client (it did not: the address was free at the ISP). Fails
// without the unended holder passed to the next pass.
func TestAckLapsedHolderStoreRefused(t *testing.T) {
	r := newPRig(t)
	if got := r.dora(s1, poolKea(time.Second), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("s1's DORA: %v", got)
	}
	time.Sleep(1100 * time.Millisecond) // past s1's lease; no tick runs here
	r.p.store = endRefuser{r.p.store}
	got := r.dora(s2, poolKea(time.Minute), nil)
	r.p.notes.wait()
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("s2 got %v, want a NAK: s1's binding could not be ended", got)
	}
	if !r.tab.isBound(binding.MAC48([6]byte(mac(s1)))) || r.tab.isBound(binding.MAC48([6]byte(mac(s2)))) {
		t.Error("want s1 bound alone")
	}
	e, ok := r.lastRejected(s2)
	if !ok || !strings.Contains(e.Reason, s1) || !strings.Contains(e.Reason, "ran out") || !strings.Contains(e.Reason, "store refused") ||
		strings.Contains(e.Reason, "lost its leases") {
		t.Errorf("s2's rejected event %+v, want one naming s1's lease run out and the store's refusal", e)
	}
	if c := r.p.Counters(); c["bind_conflict"] != 1 || c["bind_conflict_lapsed"] != 0 || c["expired"] != 0 || c["store_error"] == 0 {
		t.Errorf("counters %v, want one bind_conflict, a store_error, nothing ended", c)
	}
}

// The lapsed holder is checked again under its own stripe: found lapsed
// (lapsedHolder), then bound again before its end (its own ACK, a new
// version of its binding, live), it is not ended (expiry_superseded),
// and an ACK of its address to another is refused.
func TestLapsedHolderRenewedMeanwhile(t *testing.T) {
	r := newPRig(t)
	if got := r.dora(s1, poolKea(time.Second), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("s1's DORA: %v", got)
	}
	time.Sleep(1100 * time.Millisecond) // past s1's lease; no tick runs here
	holder, ok := r.tab.Holder(0, sharedAddr)
	if !ok {
		t.Fatal("s1 holds nothing")
	}
	h, ok := r.p.lapsedHolder(holder)
	if !ok {
		t.Fatal("s1's lease not found lapsed")
	}
	if got := r.dora(s1, poolKea(time.Minute), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("s1's second DORA: %v", got)
	}
	before := r.p.Counters()["expiry_superseded"]
	if r.p.endLapsedHolder(h, "bind_conflict_lapsed") || r.p.Counters()["expiry_superseded"] != before+1 {
		t.Errorf("endLapsedHolder of s1's old lease: counters %v", r.p.Counters())
	}
	if _, err := r.store.Binding("acc0", 0, [6]byte(mac(s1))); err != nil || !r.tab.isBound(binding.MAC48([6]byte(mac(s1)))) {
		t.Fatalf("s1's live binding ended: %v", err)
	}
	if got := r.dora(s2, poolKea(time.Minute), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("s2 got %v, want a NAK: s1's live lease holds the address", got)
	}
	if c := r.p.Counters(); c["bind_conflict"] != 1 || c["bind_conflict_lapsed"] != 0 {
		t.Errorf("counters %v, want one bind_conflict, no bind_conflict_lapsed", c)
	}
}

// A lapsed holder the expiry tick had found due (its scan) and that an
// ACK of its address to another subscriber ended before the tick's end
// reached it: the tick ends nothing and counts nothing more. It was
// counted as expiry_superseded, whose doc (docs/OPERATIONS.md) says a
// lease renewed meanwhile; the ACK's end counted it as expired already.
func TestExpiryAfterLapsedHolderEnded(t *testing.T) {
	r := newPRig(t)
	if got := r.dora(s1, poolKea(time.Second), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("s1's DORA: %v", got)
	}
	time.Sleep(1100 * time.Millisecond)       // past s1's lease; no tick runs here
	due := r.p.leases.expired(time.Now(), 16) // the tick's scan
	if len(due) != 1 {
		t.Fatalf("due %v, want s1's lease", due)
	}
	if got := r.dora(s2, poolKea(time.Minute), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("s2 got %v, want an ACK of s1's lapsed address", got)
	}
	if n := r.p.expireEach(due); n != 0 {
		t.Errorf("the tick ended %d, want none", n)
	}
	r.p.notes.wait()
	if c := r.p.Counters(); c["expired"] != 1 || c["bind_conflict_lapsed"] != 1 || c["expiry_superseded"] != 0 {
		t.Errorf("counters %v, want one expired, one bind_conflict_lapsed, no expiry_superseded", c)
	}
	if n := len(r.eventsOf(subscribers.EventExpired)); n != 1 {
		t.Errorf("%d expired events, want 1", n)
	}
}
