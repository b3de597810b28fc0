package dhcpproxy

import (
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// An owner's ACK that reclaims its hardware identifier at the ACK while
// its own earlier binding (another identifier: none) ran out and was not
// ended by the tick yet: the first pass of bindOnce ends the lapsed
// binding (a new generation of the subscriber's), and the second pass,
// after the holder's revocation, must still bind and deliver the ACK,
// not take that end for one made after the exchange was relayed
// (ack_after_end: the ACK dropped, the holder revoked for nothing).
func TestClientIDAckReclaimAfterOwnLapse(t *testing.T) {
	r := newPRig(t)
	if got := r.dora(s1, kea(t, time.Second), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("s1's first DORA: %v", got)
	}
	r.p.committing.Wait()
	r.snd.take()
	time.Sleep(1100 * time.Millisecond) // past s1's lease; no tick runs here
	id := append([]byte{1}, mac(s1)...)
	req1 := r.requestInFlight(s1, id) // free when relayed
	req2 := r.requestInFlight(s2, id) // free when relayed too
	if got, _ := r.ackOf(req2); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("s2 got %v, want an ACK (nothing holds the identifier yet)", got)
	}
	got, _ := r.ackOf(req1)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("s1 got %v, want its ACK (counters %v)", got, r.p.Counters())
	}
	r.wantBoundAlone(s1, s2, nil)
	if c := r.p.Counters(); c["ack_after_end"] != 0 || c["client_id_reclaimed"] != 1 {
		t.Errorf("counters %v, want no ack_after_end and one client_id_reclaimed", c)
	}
}
