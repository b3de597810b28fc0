package dhcpproxy

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/subscribers"
)

// renewalInFlight binds s1 at alpha (a one-minute lease), has its client
// renew past T1 and returns the renewal as relayed to alpha, unanswered.
func (r *prig) renewalInFlight() *dhcpv4.DHCPv4 {
	r.t.Helper()
	r.dora("02:00:00:00:01:01", kea(r.t, time.Minute), nil)
	r.snd.take()
	r.pastT1(31 * time.Second)
	renew, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.IPv4(100, 64, 0, 100)))
	r.fromClient(renew)
	toISP := r.snd.take()
	if len(toISP) != 1 || toISP[0].port != upPort {
		r.t.Fatalf("renewal: %d frames sent, want 1 to alpha", len(toISP))
	}
	return dhcpOf(toISP[0].frame)
}

// ackFromAlpha has alpha's server ACK req and returns what the subscriber
// was sent.
func (r *prig) ackFromAlpha(req *dhcpv4.DHCPv4) []*dhcpv4.DHCPv4 {
	r.t.Helper()
	ack := kea(r.t, time.Minute)(req)
	r.p.HandleFrame(upPort, fib.UDPFrame(upMAC, gwMAC, 0, ispSID, giaddr, 67, 67, ack.ToBytes()))
	r.p.committing.Wait()
	var out []*dhcpv4.DHCPv4
	for _, s := range r.snd.take() {
		if s.port == accPort {
			out = append(out, dhcpOf(s.frame))
		}
	}
	return out
}

// wantRenewedAfterRefusedEnd checks that the renewal's ACK, relayed
// before an end the store refused, bound s1 and reached it.
func (r *prig) wantRenewedAfterRefusedEnd(toClient []*dhcpv4.DHCPv4) {
	r.t.Helper()
	if len(toClient) != 1 || toClient[0].MessageType() != dhcpv4.MessageTypeAck {
		r.t.Errorf("the renewal's ACK after the refused end: the subscriber was sent %d messages, want its ACK (counters %v)", len(toClient), r.p.Counters())
	}
	if c := r.p.Counters(); c["ack_after_end"] != 0 || c["no_transaction"] != 0 {
		r.t.Errorf("the renewal's ACK after the refused end was dropped: counters %v", c)
	}
	l, ok := r.p.Lease(accPort, 0, 0x020000000101)
	if !ok || !r.tab.isBound(0x020000000101) {
		r.t.Fatalf("after the renewal: leased %v, forwarding %v; want both", ok, r.tab.isBound(0x020000000101))
	}
	if time.Until(l.Expires) < 50*time.Second {
		r.t.Errorf("the renewal's ACK was not bound: the lease ends in %v", time.Until(l.Expires))
	}
}

// The subscriber's RELEASE, which the store refuses to end (the binding
// stays, nothing is sent to the ISP), while the ACK of its renewal is on
// its way: the ISP never heard of the RELEASE and leases the address on,
// and the ACK binds it and reaches the client. The refused end moved the
// subscriber's generation on and dropped its transactions all the same,
// and the ACK was lost (ack_after_end, or no transaction).
func TestRefusedReleaseKeepsRenewalInFlight(t *testing.T) {
	r := newPRig(t)
	req := r.renewalInFlight()
	r.p.store = endRefuser{r.store}
	r.fromClient(releaseOf100(t))
	if c := r.p.Counters(); c["store_error"] != 1 {
		t.Fatalf("the RELEASE's end was not refused: counters %v", c)
	}
	r.p.store = r.store
	r.wantRenewedAfterRefusedEnd(r.ackFromAlpha(req))
}

// The same of a batch of expiries the store refuses (expireEach, of up
// to revokeBatch leases): the renewal's ACK of a lease the tick found
// run out, relayed before the tick, binds it (the leases still stand).
func TestRefusedExpiryBatchKeepsRenewalInFlight(t *testing.T) {
	r := newPRig(t)
	req := r.renewalInFlight()
	r.p.store = endsRefuser{r.store}
	r.p.expireLeases(time.Now().Add(2 * time.Minute)) // the leases only: no transaction times out
	if _, ok := r.p.Lease(accPort, 0, 0x020000000101); !ok {
		t.Fatal("the refused expiry ended the lease")
	}
	r.p.store = r.store
	r.wantRenewedAfterRefusedEnd(r.ackFromAlpha(req))
}

// A committed end still drops the ACK of a transaction relayed before
// it, through the ISP's reply path as well (TestACKOfEarlierGenerationBindsNothing
// hands the transaction to bindAndAck): after the RELEASE, the renewal's
// ACK binds nothing and reaches nobody.
func TestCommittedReleaseDropsRenewalInFlight(t *testing.T) {
	r := newPRig(t)
	req := r.renewalInFlight()
	r.fromClient(releaseOf100(t))
	r.snd.take()
	if got := r.ackFromAlpha(req); len(got) != 0 {
		t.Errorf("after the RELEASE, the renewal's ACK sent the subscriber %d messages", len(got))
	}
	if _, ok := r.p.Lease(accPort, 0, 0x020000000101); ok || r.tab.isBound(0x020000000101) {
		t.Error("the renewal's ACK bound the subscriber after its RELEASE")
	}
}

// A refused end, then one committed (the RELEASE refused, then the lease's
// expiry): the ACK of the renewal relayed before both binds nothing
// (ack_after_end), the refused end's generation notwithstanding.
func TestRefusedThenCommittedEndDropsRenewalInFlight(t *testing.T) {
	r := newPRig(t)
	req := r.renewalInFlight()
	r.p.store = endRefuser{r.store}
	r.fromClient(releaseOf100(t))
	r.p.store = r.store
	r.expireThenAckDropped(t, req)
}

// The transactions an end takes (dropSub) are parked until its commit is
// known: put back when it is refused, unless answered meanwhile (an ACK
// handler holding one before the end) or replaced (a retransmission began
// another under its key); forgotten when it is committed.
func TestParkedTransactions(t *testing.T) {
	var x txns
	x.init()
	isp := &ISP{Name: "alpha"}
	sk := subKey{mac: 0x020000000101}
	pks := [3]pendKey{{[4]byte{1}, sk.mac, 0}, {[4]byte{2}, sk.mac, 0}, {[4]byte{3}, sk.mac, 0}}
	var ts [3]*txn
	x.mu.Lock()
	for i, pk := range pks {
		ts[i] = &txn{sub: sk, isp: isp, msgType: dhcpv4.MessageTypeRequest}
		x.put(pk, ts[i])
	}
	x.remember(sk, offer{isp: isp})
	x.mu.Unlock()

	d := x.dropSub(sk)
	if len(d.keys) != 3 || x.get(pks[0]) != nil || len(x.parked) != 3 {
		t.Fatalf("dropSub took %d, parked %d; want 3 taken from pending", len(d.keys), len(x.parked))
	}
	x.takeAck(pks[0], ts[0], netip.Addr{}, netip.Addr{}, time.Now()) // answered meanwhile
	again := &txn{sub: sk, isp: isp}
	x.mu.Lock()
	x.put(pks[1], again) // a retransmission's
	x.mu.Unlock()
	x.unpark(sk, d, true, 16, 16, time.Time{}, 0)
	if got := x.get(pks[0]); got != nil {
		t.Error("refused: the transaction answered while parked was put back")
	}
	if got := x.get(pks[1]); got != again {
		t.Error("refused: the parked transaction replaced the retransmission's")
	}
	if got := x.get(pks[2]); got != ts[2] {
		t.Error("refused: the parked transaction was not put back")
	}
	if _, ok := x.offered[sk]; !ok || len(x.parked) != 0 || x.perISP[0] != 2 {
		t.Errorf("refused: offer remembered %v, %d parked, %d pending at the ISP; want true, 0, 2", ok, len(x.parked), x.perISP[0])
	}

	d = x.dropSub(sk)
	x.unpark(sk, d, false, 0, 0, time.Time{}, 0)
	if x.get(pks[1]) != nil || x.get(pks[2]) != nil || len(x.parked) != 0 || x.perISP[0] != 0 {
		t.Errorf("committed: %d parked, %d pending at the ISP; want none", len(x.parked), x.perISP[0])
	}
	if _, ok := x.offered[sk]; ok {
		t.Error("committed: the offer is still remembered")
	}
}

// A committed end after the subscriber's generation was pruned (its
// entry unmoved for genKeep, dropped while a renewal was in flight:
// reading it does not move it): the renewal's ACK binds nothing. Counted
// per subscriber, the generations started again at 0 after the drop: the
// expiry's (1) was below the renewal's (1 before the drop, from the
// earlier RELEASE), and the ACK bound after the committed expiry.
func TestPrunedGenerationThenCommittedEndDropsRenewalInFlight(t *testing.T) {
	r := newPRig(t)
	r.dora("02:00:00:00:01:01", kea(t, time.Minute), nil)
	r.fromClient(releaseOf100(t)) // a first end: its generation moves
	r.snd.take()
	req := r.renewalInFlight()
	r.p.leases.pruneGens(time.Now().Add(genKeep + 2*time.Minute))
	r.expireThenAckDropped(t, req)
}

// expireThenAckDropped: the subscriber's lease expires (committed), and
// then the ACK of renewal req, relayed before, binds nothing: nothing
// sent, not bound, ack_after_end 1.
func (r *prig) expireThenAckDropped(t *testing.T, req *dhcpv4.DHCPv4) {
	t.Helper()
	r.p.expireLeases(time.Now().Add(2 * time.Minute))
	if _, ok := r.p.Lease(accPort, 0, 0x020000000101); ok {
		t.Fatal("the lease did not expire")
	}
	if got := r.ackFromAlpha(req); len(got) != 0 {
		t.Errorf("after the expiry, the renewal's ACK sent the subscriber %d messages", len(got))
	}
	if r.tab.isBound(0x020000000101) {
		t.Error("the renewal's ACK bound the subscriber after its lease's expiry")
	}
	if c := r.p.Counters(); c["ack_after_end"] != 1 {
		t.Errorf("counters %v, want ack_after_end 1", c)
	}
}

// A renewal parked by an end the store refused, the park outlasting the
// ISP's time (Timeout, 300 ms in the rig): put back, it has the ISP's
// time again from the put-back, where its deadline ran from its relay and
// had passed, and its timeout was reported as soon as it was back ("no
// answer from the ISP", of an exchange whose answer, had it come while it
// was parked, went unheard). Its timeout, once due, says it was put back.
func TestPutBackTimeoutFromPutBack(t *testing.T) {
	r := newPRig(t)
	r.renewalInFlight() // relayed at time.Now()+31s (pastT1)
	r.pastT1(31*time.Second + time.Second)
	r.p.store = endRefuser{r.store}
	r.fromClient(releaseOf100(t))
	r.p.store = r.store
	if c := r.p.Counters(); c["store_error"] != 1 {
		t.Fatalf("the RELEASE's end was not refused: counters %v", c)
	}
	back := r.p.now()
	r.p.expireTxns(back.Add(100 * time.Millisecond))
	if c := r.p.Counters(); c["timeout"] != 0 {
		t.Fatalf("100 ms after the put-back (the park 1 s, the ISP's time 300 ms): %d timeouts, want none", c["timeout"])
	}
	r.p.expireTxns(back.Add(400 * time.Millisecond))
	r.p.notes.wait()
	if c := r.p.Counters(); c["timeout"] != 1 {
		t.Fatalf("400 ms after the put-back: %d timeouts, want 1", c["timeout"])
	}
	evs, _ := r.store.Events(0, 100)
	for _, e := range evs {
		if e.Kind == subscribers.EventTimeout {
			// Any answer, not an answer: whether one came while it
			// was parked is not known.
			if !strings.Contains(e.Reason, "put-back") || !strings.Contains(e.Reason, "any answer in that time went unheard") {
				t.Errorf("the put-back renewal's timeout event %q does not say it was put back, and that any answer meanwhile went unheard", e.Reason)
			}
			return
		}
	}
	t.Error("no timeout event")
}
