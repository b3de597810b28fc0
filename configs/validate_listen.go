package configs

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// The management listeners ([api] listen, [metrics] listen) bind in the
// appliance's own network namespace, on its management interface, which
// is not in the configuration. The configuration gives other addresses to
// things that are not there:
//
//   - the portal's address and its link's two addresses belong to the
//     portal, in the network namespace ispmux creates for it (its end of
//     the link is an AF_XDP port with no kernel address). A listener on
//     one fails at start ("bind: cannot assign requested address"), and
//     were the host to have the address too, the portal's hostname would
//     lead management clients to the host: refused here, by key.
//   - ispmux's own addresses on the data side (an access circuit's
//     gateway, an onboarding pool's router, an ISP uplink's address) are
//     answered by the datapath on AF_XDP ports, which carry no kernel
//     address (docs/DEPLOY.md), so a listener there fails too. But those
//     live in ispmux's VRFs, whose plans may overlap the management
//     network's: a management interface may have the same address, and a
//     listener on it then works. So they are not refused here: the check
//     of the host (appliance.ListenNotLocal, in check and run) finds that
//     the address is not the host's and names them (DataAddr).
//
// Whether an address is this host's at all cannot be known from the file.

// listenAddrs refuses a management listener on an address of the portal;
// after portal resolved them.
func (v *validator) listenAddrs() {
	p := &v.cfg.Portal
	if !p.Enabled {
		return
	}
	owners := map[netip.Addr]string{}
	if p.LinkPrefix.IsValid() {
		local := p.LinkPrefix.Addr().Next()
		owners[local] = "ispmux's end of the portal's link (portal.link), an AF_XDP port with no kernel address"
		owners[local.Next()] = "the portal's end of its link (portal.link), in the portal's own network namespace"
	}
	if p.Addr.IsValid() {
		owners[p.Addr] = "the portal's address (portal.address), which lives in the portal's own network namespace"
	}
	for _, l := range []struct{ key, listen, table string }{
		{"api.listen", v.cfg.API.Listen, "[api]"},
		{"metrics.listen", v.cfg.Metrics.Listen, "[metrics]"},
	} {
		if l.listen == "" || v.c.failed(l.key) {
			continue
		}
		a, ok := listenIP(l.listen)
		if !ok {
			continue // a name or a bad address: not resolved here, or reported by api() and metrics()
		}
		if o, ok := owners[a]; ok {
			v.errorf(l.key, "%q is %s: ispmux cannot listen there (run fails with \"bind: cannot assign requested address\"); give %s listen an address of the management interface (or 127.0.0.1)", l.listen, o, l.table)
		}
	}
}

// listenIP is the IP address of a listen address's host (unmapped, without
// its zone); false for a name or a malformed address.
func listenIP(listen string) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return netip.Addr{}, false
	}
	h, _, _ := strings.Cut(host, "%")
	a, err := netip.ParseAddr(h)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// DataAddr says what the configuration gives a to among ispmux's own
// addresses on the data side, which its datapath answers on AF_XDP ports
// and the kernel does not have: an access circuit's gateway, an onboarding
// pool's router, an ISP uplink's address; "" for none of them. (For a
// listen address this host lacks: why it cannot be listened on.)
func (c *Config) DataAddr(a netip.Addr) string {
	a = a.Unmap()
	for i, ac := range c.Access {
		if ac.Addr.IsValid() && ac.Addr == a {
			return fmt.Sprintf("access %s's gateway address (%s.address), which ispmux answers on the data port, not the kernel", ac.Name, indexKey("access", i))
		}
		if o := &ac.Onboarding; o.Enabled && o.PoolPrefix.IsValid() && o.Router() == a {
			return fmt.Sprintf("access %s's onboarding router (the first address of %s.onboarding.pool), which ispmux answers on the data port, not the kernel", ac.Name, indexKey("access", i))
		}
	}
	for i, isp := range c.ISPs {
		if isp.Prefix.IsValid() && isp.Prefix.Addr() == a {
			return fmt.Sprintf("isp %s's uplink address (%s.address), which ispmux answers on the uplink, not the kernel", isp.Name, indexKey("isp", i))
		}
	}
	return ""
}
