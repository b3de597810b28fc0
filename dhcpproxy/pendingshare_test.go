package dhcpproxy

import (
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/subscribers"
)

// silentDiscovers sends n DISCOVERs of s2 (distinct xids), which alpha
// leaves unanswered: they wait in the pending table.
func silentDiscovers(t *testing.T, r *prig, n int) {
	t.Helper()
	for i := range n {
		r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:02")), dhcpv4.WithTransactionID(dhcpv4.TransactionID{0, 0, 1, byte(i)})))
	}
	r.snd.take()
}

// One silent ISP holds at most three quarters of max_pending: another
// ISP's subscriber's DISCOVER is relayed while the first's wait (a review
// found beta's subscribers refused, pending_full, while alpha was silent).
func TestPendingShareLeavesOtherISPs(t *testing.T) {
	r, _ := newSRig(t) // MaxPending 16, two ISPs: alpha's share 12
	silentDiscovers(t, r, 16)
	if n := r.p.Counters()["pending_full"]; n != 4 {
		t.Errorf("pending_full %d after 16 of alpha's, want 4 (its share is 12 of 16)", n)
	}
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac("02:00:00:00:02:01")), CustomerID: "c-b1", ISP: "beta", Source: "api"}); err != nil {
		t.Fatal(err)
	}
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:02:01"))))
	if sent := r.toPorts(); len(sent[betaPort]) != 1 {
		t.Errorf("beta's subscriber's DISCOVER not relayed while alpha is silent: %v (counters %v)", sent, r.p.Counters())
	}
	// The count by ISP follows the table: the timeouts free alpha's.
	r.p.expire(time.Now().Add(2 * time.Second))
	r.p.tx.mu.Lock()
	n, alpha := len(r.p.tx.pending), r.p.tx.perISP[0]
	r.p.tx.mu.Unlock()
	if n != 0 || alpha != 0 {
		t.Errorf("after the timeouts: %d pending, alpha's count %d", n, alpha)
	}
	if got, want := oneShare(16, 1), 16; got != want {
		t.Errorf("one ISP's share of 16: %d, want %d", got, want)
	}
}

// A renewal past the ISP's T1 that finds its ISP's share of the pending
// table full is answered from the binding (within the ISP's lease), not
// dropped for the client's lease to run out.
func TestRenewalAnsweredWhenPendingFull(t *testing.T) {
	r, _ := newSRig(t)
	r.dora(s1, keaT1(t, time.Hour, 30*time.Minute), nil)
	r.p.committing.Wait()
	r.snd.take()
	silentDiscovers(t, r, 16)
	r.pastT1(40 * time.Minute)
	req := renewing(t, s1, s1Addr)
	r.fromClient(req)
	sent := r.toPorts()
	if len(sent[upPort]) != 0 || len(sent[accPort]) != 1 {
		t.Fatalf("sent %v, want the answer from the binding only", sent)
	}
	if ack := sent[accPort][0]; ack.MessageType() != dhcpv4.MessageTypeAck || ack.TransactionID != req.TransactionID {
		t.Errorf("answer %v", ack)
	}
	if c := r.p.Counters(); c["renewal_local_pending_full"] != 1 {
		t.Errorf("counters %v", c)
	}
}

// A device's DISCOVER seen on another circuit under the same xid while
// its first waits replaces that transaction: the ISP's count of pending
// transactions does not grow with it (a review: it leaked a slot each
// time, for good, until every DISCOVER was refused).
func TestPendingCountOnCircuitMove(t *testing.T) {
	r := newPRig(t)
	cfg := r.p.config()
	cfg.Circuits = append(cfg.Circuits, Circuit{Name: "acc1", Interface: "acc0", Port: accPort, VLAN: 5, MAC: accMAC, Addr: ourSID})
	r.p = New(cfg, r.store, r.p.reg, r.tab, r.snd, nil)
	for i := range 20 {
		xid := dhcpv4.WithTransactionID(dhcpv4.TransactionID{9, 9, 9, byte(i)})
		r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)), xid))
		r.fromClientVLAN(5, discover(t, dhcpv4.WithHwAddr(mac(s1)), xid))
		r.snd.take()
		r.p.expire(time.Now().Add(time.Duration(i+1) * time.Second))
	}
	r.p.tx.mu.Lock()
	n, alpha := len(r.p.tx.pending), r.p.tx.perISP[0]
	r.p.tx.mu.Unlock()
	if n != 0 || alpha != 0 {
		t.Errorf("after the timeouts: %d pending, alpha's count %d; want 0, 0", n, alpha)
	}
	for i := range 2 {
		r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:02")), dhcpv4.WithTransactionID(dhcpv4.TransactionID{1, 0, 0, byte(i)})))
	}
	if sent := r.toPorts(); len(sent[upPort]) != 2 {
		t.Errorf("2 new DISCOVERs with nothing pending: %d relayed, pending_full %d", len(sent[upPort]), r.p.Counters()["pending_full"])
	}
}
