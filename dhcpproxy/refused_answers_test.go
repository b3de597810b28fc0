package dhcpproxy

import (
	"bytes"
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/subscribers"
)

// RFC 6842 §3: a server MUST return the client identifier the client sent
// in its DHCPNAK. ispmux's NAKs sent instead of an ISP's ACK (no lease
// time, not admitted, address in use) were built from the ISP's ACK, not
// the client's REQUEST: an ISP server that does not echo option 61 (most
// pre-6842 servers) made ispmux's NAK lack it. They take the client's.
func TestAckWithoutLeaseNakEchoesClientID(t *testing.T) {
	r := newPRig(t)
	req, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(100, 64, 0, 100))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ourSID.AsSlice()))),
		dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, nakClientID))
	r.fromClient(req)
	got := r.serve(func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := kea(t, 0)(m) // the ISP's ACK: option 51 = 0
		if rep != nil {
			rep.Options.Del(dhcpv4.OptionClientIdentifier) // a server that does not echo 61
		}
		return rep
	})
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("subscriber got %v, want a NAK", got)
	}
	if id := got[0].Options.Get(dhcpv4.OptionClientIdentifier); !bytes.Equal(id, nakClientID) {
		t.Errorf("NAK client identifier %x, want the REQUEST's %x (RFC 6842 §3)", id, nakClientID)
	}
}

// An ISP OFFER without a lease time is dropped with a rejected event
// naming the ISP's server (this session). The DISCOVER's transaction is
// kept with no server chosen, so when dhcp.timeout passes a second event
// said the ISP did not answer at all ("no answer from the ISP to
// DISCOVER"), though it did, at once, contradicting the rejected event.
// A refused answer is no silence now.
func TestOfferWithoutLeaseNoSilenceTimeout(t *testing.T) {
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	if got := r.serve(kea(t, 0)); len(got) != 0 {
		t.Fatalf("subscriber got %v, want nothing (OFFER without lease time dropped)", got)
	}
	for _, e := range r.eventsAfterTimeout() {
		if e.Kind == subscribers.EventTimeout {
			t.Errorf("timeout event after the ISP answered (its OFFER was refused): %q", e.Reason)
		}
	}
}
