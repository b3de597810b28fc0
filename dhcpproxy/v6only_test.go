package dhcpproxy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// keaV6Only is keaT1 with RFC 8925's IPv6-only preferred option (108),
// as an ISP running an IPv6-mostly network gives to a client that asks.
func keaV6Only(t *testing.T) func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	return func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		rep := keaT1(t, time.Hour, 30*time.Minute)(m)
		if rep != nil {
			rep.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(optIPv6OnlyPreferred), []byte{0, 0, 7, 8}))
		}
		return rep
	}
}

// ispmux forwards IPv4 only (the datapath drops IPv6 frames:
// unsupported_ethertype). An ISP's option 108 (RFC 8925) tells a client
// that asked for it to give up its IPv4 address and use IPv6 alone: through
// ispmux it would be left with no connectivity at all. The option is
// never passed on: not in a relayed OFFER or ACK, not in ispmux's own ACK
// built from the stored binding.
func TestIPv6OnlyPreferredNotPassedOn(t *testing.T) {
	r, _ := newSRig(t)
	r.fromClient(discover(t, dhcpv4.WithHwAddr(mac(s1)),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionCode(dhcpv4.GenericOptionCode(optIPv6OnlyPreferred)))))
	got := r.serve(keaV6Only(t))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("got %v, want an OFFER", got)
	}
	if got[0].Options.Has(dhcpv4.GenericOptionCode(optIPv6OnlyPreferred)) {
		t.Errorf("OFFER to the subscriber carries option 108: %v", got[0])
	}
	req, _ := dhcpv4.NewRequestFromOffer(got[0])
	r.fromClient(req)
	got = r.serve(keaV6Only(t))
	if len(got) != 1 || got[0].MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("got %v, want an ACK", got)
	}
	if got[0].Options.Has(dhcpv4.GenericOptionCode(optIPv6OnlyPreferred)) {
		t.Errorf("ACK to the subscriber carries option 108: %v", got[0])
	}
	if got[0].Router() == nil {
		t.Errorf("ACK lost the ISP's other options: %v", got[0])
	}
	r.p.committing.Wait()
	// A renewal before the ISP's T1 is answered from the binding.
	r.fromClient(renewing(t, s1, s1Addr))
	sent := r.toPorts()
	if len(sent[accPort]) != 1 || len(sent[upPort]) != 0 {
		t.Fatalf("renewal: %d answers, %d relayed; want ispmux's own ACK", len(sent[accPort]), len(sent[upPort]))
	}
	local := sent[accPort][0]
	if local.MessageType() != dhcpv4.MessageTypeAck || local.Options.Has(dhcpv4.GenericOptionCode(optIPv6OnlyPreferred)) {
		t.Errorf("ispmux's own ACK: %v, want an ACK without option 108", local)
	}
}

// ispmux's own ACK to a renewal repeats the stored ACK's options, but not
// rapid commit (80, RFC 4039): it belongs to the ACK that answered a
// DISCOVER, not to one answering a REQUEST.
func TestLocalACKLeavesOutRapidCommit(t *testing.T) {
	req := renewing(t, s1, s1Addr).ToBytes()
	stored := []byte{optRapidCommit, 0, 3, 4, 100, 64, 0, 1}
	ack, err := dhcpv4.FromBytes(localACK(req, netip.MustParseAddr(s1Addr), stored, nil, ourSID, time.Minute, nil))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Options.Has(dhcpv4.OptionRapidCommit) || ack.Router() == nil {
		t.Errorf("local ACK: %v; want the router and no option 80", ack)
	}
}
