package dhcpproxy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/subscribers"
)

// An ISP server whose server identifier is not the address ispmux sends
// to (dhcp_servers): an ISC dhcpd with a `server-identifier` statement, or
// one whose identifier is its loopback/service address. Its ACK came from
// 192.0.2.1 (the binding's Relay), naming 198.51.100.7. A RENEWING
// REQUEST must go to the server that granted the lease only (RFC 2131
// §4.4.5, as TestRenewalToLeaseServerOnly): it went to every server, the
// other (authoritative) one NAKed it and that NAK ended the binding.
func TestRenewalToGrantingServerWhenSidIsNotItsAddress(t *testing.T) {
	r, second := twoServers(t, false)
	sid := netip.MustParseAddr("198.51.100.7")
	r.bindVia(ispSID, sid)
	ip := netip.MustParseAddr("100.64.0.101")
	r.fromClientUnicast(renewing(t, s1, ip.String()), ip)
	up, _ := r.relayedTo()
	if up[ispSID] == nil {
		t.Fatalf("renewal not relayed to the granting server %v (relayed to %v)", ispSID, up)
	}
	if m := up[second]; m != nil {
		t.Errorf("renewal of a lease granted by %v (identifier %v) also relayed to %v", ispSID, sid, second)
		r.fromServerAt(second, serverReply(m, dhcpv4.MessageTypeNak, second, second))
	}
	r.fromServerAt(ispSID, serverReply(up[ispSID], dhcpv4.MessageTypeAck, ispSID, sid))
	if !r.tab.isBound(s1MAC) {
		t.Errorf("binding granted by %v ended by the NAK of %v, which does not hold it", ispSID, second)
	}
}

// Rapid commit (RFC 4039): a client's DISCOVER with option 80, answered
// by a server that supports it (dnsmasq dhcp-rapid-commit, Kea) with an
// ACK carrying option 80. The subscriber gets the ACK and is bound.
func TestRapidCommitACKToDiscover(t *testing.T) {
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)), dhcpv4.WithGeneric(dhcpv4.OptionRapidCommit, nil)))
	got := r.serve(func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := serverReply(m, dhcpv4.MessageTypeAck, ispSID, ispSID)
		rep.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRapidCommit, nil))
		return rep
	})
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck || !got[0].Options.Has(dhcpv4.OptionRapidCommit) {
		t.Fatalf("subscriber got %v (counters %v)", got, r.p.Counters())
	}
	if !r.tab.isBound(s1MAC) {
		t.Errorf("not bound after a rapid-commit ACK (counters %v)", r.p.Counters())
	}
	// Renewal of it (unicast): answered.
	ip := netip.MustParseAddr("100.64.0.101")
	r.fromClientUnicast(renewing(t, s1, ip.String()), ip)
	got = r.serve(func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 { return serverReply(m, dhcpv4.MessageTypeAck, ispSID, ispSID) })
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("renewal after rapid commit: subscriber got %v (counters %v)", got, r.p.Counters())
	}
}

// iscFullReply lays out server answer rep as ISC dhcpd 4.4.3 (Debian 12
// isc-dhcp-server) does when its options overflow the 576 bytes a client
// without option 57 can take (captured in the lab, 90 DNS servers): the
// options field filled to the last byte with no END option after Option
// 82, option 52 = 1, and the rest of a split option (RFC 3396) in the
// file field, which holds the END.
func iscFullReply(rep *dhcpv4.DHCPv4) []byte {
	raw := rep.ToBytes()
	out := append([]byte(nil), raw[:optionsStart]...)
	var dns []byte
	for i := range 70 {
		dns = append(dns, 198, 51, 100, byte(i+1))
	}
	fileOpts := append([]byte{optDNS, byte(len(dns) - 255)}, dns[255:]...)
	fileOpts = append(fileOpts, optEnd)
	copy(out[fileStart:fileEnd], make([]byte, fileEnd-fileStart))
	copy(out[fileStart:], fileOpts)
	forEachOption(raw, func(code byte, data []byte) {
		if code == optRelayAgentInfo {
			return
		}
		out = append(out, code, byte(len(data)))
		out = append(out, data...)
	})
	out = append(out, optDNS, 255)
	out = append(out, dns[:255]...)
	out = append(out, optOverload, 1)
	out = append(out, 1)
	op82 := rep.Options.Get(dhcpv4.OptionRelayAgentInformation)
	out = append(out, optRelayAgentInfo, byte(len(op82)))
	return append(out, op82...) // no END: ISC's options field is full
}

const optDNS = 6

// ISC dhcpd's answers with more options than fit 576 bytes (option
// overload, the options field full and no END in it: iscFullReply) were
// dropped as server_malformed (dhcpv4.FromBytes: "unexpected EOF") and the
// subscriber timed out, with a timeout event saying the ISP did not answer.
// Seen in the lab with dhcpd -4 and dhclient (90 DNS servers configured).
// The subscriber should get the OFFER and ACK with the ISP's options.
func TestOverloadedWithoutEnd(t *testing.T) {
	r := newPRig(t)
	send := func(rep *dhcpv4.DHCPv4) []*dhcpv4.DHCPv4 {
		r.p.HandleFrame(upPort, fib.UDPFrame(upMAC, gwMAC, 0, ispSID, giaddr, 67, 67, iscFullReply(rep)))
		r.p.committing.Wait()
		_, toClient := r.relayedTo()
		return toClient
	}
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	up, _ := r.relayedTo()
	if up[ispSID] == nil {
		t.Fatalf("DISCOVER not relayed")
	}
	got := send(serverReply(up[ispSID], dhcpv4.MessageTypeOffer, ispSID, ispSID))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("subscriber got %v, want ISC dhcpd's OFFER (counters %v)", got, r.p.Counters())
	}
	if dns := got[0].Options.Get(dhcpv4.OptionDomainNameServer); len(dns) != 255 || !got[0].Options.Has(dhcpv4.OptionOptionOverload) {
		t.Errorf("OFFER carries %d bytes of option 6 in its options field, want the ISP's 255 (and option 52)", len(dns))
	}
	req, _ := dhcpv4.NewRequestFromOffer(got[0])
	r.fromClient(req)
	up, _ = r.relayedTo()
	got = send(serverReply(up[ispSID], dhcpv4.MessageTypeAck, ispSID, ispSID))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck || !r.tab.isBound(s1MAC) {
		t.Fatalf("subscriber got %v, want ISC dhcpd's ACK and a binding (counters %v)", got, r.p.Counters())
	}
}

// An ISP server that answers without echoing Option 82 (or with another
// one) has its answer dropped (option82_mismatch), and the only event is
// "timeout ... no answer from the ISP", which docs/ISP-SERVERS.md defines
// as the ISP not answering (unknown subscriber, no subnet): the operator
// is sent to look at the ISP's classes and subnets, not at its Option 82
// echo. Like an OFFER without a lease time (TestOfferWithoutLeaseNoSilenceTimeout),
// a refused answer should be no silence.
func TestNoOption82EchoIsNoSilence(t *testing.T) {
	r := newPRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1))))
	got := r.serve(func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := kea(t, time.Minute)(m)
		rep.Options.Del(dhcpv4.OptionRelayAgentInformation)
		return rep
	})
	if len(got) != 0 {
		t.Fatalf("subscriber got %v from an answer without Option 82", got)
	}
	if r.p.Counters()["option82_mismatch"] != 1 {
		t.Errorf("not counted: %v", r.p.Counters())
	}
	for _, e := range r.eventsAfterTimeout() {
		t.Logf("event %s: %s", e.Kind, e.Reason)
		if e.Kind == subscribers.EventTimeout {
			t.Errorf("timeout event (%q) though the ISP answered, without Option 82", e.Reason)
		}
	}
}
