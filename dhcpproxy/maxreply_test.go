package dhcpproxy

import (
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestMaxReply: maxReply reads option 57 as the IP datagram's size (less
// 28), like ISC dhcpd and dnsmasq; a client saying 576, or saying nothing
// (RFC 2131 §2's 576-octet datagram), takes a DHCP message of 548 bytes;
// 1500 gives 1472, more is capped at one Ethernet frame.
func TestMaxReply(t *testing.T) {
	for _, c := range []struct {
		opt57 []byte
		want  int
	}{
		{nil, 548},
		{[]byte{0x02, 0x40}, 548},  // 576
		{[]byte{0x05, 0xdc}, 1472}, // 1500
		{[]byte{0x23, 0x28}, 1472}, // 9000: one Ethernet frame
	} {
		m, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest))
		if err != nil {
			t.Fatal(err)
		}
		if c.opt57 != nil {
			m.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionMaximumDHCPMessageSize, c.opt57))
		}
		if got := maxReply(m.ToBytes()); got != c.want {
			t.Errorf("option 57 %x: maxReply %d, want %d", c.opt57, got, c.want)
		}
	}
}

// TestClientOptionReadsAsParser: what fitReply makes a reply fit for
// (options 55 and 57) is read by clientOption alone, for the ISP's answer
// (the transaction, begin) and ispmux's own (answerLocally), and it reads
// them as the parser does (dhcpv4.Options.Get): every instance in the
// options field, concatenated (RFC 3396). A repeated option 57 is then 4
// bytes, no size: the 548 every client takes.
func TestClientOptionReadsAsParser(t *testing.T) {
	m, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest))
	if err != nil {
		t.Fatal(err)
	}
	raw := m.ToBytes()
	for raw[len(raw)-1] == optPad {
		raw = raw[:len(raw)-1]
	}
	raw = raw[:len(raw)-1] // END, for the options after it
	raw = append(raw,
		optParamRequest, 3, 1, 3, 6,
		optMaxMessageSize, 2, 0x05, 0xdc,
		optParamRequest, 2, 15, 119,
		optMaxMessageSize, 2, 0x05, 0xdc,
		optEnd)
	parsed, err := dhcpv4.FromBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	prl := parsed.Options.Get(dhcpv4.OptionParameterRequestList)
	if got := requestList(raw); string(got) != string(prl) || len(got) != 5 {
		t.Errorf("requestList %v, parser %v", got, prl)
	}
	if got, want := maxReply(raw), maxReplyOf(parsed.Options.Get(dhcpv4.OptionMaximumDHCPMessageSize)); got != want || got != 548 {
		t.Errorf("maxReply of a repeated option 57: %d, parser's reading %d, want 548", got, want)
	}
}
