package dhcpproxy

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/subscribers"
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
// field's options into the options field and add 58/59: it is laid out
// again within the limit (fitReply), or, if it cannot be, not sent and the
// renewal goes to the ISP (before, a 680-byte ACK went out: busybox udhcpc
// drops a reply larger than its 576+80-byte buffer in raw mode,
// "oversized packet, ignoring", and truncates it in RENEWING).
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

// serveRaw plays the ISP's server as serve does, reply giving the bytes
// of its answer (nil: silence), and returns the messages (UDP payloads)
// the subscriber was sent.
func (r *prig) serveRaw(reply func(m *dhcpv4.DHCPv4) []byte) [][]byte {
	r.t.Helper()
	var toClient [][]byte
	for _, s := range r.snd.take() {
		if s.port == accPort {
			toClient = append(toClient, dhcpPayloadOf(r.t, s.frame))
			continue
		}
		if rep := reply(dhcpOf(s.frame)); rep != nil {
			r.p.HandleFrame(upPort, fibFrameFromISP(rep))
		}
	}
	r.p.committing.Wait()
	for _, s := range r.snd.take() {
		if s.port == accPort {
			toClient = append(toClient, dhcpPayloadOf(r.t, s.frame))
		}
	}
	return toClient
}

// clientView is what a client reads in the DHCP message b: every option,
// the instances of each concatenated (RFC 3396), from the options field
// and then the file and sname fields when option 52 says they hold
// options (RFC 2131 §4.1). Read independently of the code under test.
func clientView(t *testing.T, b []byte) map[byte][]byte {
	t.Helper()
	out := map[byte][]byte{}
	read := func(area []byte) {
		for i := 0; i < len(area); {
			c := area[i]
			if c == 0 {
				i++
				continue
			}
			if c == 255 {
				return
			}
			if i+1 >= len(area) || i+2+int(area[i+1]) > len(area) {
				t.Fatalf("option %d overruns its field in %x", c, b)
			}
			out[c] = append(out[c], area[i+2:i+2+int(area[i+1])]...)
			i += 2 + int(area[i+1])
		}
	}
	read(b[240:])
	if v := out[52]; len(v) == 1 {
		if v[0]&1 != 0 {
			read(b[108:236])
		}
		if v[0]&2 != 0 {
			read(b[44:108])
		}
	}
	return out
}

// addrList is n addresses from 198.51.100.1 on, as option 6 holds them.
func addrList(n int) []byte {
	var b []byte
	for i := range n {
		b = append(b, 198, 51, byte(100+i/250), byte(1+i%250))
	}
	return b
}

// keaMany answers like kea() with many options besides (Kea never uses
// option overload: it sends what the client may not take): subnet mask,
// router, dns DNS servers and extra.
func keaMany(t *testing.T, dns int, extra ...dhcpv4.Option) func(m *dhcpv4.DHCPv4) []byte {
	return func(m *dhcpv4.DHCPv4) []byte {
		rep := kea(t, time.Hour)(m)
		if rep == nil {
			return nil
		}
		rep.UpdateOption(dhcpv4.OptSubnetMask(net.IPv4Mask(255, 255, 255, 0)))
		rep.UpdateOption(dhcpv4.OptRouter(net.IPv4(100, 64, 0, 1)))
		rep.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionDomainNameServer, addrList(dns)))
		for _, o := range extra {
			rep.UpdateOption(o)
		}
		return rep.ToBytes()
	}
}

// wantOptions checks that the client reading b sees the ISP's options
// want (code → value), ispmux's server identifier and a lease time.
func wantOptions(t *testing.T, what string, b []byte, want map[byte][]byte) {
	t.Helper()
	got := clientView(t, b)
	for code, v := range want {
		if !bytes.Equal(got[code], v) {
			t.Errorf("%s: option %d is %d bytes %x, want the ISP's %d bytes", what, code, len(got[code]), got[code], len(v))
		}
	}
	if sid := ourSID.As4(); !bytes.Equal(got[54], sid[:]) || len(got[51]) != 4 || len(got[53]) != 1 {
		t.Errorf("%s: server id %v, lease time %x, type %x", what, got[54], got[51], got[53])
	}
	inField := map[byte]bool{}
	for _, o := range rawOptions(t, b) {
		inField[o[0][0]] = true
	}
	if !inField[53] || !inField[54] || !inField[51] {
		t.Errorf("%s: message type, server id or lease time not in the options field (%v)", what, inField)
	}
}

// A client that sends no option 57 takes a 576-byte IP datagram, a DHCP
// message of 548 bytes (RFC 2131 §2, RFC 2132 §9.10). An ISP server that
// ignores that (Kea never overloads) with 90 DNS servers (e2e TestDHCPISC's
// configuration) answers with about 690 bytes; ispmux passed them on (its
// OFFER and ACK 700 bytes, which the client drops unseen: no address).
// They now go out within 548 bytes, every DNS server carried on in the
// file and sname fields (option 52).
func TestReplyWithinClientWithoutOption57(t *testing.T) {
	r := newPRig(t)
	dom := dhcpv4.OptDomainName("customers.isp.example.net")
	isp := keaMany(t, 90, dom)
	want := map[byte][]byte{1: {255, 255, 255, 0}, 3: {100, 64, 0, 1}, 6: addrList(90), 15: dom.Value.ToBytes()}
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	got := r.serveRaw(isp)
	if len(got) != 1 {
		t.Fatalf("client got %d messages (counters %v), want the OFFER", len(got), r.p.Counters())
	}
	if len(got[0]) > 548 {
		t.Errorf("OFFER of %d bytes to a client without option 57 (548 at most)", len(got[0]))
	}
	wantOptions(t, "OFFER", got[0], want)
	offer, err := dhcpv4.FromBytes(got[0])
	if err != nil {
		t.Fatal(err)
	}
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	r.fromClient(req)
	got = r.serveRaw(isp)
	if len(got) != 1 || !r.tab.isBound(s1MAC) {
		t.Fatalf("client got %d messages (counters %v), want the ACK and a binding", len(got), r.p.Counters())
	}
	if len(got[0]) > 548 {
		t.Errorf("ACK of %d bytes to a client without option 57 (548 at most)", len(got[0]))
	}
	wantOptions(t, "ACK", got[0], want)
	if n := r.p.Counters()["reply_repacked"]; n != 2 {
		t.Errorf("reply_repacked %d, want 2", n)
	}
}

// When the file and sname fields are taken (a boot file and server name)
// and the options do not fit the client's 548 bytes, options are left out
// so that the client gets an address: never the essential ones (53, 54,
// 51, 1, 3, 6), first 58/59 (the values a client assumes without them),
// then those the client did not ask for (option 55), the last first, then
// those it asked for. Before, the 680-byte OFFER went out as it was. The
// domain search list (119, 100 bytes), left out before the 200-byte
// vendor option, fits once that is gone and is put back.
func TestReplyOptionsLeftOutInOrder(t *testing.T) {
	r := newPRig(t)
	vendor := dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, bytes.Repeat([]byte{7}, 200))
	search := dhcpv4.OptGeneric(dhcpv4.OptionDNSDomainSearchList, bytes.Repeat([]byte{3, 'a', 'b', 'c'}, 25))
	dom := dhcpv4.OptDomainName("customers.isp.example.net")
	ntp := dhcpv4.OptNTPServers(net.IPv4(192, 0, 2, 123), net.IPv4(192, 0, 2, 124))
	kea := keaMany(t, 20, vendor, search, dom, ntp)
	isp := func(m *dhcpv4.DHCPv4) []byte {
		rep, _ := dhcpv4.FromBytes(kea(m))
		rep.BootFileName = "pxelinux.0"
		rep.ServerHostName = "boot.isp.example.net"
		return rep.ToBytes()
	}
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)), dhcpv4.WithRequestedOptions(
		dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer, dhcpv4.OptionDomainName, dhcpv4.OptionNTPServers)))
	got := r.serveRaw(isp)
	if len(got) != 1 {
		t.Fatalf("client got %d messages (counters %v), want the OFFER", len(got), r.p.Counters())
	}
	if len(got[0]) > 548 {
		t.Errorf("OFFER of %d bytes to a client without option 57 (548 at most)", len(got[0]))
	}
	wantOptions(t, "OFFER", got[0], map[byte][]byte{1: {255, 255, 255, 0}, 3: {100, 64, 0, 1}, 6: addrList(20),
		15: dom.Value.ToBytes(), 42: ntp.Value.ToBytes(), 119: search.Value.ToBytes()})
	view := clientView(t, got[0])
	for _, code := range []byte{43, 52} {
		if _, ok := view[code]; ok {
			t.Errorf("option %d in the OFFER", code)
		}
	}
	if m, err := dhcpv4.FromBytes(got[0]); err != nil || m.BootFileName != "pxelinux.0" || m.ServerHostName != "boot.isp.example.net" {
		t.Errorf("boot file and server name not the ISP's (%v)", err)
	}
	if n := r.p.Counters()["reply_options_truncated"]; n != 1 {
		t.Errorf("reply_options_truncated %d, want 1", n)
	}
}

// Options left out early fit again once a later, larger one is gone: a
// reply with 60 DNS and 60 NTP servers (240 bytes each) to a client
// without option 57 lost the requested 121, 26 and 43 on the way to
// leaving out the NTP list, which alone made it fit; the client routed by
// option 3 where the ISP's 121 said otherwise (RFC 3442 §2). Found by a
// trial against Kea and dhclient. Now only the NTP list is left out.
func TestReplyOptionsPutBack(t *testing.T) {
	r := newPRig(t)
	ntp := dhcpv4.OptGeneric(dhcpv4.OptionNTPServers, addrList(60))
	mtu := dhcpv4.OptGeneric(dhcpv4.OptionInterfaceMTU, []byte{0x05, 0xd4})
	vendor := dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{1, 6, 'a', 'c', 's', '.', 'e', 'x'})
	routes := dhcpv4.OptGeneric(dhcpv4.OptionClasslessStaticRoute, []byte{24, 10, 9, 8, 100, 64, 0, 1, 0, 100, 64, 0, 1})
	search := dhcpv4.OptGeneric(dhcpv4.OptionDNSDomainSearchList, []byte{3, 'i', 's', 'p', 0})
	dom := dhcpv4.OptDomainName("isp.example")
	kea := keaMany(t, 60, ntp, mtu, vendor, routes, search, dom)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)), dhcpv4.WithRequestedOptions(
		dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer, dhcpv4.OptionDomainName,
		dhcpv4.OptionDNSDomainSearchList, dhcpv4.OptionNTPServers, dhcpv4.OptionInterfaceMTU,
		dhcpv4.OptionClasslessStaticRoute, dhcpv4.OptionVendorSpecificInformation)))
	got := r.serveRaw(kea)
	if len(got) != 1 {
		t.Fatalf("client got %d messages (counters %v), want the OFFER", len(got), r.p.Counters())
	}
	if len(got[0]) > 548 {
		t.Errorf("OFFER of %d bytes to a client without option 57 (548 at most)", len(got[0]))
	}
	wantOptions(t, "OFFER", got[0], map[byte][]byte{6: addrList(60), 15: dom.Value.ToBytes(), 119: search.Value.ToBytes(),
		26: mtu.Value.ToBytes(), 121: routes.Value.ToBytes(), 43: vendor.Value.ToBytes()})
	if _, ok := clientView(t, got[0])[42]; ok {
		t.Error("the NTP list in the OFFER: it cannot fit with the DNS list")
	}
	if n := r.p.Counters()["reply_options_truncated"]; n != 1 {
		t.Errorf("reply_options_truncated %d, want 1", n)
	}
}

// A client may say it takes 1500 bytes (option 57), but the access port's
// MTU bounds every datagram sent on it: with a 1000-byte MTU, an ISP's
// 1100-byte answer was passed on as it was (dropped on the wire or by the
// client); now it fits 972 bytes, every option kept.
func TestReplyWithinAccessMTU(t *testing.T) {
	r := newPRig(t)
	r.p.SetPortMTU(accPort, 1000)
	vendor := dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, bytes.Repeat([]byte{7}, 100))
	isp := keaMany(t, 150, vendor)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)), dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(1500))))
	got := r.serveRaw(isp)
	if len(got) != 1 {
		t.Fatalf("client got %d messages (counters %v), want the OFFER", len(got), r.p.Counters())
	}
	if len(got[0])+28 > 1000 {
		t.Errorf("OFFER of %d bytes: an IP datagram of %d on a 1000-byte MTU", len(got[0]), len(got[0])+28)
	}
	wantOptions(t, "OFFER", got[0], map[byte][]byte{1: {255, 255, 255, 0}, 3: {100, 64, 0, 1}, 6: addrList(150), 43: vendor.Value.ToBytes()})
}

// iscFull548 answers like ISC dhcpd to a client without option 57 (its
// lab capture: iscFullReply): the options field filled to the 548 bytes
// the client takes, with no END, the rest of the DNS servers in the file
// field (option 52 = 1), its lease time alone (no 58/59), and its Option
// 82 echo past the 548 bytes (a relay strips it). vendor is set to its
// option 43.
func iscFull548(t *testing.T, vendor *[]byte) func(m *dhcpv4.DHCPv4) []byte {
	return func(m *dhcpv4.DHCPv4) []byte {
		rep := kea(t, time.Hour)(m)
		if rep == nil {
			return nil
		}
		op82 := rep.Options.Get(dhcpv4.OptionRelayAgentInformation)
		rep.Options.Del(dhcpv4.OptionRelayAgentInformation)
		raw := rep.ToBytes()
		out := append([]byte(nil), raw[:optionsStart]...)
		forEachOption(raw, func(code byte, data []byte) {
			out = append(out, code, byte(len(data)))
			out = append(out, data...)
		})
		dns := addrList(70)
		file := append([]byte{6, byte(len(dns) - 200)}, dns[200:]...)
		copy(out[fileStart:fileEnd], append(file, 255))
		out = append(out, 6, 200)
		out = append(out, dns[:200]...)
		out = append(out, 52, 1, 1)
		// Vendor data (43) fills the options field to 548 bytes.
		*vendor = bytes.Repeat([]byte{9}, 548-len(out)-2)
		out = append(out, 43, byte(len(*vendor)))
		out = append(out, *vendor...)
		if len(out) != 548 {
			t.Fatalf("ISC answer of %d bytes", len(out))
		}
		out = append(out, 82, byte(len(op82)))
		return append(out, op82...)
	}
}

// ispmux's rewrite is not size-neutral: for an answer ISC dhcpd sized to
// the 548 bytes a client without option 57 takes (iscFull548), stripping
// its Option 82 gained nothing (ISC leaves it out of its count), and
// relayDown added 58 and 59 (12 bytes) and the END the full options field
// lacked: a 561-byte OFFER. It fits 548 bytes now, every option kept.
func TestRelayDownGrowthFitted(t *testing.T) {
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	var vendor []byte
	got := r.serveRaw(iscFull548(t, &vendor))
	if len(got) != 1 {
		t.Fatalf("client got %d messages (counters %v), want the OFFER", len(got), r.p.Counters())
	}
	if len(got[0]) > 548 {
		t.Errorf("OFFER of %d bytes for ISC's 548 (a client without option 57 takes 548)", len(got[0]))
	}
	wantOptions(t, "OFFER", got[0], map[byte][]byte{6: addrList(70), 43: vendor})
}

// With more DNS servers than the 548 bytes hold even with option
// overload (200: 800 bytes), the list is cut (to the first servers, whole
// addresses) rather than the client left without an address; before, the
// 1000-byte OFFER went out as it was.
func TestReplyDNSListCut(t *testing.T) {
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	got := r.serveRaw(keaMany(t, 200))
	if len(got) != 1 {
		t.Fatalf("client got %d messages (counters %v), want the OFFER", len(got), r.p.Counters())
	}
	if len(got[0]) > 548 {
		t.Errorf("OFFER of %d bytes to a client without option 57 (548 at most)", len(got[0]))
	}
	dns := clientView(t, got[0])[6]
	if len(dns) < 4 || len(dns)%4 != 0 || !bytes.Equal(dns, addrList(200)[:len(dns)]) {
		t.Errorf("DNS servers %x: want the ISP's first ones", dns)
	}
	wantOptions(t, "OFFER", got[0], map[byte][]byte{1: {255, 255, 255, 0}, 3: {100, 64, 0, 1}})
	if n := r.p.Counters()["reply_options_truncated"]; n != 1 {
		t.Errorf("reply_options_truncated %d, want 1", n)
	}
}

// An access port whose MTU leaves less than a DHCP message's minimum (300
// bytes, the BOOTP size ispmux pads to) cannot carry the ISP's OFFER: it is
// refused with an event saying why and reply_too_big, not sent to be
// dropped (before, it went out, 300 bytes on a 320-byte MTU).
func TestReplyTooBigRefused(t *testing.T) {
	r := newPRig(t)
	r.p.SetPortMTU(accPort, 320)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	got := r.serveRaw(keaMany(t, 2))
	if len(got) != 0 || r.p.Counters()["reply_too_big"] != 1 {
		t.Fatalf("client got %d messages (counters %v), want none and reply_too_big", len(got), r.p.Counters())
	}
	wantRejectedNoTimeout(t, r.eventsAfterTimeout(), "the OFFER was refused as too big")
}

// An ACK refused as too big (the access MTU fell to 320 bytes between the
// OFFER and the REQUEST) is neither delivered nor bound, and the lease the
// ISP committed for it is released to its server, as the client would:
// ciaddr the address ACKed, the ISP's server identifier, the REQUEST's
// Option 82 (reply_too_big_released). Before, nothing was sent: the ISP
// held the address for a client that never saw it until the lease ran out.
// A renewal's too-big ACK releases nothing: the address is the binding the
// subscriber keeps.
func TestReplyTooBigAckReleased(t *testing.T) {
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	got := r.serve(kea(t, time.Minute))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("subscriber got %v, want the OFFER", got)
	}
	r.p.SetPortMTU(accPort, 320)
	req, _ := dhcpv4.NewRequestFromOffer(got[0])
	r.fromClient(req)
	var op82 []byte
	got = r.serve(func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		op82 = m.Options.Get(dhcpv4.OptionRelayAgentInformation)
		return kea(t, time.Minute)(m)
	})
	if len(got) != 0 || r.tab.isBound(s1MAC) || r.p.Counters()["reply_too_big"] != 1 {
		t.Fatalf("subscriber got %v, bound %v (counters %v); want nothing, not bound, reply_too_big", got, r.tab.isBound(s1MAC), r.p.Counters())
	}
	if _, err := r.store.Binding("acc0", 0, [6]byte(mac(s1))); err == nil {
		t.Error("a binding stored for an ACK the client never got")
	}
	up, _ := r.relayedTo()
	rel := up[ispSID]
	if rel == nil || rel.MessageType() != dhcpv4.MessageTypeRelease {
		t.Fatalf("the ISP's lease of the refused ACK not released: sent %v (counters %v)", up, r.p.Counters())
	}
	if !rel.ClientIPAddr.Equal(net.IPv4(100, 64, 0, 100)) || !rel.ServerIdentifier().Equal(net.IP(ispSID.AsSlice())) ||
		!rel.GatewayIPAddr.Equal(net.IP(giaddr.AsSlice())) || !bytes.Equal(rel.Options.Get(dhcpv4.OptionRelayAgentInformation), op82) {
		t.Errorf("RELEASE ciaddr %v server-id %v giaddr %v Option 82 %x; want 100.64.0.100, %v, %v, the REQUEST's %x",
			rel.ClientIPAddr, rel.ServerIdentifier(), rel.GatewayIPAddr, rel.Options.Get(dhcpv4.OptionRelayAgentInformation), ispSID, giaddr, op82)
	}
	if n := r.p.Counters()["reply_too_big_released"]; n != 1 {
		t.Errorf("reply_too_big_released %d, want 1", n)
	}

	// Bound, then a renewal (relayed: a one-minute lease) whose ACK no
	// longer fits: the binding is the subscriber's, nothing is released.
	r.p.SetPortMTU(accPort, 1500)
	r.fromClient(req)
	if got := r.serve(kea(t, time.Minute)); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("subscriber got %v, want the ACK", got)
	}
	r.p.SetPortMTU(accPort, 320)
	r.fromClient(renewOf(t, s1, netip.MustParseAddr("100.64.0.100")))
	if got := r.serve(kea(t, time.Minute)); len(got) != 0 {
		t.Fatalf("renewal: subscriber got %v, want nothing", got)
	}
	if up, _ := r.relayedTo(); len(up) != 0 {
		t.Errorf("renewal's too-big ACK: sent the ISP %v, the subscriber's own lease", up)
	}
	if c := r.p.Counters(); c["reply_too_big"] != 2 || c["reply_too_big_released"] != 1 || !r.tab.isBound(s1MAC) {
		t.Errorf("counters %v, bound %v; want reply_too_big 2, reply_too_big_released 1, still bound", c, r.tab.isBound(s1MAC))
	}
}

// An ACK refused as too big carrying the address another subscriber's
// installed binding holds at that ISP (a server that ACKed it twice)
// releases nothing: that RELEASE, naming this exchange's client, could
// free the other's lease at a server keying leases by client identifier,
// the same rule as for the ACKs bindAndAck refuses (releaseRefused).
// Before, releaseTooBig checked only the subscriber's own binding and
// sent it.
func TestReplyTooBigAckOfAnothersAddressNotReleased(t *testing.T) {
	r := newPRig(t)
	const s2 = "02:00:00:00:01:02"
	// Customer c-s1, which the fake ISP answers.
	if err := r.store.PutRegistration(subscribers.Registration{MAC: [6]byte(mac(s2)), CustomerID: "c-s1", ISP: "alpha", Source: "api"}); err != nil {
		t.Fatal(err)
	}
	if got := r.dora(s1, kea(t, time.Minute), nil); len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("s1 got %v, want the ACK", got)
	}
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s2))))
	got := r.serve(atAddr(kea(t, time.Minute), netip.MustParseAddr("100.64.0.101")))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("s2 got %v, want the OFFER", got)
	}
	r.p.SetPortMTU(accPort, 320)
	req, _ := dhcpv4.NewRequestFromOffer(got[0])
	r.fromClient(req)
	if got := r.serve(kea(t, time.Minute)); len(got) != 0 || r.p.Counters()["reply_too_big"] != 1 {
		t.Fatalf("s2 got %v (counters %v); want nothing, reply_too_big", got, r.p.Counters())
	}
	if up, _ := r.relayedTo(); len(up) != 0 {
		t.Errorf("sent the ISP %v: the RELEASE of %s, s1's address", up, s1Addr)
	}
	if !r.tab.isBound(s1MAC) {
		t.Error("s1 no longer bound")
	}
}

// FuzzFitReply: whatever an ISP's server answers, the reply ispmux sends
// is within the limit or not sent; a client reads it (options that do not
// overrun their fields), with the essential options as relayDown made
// them (the DNS server and router lists possibly cut to their first
// addresses), the message type in the options field, and the header's
// addresses unchanged.
func FuzzFitReply(f *testing.F) {
	d := discover(f)
	offer, _ := dhcpv4.NewReplyFromRequest(d, dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionDomainNameServer, addrList(120))),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, bytes.Repeat([]byte{1}, 200))),
		dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionRelayAgentInformation, Value: dhcpv4.OptionGeneric{Data: testRelay.encode()}}))
	f.Add(offer.ToBytes(), uint16(548))
	f.Add(offer.ToBytes(), uint16(700))
	f.Fuzz(func(t *testing.T, payload []byte, limit uint16) {
		if _, err := dhcpv4.FromBytes(payload); err != nil {
			return
		}
		b := relayDown(payload, ourSID, 10*time.Minute)
		out, how := fitReply(b, int(limit), []byte{1, 3, 6, 15})
		if out == nil {
			if how != fitImpossible {
				t.Fatalf("no reply, how %v", how)
			}
			return
		}
		if len(out) > max(int(limit), len(b)) || len(out) > int(limit) && how != fitAsIs {
			t.Fatalf("%d bytes for a limit of %d (%v)", len(out), limit, how)
		}
		if !bytes.Equal(out[:44], b[:44]) {
			t.Fatalf("header changed")
		}
		in, was := clientView(t, out), clientView(t, b)
		for code, v := range was {
			switch {
			case !essential(code):
			case code == 6 || code == 3:
				if len(in[code]) == 0 && len(v) > 0 || !bytes.HasPrefix(v, in[code]) {
					t.Fatalf("option %d: %x, want a prefix of %x", code, in[code], v)
				}
			case !bytes.Equal(in[code], v):
				t.Fatalf("option %d: %x, want %x", code, in[code], v)
			}
		}
		if _, ok := was[53]; ok {
			found := false
			for _, o := range rawOptions(t, out) {
				found = found || o[0][0] == 53
			}
			if !found {
				t.Fatal("message type not in the options field")
			}
		}
	})
}

// kea90 answers like kea() with 90 DNS servers besides (Kea never uses
// option overload): its ACK, and the options a binding stores from it,
// do not fit the 548 bytes of a client without option 57 as they are.
func kea90(t *testing.T) func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	return func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := kea(t, time.Hour)(m)
		if rep != nil && rep.MessageType() != dhcpv4.MessageTypeNak {
			rep.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionDomainNameServer, addrList(90)))
		}
		return rep
	}
}

// localACKsTo returns the DHCP messages sent to the subscriber so far.
func (r *prig) localACKsTo() [][]byte {
	var out [][]byte
	for _, s := range r.snd.take() {
		if s.port == accPort {
			out = append(out, dhcpPayloadOf(r.t, s.frame))
		}
	}
	return out
}

// ispmux's own ACK to a renewal (localACK, from the binding's stored
// options) is laid out to fit the client as the ISP's ACK was
// (fitReply), not given up: given up, a renewal before the ISP's T1 was
// relayed rather than answered (renewal_local_too_big), and the ISP
// silent past its T1 (an outage of its DHCP server), the renewal went
// unanswered though ispmux holds the binding: the client lost its
// address at the end of its short client lease.
func TestLocalRenewalAckFitted(t *testing.T) {
	r, _ := newSRig(t)
	got := r.dora(s1, kea90(t), nil)
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck || !r.tab.isBound(s1MAC) {
		t.Fatalf("got %v (counters %v), want the ACK and a binding", got, r.p.Counters())
	}
	r.p.committing.Wait()
	check := func(what string, sent [][]byte, req *dhcpv4.DHCPv4) {
		t.Helper()
		if len(sent) != 1 {
			t.Fatalf("%s: the subscriber was sent %d messages (counters %v), want ispmux's ACK", what, len(sent), r.p.Counters())
		}
		ack, err := dhcpv4.FromBytes(sent[0])
		if err != nil || ack.MessageType() != dhcpv4.MessageTypeAck || ack.TransactionID != req.TransactionID {
			t.Fatalf("%s: %v (%v), want an ACK to the renewal", what, ack, err)
		}
		if len(sent[0]) > 548 {
			t.Errorf("%s: ACK of %d bytes to a client without option 57 (548 at most)", what, len(sent[0]))
		}
		wantOptions(t, what, sent[0], map[byte][]byte{6: addrList(90)})
	}
	// Before the ISP's T1: answered by ispmux.
	req := renewing(t, s1, s1Addr)
	r.fromClient(req)
	check("renewal before T1", r.localACKsTo(), req)
	if c := r.p.Counters(); c["renewal_local"] != 1 || c["renewal_local_too_big"] != 0 {
		t.Errorf("counters %v, want renewal_local", c)
	}
	// Past it, the ISP silent: answered from the binding.
	b, _ := r.store.Binding("acc0", 0, [6]byte(mac(s1)))
	at := b.Expires.Add(-4 * time.Minute)
	r.p.now = func() time.Time { return at }
	req = renewing(t, s1, s1Addr)
	r.fromClient(req)
	if got := r.serve(func(*dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return nil }); len(got) != 0 {
		t.Fatalf("got %v before the timeout", got)
	}
	r.p.expire(at.Add(time.Second))
	r.p.notes.wait()
	check("renewal past T1, the ISP silent", r.localACKsTo(), req)
}

// fitReply runs on the one goroutine that handles every subscriber's
// DHCP frames, for each OFFER and ACK over the client's limit: it must
// not lay a reply out once per option left out and once per address cut
// from a long DNS server list (each a new message), only when the options
// left can fit. Before, the 200 DNS servers of TestReplyDNSListCut cost
// ~1,100 allocations (~300 KB, ~150 µs) per reply, and an answer with 300
// DNS servers and 90 empty options ~3,100 (over 1 ms).
func TestFitReplyCost(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  []dhcpv4.Option
		sname string
	}{
		{"200 DNS servers", []dhcpv4.Option{dhcpv4.OptGeneric(dhcpv4.OptionDomainNameServer, addrList(200))}, ""},
		{"300 DNS servers, 90 options, sname and file taken", func() []dhcpv4.Option {
			o := []dhcpv4.Option{dhcpv4.OptGeneric(dhcpv4.OptionDomainNameServer, addrList(300))}
			for c := 160; c < 250; c++ {
				o = append(o, dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(c), nil))
			}
			return o
		}(), "boot.isp.example.net"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := discover(t)
			rep, _ := dhcpv4.NewReplyFromRequest(d, dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ispSID.AsSlice()))),
				dhcpv4.WithLeaseTime(3600), dhcpv4.WithOption(dhcpv4.OptSubnetMask(net.IPv4Mask(255, 255, 255, 0))),
				dhcpv4.WithOption(dhcpv4.OptRouter(ispRouter)))
			for _, o := range tc.opts {
				rep.UpdateOption(o)
			}
			rep.ServerHostName, rep.BootFileName = tc.sname, tc.sname
			b := relayDown(rep.ToBytes(), ourSID, 10*time.Minute)
			out, how := fitReply(b, 548, nil)
			if out == nil || how != fitTruncated {
				t.Fatalf("fitReply of %d bytes: %v", len(b), how)
			}
			if n := testing.AllocsPerRun(10, func() { fitReply(b, 548, nil) }); n > 64 {
				t.Errorf("fitReply of a %d-byte reply to 548: %.0f allocations", len(b), n)
			}
		})
	}
}

// TestMostOptionBytesIsLayoutRoom: the bytes of options fitReply deems
// able to fit (mostOptionBytes) are the room layout fills (areaRoom, one
// reckoning for both): options needing exactly that many bytes are laid
// out within the limit, one byte more and they are not, with the file and
// sname fields free (options field, file and sname filled to their END)
// and with neither (the options field alone, without option 52).
func TestMostOptionBytesIsLayoutRoom(t *testing.T) {
	const limit = 548
	hdr := make([]byte, optionsStart)
	copy(hdr[236:], magicCookie[:])
	opt := func(code byte, n int) dhcpOpt { return dhcpOpt{code: code, data: bytes.Repeat([]byte{code}, n)} }
	for _, c := range []struct {
		free bool
		opts []dhcpOpt // need exactly mostOptionBytes; the last grows by one
	}{
		// 3 + 257 + 44 in the options field (304), 127 in file, 63 in sname.
		{true, []dhcpOpt{{code: optMessageType, data: []byte{5}}, opt(224, 255), opt(225, 42), opt(226, 125), opt(227, 61)}},
		// 3 + 257 + 47 and END: 548 bytes, no option 52.
		{false, []dhcpOpt{{code: optMessageType, data: []byte{5}}, opt(224, 255), opt(225, 45)}},
	} {
		need := 0
		for _, o := range c.opts {
			need += encodedLen(len(o.data))
		}
		if most := mostOptionBytes(limit, c.free, c.free); need != most {
			t.Fatalf("free %v: options of %d bytes, mostOptionBytes %d", c.free, need, most)
		}
		out := layout(hdr, c.opts, limit, c.free, c.free)
		if out == nil || len(out) > limit {
			t.Fatalf("free %v: %d bytes of options (mostOptionBytes) not laid out within %d: %d bytes", c.free, need, limit, len(out))
		}
		var got []byte
		forEachOptionAll(out, func(code byte, _ []byte) {
			if code != optOverload {
				got = append(got, code)
			}
		})
		if !bytes.Equal(got, []byte{optMessageType, 224, 225, 226, 227}[:len(c.opts)]) {
			t.Errorf("free %v: options laid out %v", c.free, got)
		}
		last := &c.opts[len(c.opts)-1]
		last.data = append(last.data, 0)
		if need+1 <= mostOptionBytes(limit, c.free, c.free) {
			t.Errorf("free %v: %d bytes still within mostOptionBytes", c.free, need+1)
		}
		if out := layout(hdr, c.opts, limit, c.free, c.free); out != nil {
			t.Errorf("free %v: options of %d bytes laid out within %d (%d bytes)", c.free, need+1, limit, len(out))
		}
	}
}
