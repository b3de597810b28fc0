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
