package dhcpproxy

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// A protocol trial's ISP server answered otherwise than Kea does; towards
// the subscriber ispmux is the server, and its replies are what RFC 2131
// Table 3 and RFC 6842 ask of one, whatever the ISP's server sent.

// withReply is kea for c-s1 with change applied to every reply.
func withReply(t *testing.T, change func(rep *dhcpv4.DHCPv4)) func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	return func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := kea(t, time.Hour)(m)
		if rep != nil {
			change(rep)
		}
		return rep
	}
}

// TestOfferOfUnusableAddressNotPassedOn: an OFFER of an address no
// subscriber may hold is not delivered (a rejected event says why);
// before, it reached the client, whose REQUEST the ACK check refused, and
// the client went round DISCOVER, OFFER, REQUEST, NAK.
func TestOfferOfUnusableAddressNotPassedOn(t *testing.T) {
	for _, a := range []string{"127.0.0.1", "0.0.0.0", "255.255.255.255", "100.64.0.1", "224.0.0.5"} {
		t.Run(a, func(t *testing.T) {
			r := newPRig(t)
			r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
			got := r.serve(withReply(t, func(rep *dhcpv4.DHCPv4) { rep.YourIPAddr = net.ParseIP(a).To4() }))
			if len(got) != 0 {
				t.Fatalf("the subscriber got %v", got)
			}
			if n := r.p.Counters()["offer_unusable_address"]; n != 1 {
				t.Errorf("offer_unusable_address = %d, want 1", n)
			}
			wantRejectedNoTimeout(t, r.eventsAfterTimeout(), "the OFFER was refused")
		})
	}
}

// TestISPNakHeaderCleared: an ISP's NAK reaches the client with ciaddr,
// yiaddr and siaddr 0 (RFC 2131 Table 3), though the ISP's server set them.
func TestISPNakHeaderCleared(t *testing.T) {
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01"))))
	offer := r.serve(kea(t, time.Hour))
	if len(offer) != 1 {
		t.Fatalf("got %v, want an OFFER", offer)
	}
	req, err := dhcpv4.NewRequestFromOffer(offer[0])
	if err != nil {
		t.Fatal(err)
	}
	r.fromClient(req)
	got := r.serve(withReply(t, func(rep *dhcpv4.DHCPv4) {
		rep.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeNak))
		rep.ClientIPAddr = net.IPv4(100, 64, 0, 161).To4()
		rep.ServerIPAddr = net.IPv4(192, 0, 2, 99).To4()
	}))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("got %v, want a NAK", got)
	}
	for name, ip := range map[string]net.IP{"ciaddr": got[0].ClientIPAddr, "yiaddr": got[0].YourIPAddr, "siaddr": got[0].ServerIPAddr} {
		if !ip.IsUnspecified() {
			t.Errorf("NAK %s %v, want 0.0.0.0", name, ip)
		}
	}
}

// TestReplyCarriesClientsFlagsAndID: a reply carries the client's flags,
// not the ISP server's, and the client identifier the ISP's server did
// not echo (RFC 6842 §3); one it echoed is not doubled.
func TestReplyCarriesClientsFlagsAndID(t *testing.T) {
	cid := []byte{1, 0xca, 0xfe, 0, 0, 0, 1}
	for _, echo := range []bool{false, true} {
		r := newPRig(t)
		r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")), dhcpv4.WithBroadcast(false),
			dhcpv4.WithOption(dhcpv4.OptClientIdentifier(cid))))
		got := r.serve(withReply(t, func(rep *dhcpv4.DHCPv4) {
			rep.SetBroadcast()
			if echo {
				rep.UpdateOption(dhcpv4.OptClientIdentifier(cid))
			} else {
				rep.Options.Del(dhcpv4.OptionClientIdentifier)
			}
		}))
		if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
			t.Fatalf("echo %v: got %v, want an OFFER", echo, got)
		}
		if got[0].IsBroadcast() {
			t.Errorf("echo %v: the OFFER has the ISP server's broadcast flag; the client's was clear", echo)
		}
		if id := got[0].Options.Get(dhcpv4.OptionClientIdentifier); !bytes.Equal(id, cid) {
			t.Errorf("echo %v: option 61 %x, want the client's %x", echo, id, cid)
		}
	}
}

// TestReplyAddrClientsBroadcastBit: where a reply goes follows the
// broadcast bit of the message sent (the client's), not the one the ISP's
// server set.
func TestReplyAddrClientsBroadcastBit(t *testing.T) {
	m, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer), dhcpv4.WithYourIP(net.IPv4(100, 64, 0, 100)))
	if err != nil {
		t.Fatal(err)
	}
	m.SetBroadcast() // the ISP's server
	payload := m.ToBytes()
	payload[10] &^= 0x80 // the client's flag, clear
	if got, want := replyAddr(m, payload), netip.MustParseAddr("100.64.0.100"); got != want {
		t.Errorf("to %v, want yiaddr %v", got, want)
	}
	payload[10] |= 0x80
	m.SetUnicast()
	if got, want := replyAddr(m, payload), netip.MustParseAddr("255.255.255.255"); got != want {
		t.Errorf("to %v, want %v (the client asked for a broadcast)", got, want)
	}
}

// TestReplyCarriesIDWithOverload: an ISP's reply that carries options in
// its file field (option 52) still reaches the client with the client
// identifier it sent (RFC 6842 §3); one the server put in the file field
// is not extended by a second (RFC 3396). Before, the identifier was not
// added back to any overloaded reply.
func TestReplyCarriesIDWithOverload(t *testing.T) {
	cid := []byte{1, 0xca, 0xfe, 0, 0, 0, 1}
	for _, inFile := range []bool{false, true} {
		r := newPRig(t)
		r.fromClient(discover(t, dhcpv4.WithHwAddr(mac("02:00:00:00:01:01")),
			dhcpv4.WithOption(dhcpv4.OptClientIdentifier(cid))))
		got := r.serveRaw(func(m *dhcpv4.DHCPv4) []byte {
			rep := kea(t, time.Hour)(m)
			rep.Options.Del(dhcpv4.OptionClientIdentifier)
			rep.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionOptionOverload, []byte{1}))
			file := []byte{15, 3, 'i', 's', 'p'}
			if inFile {
				file = append(file, 61, byte(len(cid)))
				file = append(file, cid...)
			}
			rep.BootFileName = string(append(file, 255))
			return rep.ToBytes()
		})
		if len(got) != 1 {
			t.Fatalf("in file %v: the client got %d messages, want an OFFER (counters %v)", inFile, len(got), r.p.Counters())
		}
		v := clientView(t, got[0])
		if !bytes.Equal(v[61], cid) {
			t.Errorf("in file %v: the client reads option 61 %x, want %x", inFile, v[61], cid)
		}
		if string(v[15]) != "isp" {
			t.Errorf("in file %v: option 15 %q, want the server's %q from the file field", inFile, v[15], "isp")
		}
	}
}
