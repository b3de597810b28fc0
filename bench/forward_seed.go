package bench

import (
	"context"
	"net/netip"
	"strconv"

	"github.com/ispmux/ispmux/subscribers"
)

// Bindings of the benchmark's sources in ispmux: static [[subscriber]]
// entries up to staticMax sources (README: the supported maximum of a
// configuration file), beyond that what a deployment of that size has —
// devices registered through the API with a DHCP binding each, restored
// from the store at start. Either way every source is a bound (MAC,
// address) in the datapath's tables, with anti-spoofing.
const (
	BindingsStatic = "static"
	BindingsStore  = "store"
	staticMax      = 100_000
)

// bindingsFor is how sweep point n's sources are bound for mode (auto,
// static or store).
func bindingsFor(mode string, n int) string {
	switch mode {
	case BindingsStatic, BindingsStore:
		return mode
	}
	if n <= staticMax {
		return BindingsStatic
	}
	return BindingsStore
}

// seedForwardStore writes the n benchmark sources into the store at path
// (seedStore): a customer and a device (source "api") per source at its
// ISP (round-robin over isps), and a 24-hour DHCP binding on access with
// its address, as bench scale seeds its "dhcp" points. forwardSource
// numbers the sources in MAC order, the store's key order.
func seedForwardStore(ctx context.Context, path string, n int, isps []string, access string, progress func(string, int)) error {
	return seedStore(ctx, path, n, func(k int) seedSub {
		mac, ip := forwardSource(k)
		return seedSub{MAC: subscribers.MAC(mac), IP: netip.AddrFrom4(ip), ISP: isps[k%len(isps)], Customer: "f" + strconv.Itoa(k)}
	}, access, true, false, progress)
}
