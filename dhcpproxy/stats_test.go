package dhcpproxy

import (
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// The per-ISP statistics move with a DORA, a refusal by silence and a
// NAK; an unregistered subscriber counts for no ISP.
func TestISPCounters(t *testing.T) {
	r := newPRig(t)
	if got := r.p.ISPCounters(); len(got) != 1 || got[0].Name != "alpha" || got[0].Relayed != 0 || got[0].Answer.Count != 0 {
		t.Fatalf("before: %+v", got)
	}
	if got := r.dora("02:00:00:00:01:01", kea(t, time.Minute), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("DORA: %v", got)
	}
	// Unknown to the ISP: silence, then a timeout.
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:02"))))
	if p := r.p.PendingTransactions(); p != 1 {
		t.Errorf("pending %d, want 1", p)
	}
	r.serve(kea(t, time.Minute))
	time.Sleep(350 * time.Millisecond)
	r.p.expire(time.Now())
	r.p.notes.wait()
	if p := r.p.PendingTransactions(); p != 0 {
		t.Errorf("pending %d after the timeout, want 0", p)
	}
	// Unregistered: not the ISP's.
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:09"))))

	c := r.p.ISPCounters()[0]
	want := [NumOutcomes]uint64{OutcomeOffer: 1, OutcomeAck: 1, OutcomeTimeout: 1}
	if c.Outcomes != want {
		t.Errorf("outcomes %v, want %v", c.Outcomes, want)
	}
	if c.Relayed != 3 { // DISCOVER, REQUEST of s1; DISCOVER of s2
		t.Errorf("relayed %d, want 3", c.Relayed)
	}
	if c.Answer.Count != 2 || c.RequestAck.Count != 1 {
		t.Errorf("answer %d, request→ack %d observations; want 2, 1", c.Answer.Count, c.RequestAck.Count)
	}
	if c.RequestAck.Sum <= 0 || c.RequestAck.Sum > 5 {
		t.Errorf("request→ack sum %v s", c.RequestAck.Sum)
	}
	if l := r.p.LeasesPerISP(); l[0] != 1 || len(l) != 1 {
		t.Errorf("leases per ISP %v", l)
	}
	for o := range NumOutcomes {
		if o.String() == "unknown" || o.String() == "" {
			t.Errorf("outcome %d has no name", o)
		}
	}
}
