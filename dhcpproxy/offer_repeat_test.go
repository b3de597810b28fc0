package dhcpproxy

import (
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// An ISP's server that answers one DISCOVER with its OFFER over and over
// (a hostile-ISP trial's scapy server: one DISCOVER, 200,000 copies of its
// OFFER) had every copy delivered to the subscriber: 165,163 frames, 56 MB,
// sent on the access port the other ISPs' subscribers share, from one
// DISCOVER. A server's OFFER answers one copy of the client's DISCOVER:
// each copy relayed may be answered once (a server answers a client's
// retransmission again), and what comes beyond is dropped
// (offer_repeated). Nor does a repeat hold the transaction open past its
// timeout.
func TestRepeatedOfferDeliveredOncePerDiscover(t *testing.T) {
	r := newPRig(t)
	d := discover(t, dhcpv4.WithHwAddr(mac(s1)))
	r.fromClient(d)
	up, _ := r.relayedTo()
	if up[ispSID] == nil {
		t.Fatalf("DISCOVER not relayed (counters %v)", r.p.Counters())
	}
	offer := serverReply(up[ispSID], dhcpv4.MessageTypeOffer, ispSID, ispSID)
	for range 1000 {
		r.fromServerAt(ispSID, offer)
	}
	_, toClient := r.relayedTo()
	if len(toClient) != 1 {
		t.Fatalf("1000 copies of the OFFER to one DISCOVER: the subscriber was sent %d messages, want 1 (counters %v)",
			len(toClient), r.p.Counters())
	}
	if got := r.p.Counters()["offer_repeated"]; got != 999 {
		t.Errorf("offer_repeated = %d, want 999", got)
	}
	// The client's retransmission (the same xid) is answered again, once.
	r.fromClient(d)
	if up, _ = r.relayedTo(); up[ispSID] == nil {
		t.Fatalf("retransmitted DISCOVER not relayed (counters %v)", r.p.Counters())
	}
	for range 10 {
		r.fromServerAt(ispSID, offer)
	}
	if _, toClient = r.relayedTo(); len(toClient) != 1 || toClient[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("the retransmission's OFFER, sent 10 times: the subscriber was sent %d messages, want its OFFER once", len(toClient))
	}
	// And the REQUEST for it binds as ever.
	req, _ := dhcpv4.NewRequestFromOffer(toClient[0])
	r.fromClient(req)
	up, _ = r.relayedTo()
	r.fromServerAt(ispSID, serverReply(up[ispSID], dhcpv4.MessageTypeAck, ispSID, ispSID))
	if _, toClient = r.relayedTo(); len(toClient) != 1 || toClient[0].MessageType() != dhcpv4.MessageTypeAck || !r.tab.isBound(s1MAC) {
		t.Fatalf("subscriber got %v after the ACK, want the ACK and a binding", toClient)
	}
}
