package dhcpproxy

import (
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

// TestOfferAfterMoveNotDelivered: the old ISP's OFFER to a DISCOVER
// relayed before the device was moved is not delivered (as its ACK would
// not be bound: ack_registration_changed), and its end is no timeout of
// that ISP. Delivered, it had the client ask the new ISP for the old one's
// address, unanswered (a switching trial: 22 s without service, and a
// timeout event blaming the new ISP).
func TestOfferAfterMoveNotDelivered(t *testing.T) {
	r, _ := newSRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	r.moveTo("beta")
	if got := r.serve(kea(t, time.Hour)); len(got) != 0 {
		t.Fatalf("the subscriber got %v after its move, want nothing", got)
	}
	if n := r.p.Counters()["offer_registration_changed"]; n != 1 {
		t.Errorf("offer_registration_changed = %d, want 1", n)
	}
	for _, e := range r.eventsAfterTimeout() {
		if e.Kind == subscribers.EventTimeout {
			t.Errorf("timeout event %+v: alpha answered", e)
		}
	}
}

// TestMoveToSuspendedCustomer: a device moved to another ISP's suspended
// customer is a move all the same (make-before-break: its old ISP serves
// it until its next message), and what becomes of it at the new ISP since
// (its registration deleted there) is not the old ISP's to read: the old
// binding's end says it moved. Before, alpha's active customer's binding
// was cut at once with "customer suspended", and later "registration
// withdrawn" (a switching trial).
func TestMoveToSuspendedCustomer(t *testing.T) {
	r, _ := newSRig(t)
	reg := r.useRegistry(s1MAC, false)
	if got := r.dora(s1, keaT1(t, time.Hour, 30*time.Minute), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("got %v", got)
	}
	r.p.committing.Wait()
	r.snd.take()
	reg.Put(s1MAC, registry.Entry{ISP: "beta", CustomerID: "b-9", Source: "api"}, true)
	if n := r.p.RevalidateMACs([]uint64{s1MAC}); n != 1 {
		t.Fatalf("RevalidateMACs = %d, want 1", n)
	}
	if !r.tab.isBound(s1MAC) || r.p.MovesPending() != 1 {
		t.Fatal("moved to a suspended customer: the old binding was cut at once")
	}
	reg.Delete(s1MAC)
	r.p.RevalidateMACs([]uint64{s1MAC})
	r.p.committing.Wait()
	r.p.notes.wait()
	if r.tab.isBound(s1MAC) {
		t.Fatal("still bound after its registration was deleted")
	}
	evs, err := r.store.Events(0, 100)
	if err != nil {
		t.Fatal(err)
	}
	revoked := 0
	for _, e := range evs {
		if e.Kind == subscribers.EventRevoked {
			revoked++
			if e.ISP != "alpha" || e.Reason != "subscriber moved to another ISP" {
				t.Errorf("revoked event %+v, want alpha's, saying it moved", e)
			}
		}
	}
	if revoked != 1 {
		t.Errorf("%d revoked events, want 1", revoked)
	}
}

// TestLoweredClientLeaseMaxKeepsLiveClientLeases: client_lease_max
// lowered by a reload (10m → 1m) leaves the client leases given under the
// old one as they are: a device moved after the reload keeps its old
// binding while its client lease may run (a review: it was cut a minute
// after the move, 8 minutes before its client would ask).
func TestLoweredClientLeaseMaxKeepsLiveClientLeases(t *testing.T) {
	r, _ := boundAtAlpha(t) // a client lease of 10m
	r.p.setLimits(func(l *Limits) { l.ClientLeaseMax = time.Minute })
	if got := r.p.LeaseMax(time.Now()); got != 10*time.Minute {
		t.Errorf("LeaseMax after the reload = %v, want the old 10m (the portal's move hint follows it)", got)
	}
	r.moveTo("beta")
	r.p.RevalidateMACs([]uint64{s1MAC})
	r.p.expire(time.Now().Add(2 * time.Minute))
	if !r.tab.isBound(s1MAC) {
		t.Fatal("old binding cut 2m after the move; its client's 10m lease is live")
	}
	r.p.expire(time.Now().Add(11 * time.Minute))
	if r.tab.isBound(s1MAC) {
		t.Error("old binding still held past the old client_lease_max")
	}
}
