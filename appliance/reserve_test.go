package appliance

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ispmux/ispmux/engine"
)

// The proxy's tables are the engine's Control, and dhcpproxy reserves room
// for the bindings it restores only through an optional interface
// (dhcpproxy's reserver: Reserve(n int)), which a type assertion checks at
// run time: a Control without that method would make a start's restore
// grow the tables in steps, silently. This fails to compile instead.
var _ interface{ Reserve(n int) } = (*engine.Control)(nil)

// TestReloadReservesStatics: a reload that adds static subscribers makes
// room for them in the MAC table and the FIB at once (engine.Control.Reserve),
// one growth each, where binding them one at a time grew each table in steps
// (4096 entries doubled to 8192, 16384, then 32768 for these 20,000: three
// new slot arrays, each filled under the engine's lock). Fails without the
// reload's Reserve (3 growths each).
func TestReloadReservesStatics(t *testing.T) {
	const n = 20_000
	base := "version = 1\n[[access]]\ninterface = \"acc0\"\naddress = \"100.64.0.1\"\n" +
		"[[isp]]\nname = \"alpha\"\nuplink = \"upa\"\naddress = \"192.0.2.2/24\"\nnext_hop = \"192.0.2.1\"\ndhcp_servers = [\"192.0.2.1\"]\n"
	a := reloadRigFor(t, parseTestConfig(t, base), 1<<15)
	var b strings.Builder
	b.WriteString(base)
	for i := range n {
		fmt.Fprintf(&b, "[[subscriber]]\nmac = \"02:00:00:%02x:%02x:%02x\"\nisp = \"alpha\"\nip = \"100.65.%d.%d\"\n",
			i>>16&0xff, i>>8&0xff, i&0xff, i>>8, i&0xff)
	}
	if err := a.Reload(parseTestConfig(t, b.String())); err != nil {
		t.Fatalf("reload: %v", err)
	}
	mac, fib := a.state.MAC, a.state.FIB
	if mac.Len() != n || fib.Len() != n {
		t.Fatalf("after the reload: %d MAC table entries, %d FIB entries; want %d each", mac.Len(), fib.Len(), n)
	}
	if mac.Grows() != 1 || fib.Grows() != 1 {
		t.Fatalf("the reload binding %d statics grew the MAC table %d times, the FIB %d times; want once each (reserved)", n, mac.Grows(), fib.Grows())
	}
}
