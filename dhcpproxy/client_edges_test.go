package dhcpproxy

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/subscribers"
)

var nakClientID = []byte{1, 2, 0, 0, 0, 1, 1}

// RFC 6842 §3: a server MUST return the client identifier a client sent,
// unaltered, in its DHCPOFFER, DHCPACK and DHCPNAK. ispmux's own NAK (the
// NAK rule, an INIT-REBOOT for an address it does not hold) dropped it.
func TestOwnNakEchoesClientID(t *testing.T) {
	r, _ := newSRig(t)
	m := initReboot(t, s1, netip.MustParseAddr("10.1.2.3"))
	m.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientIdentifier, nakClientID))
	r.fromClient(m)
	sent := r.toPorts()
	if len(sent[accPort]) != 1 || sent[accPort][0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("sent %v, want a NAK", sent)
	}
	if id := sent[accPort][0].Options.Get(dhcpv4.OptionClientIdentifier); !bytes.Equal(id, nakClientID) {
		t.Errorf("NAK client identifier %x, want the request's %x (RFC 6842)", id, nakClientID)
	}
}

// RFC 2131 §4.3.2: a REQUEST naming another server's identifier says the
// client chose that server; no answer is due. ispmux relays it (so the
// ISP's server frees its offer) but then recorded a timeout event blaming
// the ISP for not answering it; it keeps no transaction for it now.
func TestRequestForAnotherServerIsNoTimeout(t *testing.T) {
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	got := r.serve(kea(t, time.Minute))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("got %v", got)
	}
	other := net.IPv4(100, 64, 0, 254) // a second server on the access link
	req, _ := dhcpv4.NewRequestFromOffer(got[0])
	req.UpdateOption(dhcpv4.OptServerIdentifier(other))
	r.fromClient(req)
	r.serve(func(*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return nil }) // the ISP's server: not chosen, silent
	evs := r.eventsAfterTimeout()
	for _, e := range evs {
		if e.Kind == subscribers.EventTimeout {
			t.Errorf("timeout event for a REQUEST naming another server: %q", e.Reason)
		}
	}
}

// RFC 2131 §3 and table 2: a client sends DISCOVER, REQUEST, DECLINE,
// RELEASE and INFORM; a relay agent forwards client messages. A
// subscriber's message of any other type (a DHCPLEASEQUERY, RFC 4388,
// which servers accept from access concentrators, i.e. from ispmux's
// giaddr; a server message type with op BOOTREQUEST) reached the ISP with
// ispmux's giaddr and Option 82; it is dropped (not_client_message).
func TestNonClientMessageTypesNotRelayed(t *testing.T) {
	r := newPRig(t)
	for _, mt := range []dhcpv4.MessageType{dhcpv4.MessageType(10), dhcpv4.MessageTypeAck, dhcpv4.MessageType(9), dhcpv4.MessageType(200)} {
		m := clientMsg(t, s1, mt, dhcpv4.WithClientIP(net.ParseIP("100.64.0.77")))
		r.fromClient(m)
		for _, s := range r.snd.take() {
			if s.port == upPort {
				t.Errorf("a subscriber's %s was relayed to the ISP: %v", mt, dhcpOf(s.frame).Summary())
			}
		}
	}
}

// With server-id override, a REQUEST that comes after its DISCOVER's
// transaction ended (a client slow to choose: the OFFER is remembered for
// offerMemory so that such a REQUEST still names the right server) must
// still go to the server whose OFFER was taken only; sent to every server,
// the others take the override address for theirs and NAK an address they
// did not offer (TestOverrideRequestToChosenServer's rule).
func TestOverrideSlowRequestToChosenServer(t *testing.T) {
	r, second := twoServers(t, true)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	up, _ := r.relayedTo()
	r.fromServerAt(second, serverReply(up[second], dhcpv4.MessageTypeOffer, second, ourSID))
	_, toClient := r.relayedTo()
	if len(toClient) != 1 {
		t.Fatalf("subscriber got %d messages, want the OFFER", len(toClient))
	}
	// The client takes longer than dhcp.timeout to send its REQUEST.
	time.Sleep(350 * time.Millisecond)
	r.p.expire(time.Now())
	req, _ := dhcpv4.NewRequestFromOffer(toClient[0])
	r.fromClient(req)
	up, _ = r.relayedTo()
	if len(up) != 1 || up[second] == nil {
		t.Errorf("late REQUEST relayed to %d servers, want the chosen one (%v) only", len(up), second)
	}
}

// At start-up, before an ISP's next hop was ever resolved, a message
// waits for it (relayLater). A subscriber's message of a type that opens
// no transaction (anything but DISCOVER, REQUEST, INFORM, and not a
// RELEASE or DECLINE) reached relayLater with no transaction, and
// relayLater's tx.extend dereferenced it: the control plane panicked, and
// ispmux with it. One frame from any registered subscriber did it.
func TestStartupOddTypeNoPanic(t *testing.T) {
	r := newPRig(t)
	r.tab.uplinkDown = true // never resolved since start
	defer func() {
		if v := recover(); v != nil {
			t.Fatalf("HandleFrame panicked: %v", v)
		}
	}()
	r.fromClient(clientMsg(t, s1, dhcpv4.MessageType(10), dhcpv4.WithClientIP(net.ParseIP("100.64.0.77"))))
	r.p.committing.Wait()
}

// A DHCP message whose UDP checksum does not verify is dropped and counted
// (udp_bad_checksum), as a host's stack or a DHCP server drops it (RFC
// 1122 §4.1.3.4); one sent without a checksum (0, RFC 768) is taken.
// Before, the checksum was never looked at: a DISCOVER with a wrong one
// was relayed and answered.
func TestBadUDPChecksumDropped(t *testing.T) {
	r := newPRig(t)
	d := discover(t, dhcpv4.WithHwAddr(mac(s1)))
	f := fib.UDPFrame(0xffffffffffff, s1MAC, 0, netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67, d.ToBytes())
	sum := f[14+20+6:]
	good := [2]byte{sum[0], sum[1]}
	sum[0] ^= 0x12
	r.p.HandleFrame(accPort, f)
	if up, _ := r.relayedTo(); len(up) != 0 || r.p.Counters()["udp_bad_checksum"] != 1 {
		t.Fatalf("a DISCOVER with a wrong UDP checksum: relayed %v (counters %v); want dropped, udp_bad_checksum 1", up, r.p.Counters())
	}
	sum[0], sum[1] = 0, 0
	r.p.HandleFrame(accPort, f)
	if up, _ := r.relayedTo(); len(up) != 1 {
		t.Fatalf("a DISCOVER without a UDP checksum: relayed %v (counters %v); want it relayed", up, r.p.Counters())
	}
	sum[0], sum[1] = good[0], good[1]
	r.p.HandleFrame(accPort, f)
	if up, _ := r.relayedTo(); len(up) != 1 || r.p.Counters()["udp_bad_checksum"] != 1 {
		t.Fatalf("a DISCOVER with its checksum: relayed %v (counters %v)", up, r.p.Counters())
	}
}

// TestOwnNakToRenewingClientAtCiaddr: ispmux's own NAK to a RENEWING
// client (a unicast REQUEST with ciaddr, here one it holds no binding
// for: request_nak) goes to that ciaddr, where a client listening only on
// its leased address (dhcpcd 9.4) reads it; a client without an address
// (INIT-REBOOT), or one naming an address no host holds (loopback), still
// gets it at 255.255.255.255. Before, every NAK went
// to 255.255.255.255 and dhcpcd renewed unanswered until T2 (a lab trial).
func TestOwnNakToRenewingClientAtCiaddr(t *testing.T) {
	ciaddr := netip.MustParseAddr("100.64.0.77")
	for _, tc := range []struct {
		name string
		send func(r *prig)
		want netip.Addr
	}{
		{"renewing", func(r *prig) { r.fromClientUnicast(renewOf(t, s1, ciaddr), ciaddr) }, ciaddr},
		{"init-reboot", func(r *prig) { r.fromClient(initReboot(t, s1, ciaddr)) }, netip.AddrFrom4([4]byte{255, 255, 255, 255})},
		{"loopback ciaddr", func(r *prig) {
			r.fromClientUnicast(renewOf(t, s1, netip.MustParseAddr("127.0.0.1")), netip.MustParseAddr("127.0.0.1"))
		}, netip.AddrFrom4([4]byte{255, 255, 255, 255})},
	} {
		r, _ := newSRig(t)
		tc.send(r)
		naks := r.nakDsts()
		if len(naks) != 1 || naks[0] != tc.want {
			t.Errorf("%s: NAKs to %v, want one to %v (counters %v)", tc.name, naks, tc.want, r.p.Counters())
		}
	}
}

// nakSent is a NAK sent to the access port: the message and its IPv4
// destination.
type nakSent struct {
	m   *dhcpv4.DHCPv4
	dst netip.Addr
}

// naksSent takes what was sent and returns the NAKs to the access port
// (untagged frames).
func (r *prig) naksSent() []nakSent {
	var out []nakSent
	for _, s := range r.snd.take() {
		if m := dhcpOf(s.frame); s.port == accPort && m != nil && m.MessageType() == dhcpv4.MessageTypeNak {
			out = append(out, nakSent{m, netip.AddrFrom4([4]byte(s.frame[30:34]))})
		}
	}
	return out
}

// nakDsts is naksSent's destinations.
func (r *prig) nakDsts() []netip.Addr {
	var out []netip.Addr
	for _, n := range r.naksSent() {
		out = append(out, n.dst)
	}
	return out
}
