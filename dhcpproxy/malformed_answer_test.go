package dhcpproxy

import (
	"bytes"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/subscribers"
)

// An ISP's server answers with a message ispmux cannot parse (a
// hostile-ISP trial's: an option whose length runs past the datagram).
// It is dropped (server_malformed), and the timeout event, which the ISP
// reads in its webhooks, said "no answer from the ISP": its server did
// answer. The event names the server and the malformed answer now.
func TestTimeoutNamesMalformedAnswer(t *testing.T) {
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	up, _ := r.relayedTo()
	if up[ispSID] == nil {
		t.Fatal("DISCOVER not relayed")
	}
	b := serverReply(up[ispSID], dhcpv4.MessageTypeOffer, ispSID, ispSID).ToBytes()
	b = bytes.TrimRight(b, "\x00") // the padding to BOOTP's 300 bytes
	// The END replaced by an option 200 bytes long, 3 of them there.
	b = append(b[:len(b)-1], 43, 200, 'a', 'b', 'c')
	r.p.HandleFrame(upPort, fib.UDPFrame(upMAC, gwMAC, 0, ispSID, giaddr, 67, 67, b))
	r.p.committing.Wait()
	if _, toClient := r.relayedTo(); len(toClient) != 0 || r.p.Counters()["server_malformed"] != 1 {
		t.Fatalf("the malformed OFFER: client sent %v, counters %v; want it dropped as server_malformed", toClient, r.p.Counters())
	}
	for _, e := range r.eventsAfterTimeout() {
		if e.Kind == subscribers.EventTimeout {
			if !strings.Contains(e.Reason, ispSID.String()) || !strings.Contains(e.Reason, "malformed") {
				t.Errorf("timeout event %q does not say %v answered with a malformed message", e.Reason, ispSID)
			}
			return
		}
	}
	t.Error("no timeout event")
}

// malformedReply is rep as an ISP server's unparseable answer: its END
// replaced by an option running past the datagram.
func malformedReply(rep *dhcpv4.DHCPv4) []byte {
	b := bytes.TrimRight(rep.ToBytes(), "\x00")
	return append(b[:len(b)-1], 43, 200, 'a', 'b', 'c')
}

// With server-id override the client's REQUEST goes to the server whose
// OFFER it took only. The other server's late, malformed OFFER to the
// DISCOVER (the same xid and chaddr) is no answer to that REQUEST: the
// REQUEST's timeout, its server silent, must not say the other answered
// it with a malformed message, as an ICMP unreachable from a server the
// message did not go to is not noted (noteUnreachable).
func TestMalformedFromServerNotSentToNotNamed(t *testing.T) {
	r, second := twoServers(t, true)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	up, _ := r.relayedTo()
	discToB := up[second]
	if up[ispSID] == nil || discToB == nil {
		t.Fatalf("DISCOVER relayed to %v, want both servers", up)
	}
	r.fromServerAt(ispSID, serverReply(up[ispSID], dhcpv4.MessageTypeOffer, ispSID, ourSID))
	_, toClient := r.relayedTo()
	if len(toClient) != 1 {
		t.Fatalf("subscriber got %v, want the first server's OFFER", toClient)
	}
	req, _ := dhcpv4.NewRequestFromOffer(toClient[0])
	r.fromClient(req)
	if up, _ = r.relayedTo(); len(up) != 1 || up[ispSID] == nil {
		t.Fatalf("REQUEST relayed to %v, want %v only (override)", up, ispSID)
	}
	b := malformedReply(serverReply(discToB, dhcpv4.MessageTypeOffer, second, ourSID))
	r.p.HandleFrame(upPort, fib.UDPFrame(upMAC, gwMAC, 0, second, giaddr, 67, 67, b))
	r.p.committing.Wait()
	if got := r.p.Counters()["server_malformed"]; got != 1 {
		t.Fatalf("server_malformed = %d, want 1", got)
	}
	for _, e := range r.eventsAfterTimeout() {
		if e.Kind == subscribers.EventTimeout {
			if strings.Contains(e.Reason, second.String()) || strings.Contains(e.Reason, "malformed") {
				t.Errorf("timeout of the REQUEST sent to %v only: %q names %v's malformed answer", ispSID, e.Reason, second)
			}
			return
		}
	}
	t.Error("no timeout event for the unanswered REQUEST")
}
