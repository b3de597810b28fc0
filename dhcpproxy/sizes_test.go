package dhcpproxy

import (
	"bytes"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/fib"
)

// dhcpPayloadOf returns the DHCP message (UDP payload) of a frame.
func dhcpPayloadOf(t *testing.T, frame []byte) []byte {
	t.Helper()
	var p classifier.Packet
	if p.Decode(frame) != classifier.ReasonNone {
		t.Fatalf("undecodable frame %x", frame)
	}
	pl, ok := udpPayload(&p, frame)
	if !ok {
		t.Fatalf("no UDP payload in %x", frame)
	}
	return pl
}

// keaOverloading answers like an ISC dhcpd that ran out of room in the
// options field (the client sent no option 57: 576 bytes at most): it
// fills the options field and carries more options in the file field
// (option 52 = 1, RFC 2131 §4.1). Its ACK is exactly 576 bytes.
func keaOverloading(t *testing.T, lease time.Duration) func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	return func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := kea(t, lease)(m)
		if rep == nil || rep.MessageType() == dhcpv4.MessageTypeNak {
			return rep
		}
		rep.UpdateOption(dhcpv4.OptRouter(ispRouter))
		rep.UpdateOption(dhcpv4.OptDNS(ispDNS))
		rep.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionOptionOverload, []byte{1}))
		// file: option 15 (domain name) and option 119 (search list), END.
		var file []byte
		dom := []byte("customers.isp.example.net")
		file = append(file, 15, byte(len(dom)))
		file = append(file, dom...)
		search := bytes.Repeat([]byte{3, 'a', 'b', 'c'}, 20)
		search = append(search, 0)
		file = append(file, 119, byte(len(search)))
		file = append(file, search...)
		file = append(file, 255)
		rep.BootFileName = string(file)
		// The options field filled to 576 bytes with vendor data (43).
		rep.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{1}))
		if n := len(rep.ToBytes()); n < 576 {
			rep.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, bytes.Repeat([]byte{1}, 1+576-n)))
		}
		if n := len(rep.ToBytes()); n != 576 {
			t.Fatalf("ISP ACK of %d bytes, want 576", n)
		}
		return rep
	}
}

// RFC 2131 §2 / RFC 2132 §9.10: without option 57 from the client, a
// server's message is at most 576 bytes (the client "must be prepared to
// receive" that much, no more). The ISP's ACK respects it by overloading
// the file field; relayed, ispmux's copy does too. ispmux's own ACK to a
// renewal (localACK, from the stored ACK options) would put the file
// field's options into the options field and add 58/59: over 576 bytes it
// is not sent and the renewal goes to the ISP (before, a 680-byte ACK went
// out: busybox udhcpc drops a reply larger than its 576+80-byte buffer in
// raw mode, "oversized packet, ignoring", and truncates it in RENEWING).
func TestLocalACKWithinMaxMessageSize(t *testing.T) {
	r, _ := newSRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	offer := r.serve(keaOverloading(t, time.Hour))
	if len(offer) != 1 {
		t.Fatalf("got %v, want an OFFER", offer)
	}
	req, _ := dhcpv4.NewRequestFromOffer(offer[0])
	r.fromClient(req)
	// Relay the REQUEST and keep the ACK's raw bytes.
	var relayedACK []byte
	for _, s := range r.snd.take() {
		if s.port != upPort {
			continue
		}
		rep := keaOverloading(t, time.Hour)(dhcpOf(s.frame))
		r.p.HandleFrame(upPort, fibFrameFromISP(rep.ToBytes()))
	}
	r.p.committing.Wait()
	for _, s := range r.snd.take() {
		if s.port == accPort {
			relayedACK = dhcpPayloadOf(t, s.frame)
		}
	}
	if relayedACK == nil {
		t.Fatal("no ACK relayed")
	}
	if len(relayedACK) > 576 {
		t.Errorf("relayed ACK is %d bytes", len(relayedACK))
	}
	// The client renews (RENEWING, no option 57): ispmux's own ACK would
	// not fit, so the renewal goes to the ISP, whose ACK does.
	r.fromClient(renewing(t, s1, s1Addr))
	var local []byte
	relayed := false
	for _, s := range r.snd.take() {
		if s.port == accPort {
			local = dhcpPayloadOf(t, s.frame)
		} else {
			relayed = true
		}
	}
	if len(local) > 576 {
		t.Errorf("local ACK is %d bytes (IP datagram %d), over the 576 a client that sent no option 57 accepts (ISP's ACK: 576, relayed: %d)",
			len(local), len(local)+28, len(relayedACK))
	}
	if local == nil && (!relayed || r.p.Counters()["renewal_local_too_big"] != 1) {
		t.Errorf("renewal neither answered nor relayed as too big (counters %v)", r.p.Counters())
	}
}

// fibFrameFromISP is a frame from the ISP's server to our giaddr.
func fibFrameFromISP(payload []byte) []byte {
	return fib.UDPFrame(upMAC, gwMAC, 0, ispSID, giaddr, 67, 67, payload)
}

// keaLeaseInFile is kea() with its lease time (51) carried in the file
// field (option 52 = 1) rather than the options field: RFC 2131 §4.1 lets
// a server put any option there, and the client MUST read it.
func keaLeaseInFile(t *testing.T, lease time.Duration) func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	return func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := kea(t, lease)(m)
		if rep == nil || rep.MessageType() == dhcpv4.MessageTypeNak {
			return rep
		}
		rep.Options.Del(dhcpv4.OptionIPAddressLeaseTime)
		rep.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionOptionOverload, []byte{1}))
		s := uint32(lease / time.Second)
		rep.BootFileName = string([]byte{51, 4, byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s), 6, 4, 8, 8, 8, 8, 255})
		return rep
	}
}

// The ISP's lease time read by the library parser (options field only)
// was what ispmux based the client lease on: a server's 51 in an
// overloaded field was removed by relayDown's filter and none was added
// in its place, the OFFER reached the client without a lease time (RFC
// 2131 table 3: MUST) and the ACK was dropped (ack_without_lease_time).
// withOverloaded reads it there now.
func TestLeaseTimeInOverloadedField(t *testing.T) {
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	got := r.serve(keaLeaseInFile(t, time.Hour))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("got %v (counters %v), want an OFFER", got, r.p.Counters())
	}
	if lt := got[0].IPAddressLeaseTime(0); lt == 0 {
		t.Errorf("OFFER to the client has no lease time (option 51) in its options field; file field %x", []byte(got[0].BootFileName))
	}
	req, _ := dhcpv4.NewRequestFromOffer(got[0])
	r.fromClient(req)
	got = r.serve(keaLeaseInFile(t, time.Hour))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("after the REQUEST the client got %v, want an ACK (counters %v)", got, r.p.Counters())
	}
}
