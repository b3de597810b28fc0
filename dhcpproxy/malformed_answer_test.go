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
