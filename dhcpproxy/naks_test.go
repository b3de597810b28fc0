package dhcpproxy

import (
	"net"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestNakAddrOfNoHostAddress: the NAK to a REQUEST goes to its ciaddr only
// where that is a unicast host address; every other ciaddr (this network
// 0/8, loopback, link-local, multicast, reserved 240/4, the broadcast, an
// IPv6 or no address) gets the broadcast. 0/8 and 240/4 went to the
// ciaddr (netip's IsGlobalUnicast lets them through).
func TestNakAddrOfNoHostAddress(t *testing.T) {
	bcast := netip.MustParseAddr("255.255.255.255")
	for _, c := range []struct {
		ci   string
		host bool
	}{
		{"100.64.0.10", true}, {"10.0.0.1", true}, {"192.0.2.200", true}, {"1.0.0.0", true}, {"223.255.255.254", true},
		{"0.0.0.0", false}, {"0.0.0.1", false}, {"0.1.2.3", false}, {"0.255.255.255", false},
		{"127.0.0.1", false}, {"127.1.2.3", false},
		{"169.254.1.1", false},
		{"224.0.0.1", false}, {"239.255.255.250", false},
		{"240.0.0.1", false}, {"250.1.2.3", false}, {"255.255.255.254", false}, {"255.255.255.255", false},
		{"::ffff:100.64.0.10", false}, {"2001:db8::1", false}, {"", false},
	} {
		var ci netip.Addr
		if c.ci != "" {
			ci = netip.MustParseAddr(c.ci)
		}
		want := bcast
		if c.host {
			want = ci
		}
		if got := nakAddrOf(ci); got != want {
			t.Errorf("nakAddrOf(%q) = %v, want %v", c.ci, got, want)
		}
		// nakAddr reads the REQUEST's ciaddr field (4 bytes: the IPv6
		// cases have no wire form).
		if !ci.Is4() && !ci.Is4In6() {
			continue
		}
		m, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IP(ci.Unmap().AsSlice())))
		if err != nil {
			t.Fatal(err)
		}
		if c.ci == "::ffff:100.64.0.10" {
			want = ci.Unmap() // on the wire it is 100.64.0.10
		}
		if got := nakAddr(m); got != want {
			t.Errorf("nakAddr of a REQUEST with ciaddr %s = %v, want %v", c.ci, got, want)
		}
	}
}
