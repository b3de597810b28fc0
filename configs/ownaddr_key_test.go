package configs

import (
	"strings"
	"testing"
)

// TestDHCPServerOwnAddress: an [[isp]]'s dhcp_servers naming our own
// uplink address (isp address) was accepted, though ispmux would relay the
// subscribers' DHCP to itself and no subscriber of that ISP would ever get
// a lease. It is refused, as next_hop and a subscriber's ip are.
func TestDHCPServerOwnAddress(t *testing.T) {
	text := head + acc0 + isp0Bare + "dhcp_servers = [\"192.0.2.2\"] #!A\n"
	_, err := Parse("t.toml", []byte(text))
	want := expect(t, text, "A isp[0].dhcp_servers[0]: ")
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v, want %s…", err, want)
	}
}

// TestSyntaxErrorKey: a syntax error names its line and key. The key was
// the parser's LastKey, which is the enclosing table for a bad value
// ("datapath" for batch = 4s) and has no array index for a key of an
// [[isp]] entry ("isp.name": which ISP?), where every other error says
// "isp[1].name"; it is now the key written on the error's line.
func TestSyntaxErrorKey(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{base + "[datapath]\nqueues = 2\nbatch = 4s #!A\n", "A datapath.batch: "},
		{base + isp1 + "name = \"gamma\" #!A\n", "A isp[1].name: "},
	} {
		_, err := Parse("t.toml", []byte(c.text))
		want := expect(t, c.text, c.want)
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("got %v, want %s…", err, want)
		}
	}
}
