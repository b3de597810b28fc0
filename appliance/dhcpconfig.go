package appliance

import (
	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/dhcpproxy"
	"github.com/ispmux/ispmux/engine"
)

// The DHCP proxy's configuration and the static subscribers' bindings, as
// the appliance builds them from the TOML configuration at a start and a
// reload.

// staticBindings returns the bindings of the static subscribers (those
// with an address and not blocked), keyed by access port, VLAN and MAC.
func staticBindings(access []configs.Access, subs []configs.Subscriber, idx map[string]int) map[uint64]engine.Binding {
	out := make(map[uint64]engine.Binding)
	for _, s := range subs {
		if !s.Addr.IsValid() || s.Blocked {
			continue
		}
		ac := access[s.AccessIndex]
		b := engine.Binding{
			Port: uint8(idx[ac.Interface]), VLAN: uint16(ac.VLAN), MAC: engine.MAC48(s.HWAddr),
			ISP: uint8(s.ISPIndex), IP: s.Addr, Static: true,
		}
		out[classifier.Key(b.Port, b.VLAN, b.MAC)] = b
	}
	return out
}

// staticMACs returns the MACs of the subscribers with a configured address.
func staticMACs(subs []configs.Subscriber) []uint64 {
	var out []uint64
	for _, s := range subs {
		if s.Addr.IsValid() {
			out = append(out, engine.MAC48(s.HWAddr))
		}
	}
	return out
}

// dhcpLimits is d, the [dhcp] table, as the proxy's limits.
func dhcpLimits(d configs.DHCP) dhcpproxy.Limits {
	return dhcpproxy.Limits{
		Timeout: d.TimeoutDur, MaxPending: d.MaxPending, MACRate: d.MACRate, MACBurst: d.MACBurst,
		CircuitRate: d.CircuitRate, CircuitBurst: d.CircuitBurst, MaxBindingsPerCircuit: d.MaxBindingsPerCircuit,
		ClientLeaseMax: d.ClientLeaseMaxDur,
	}
}

// setDHCPBudget keeps the datapath's budget of each subscriber's DHCP
// above the proxy's own per-MAC limit in d, which decides (and says so in
// events).
func setDHCPBudget(ctl *engine.Control, d configs.DHCP) {
	ctl.SetDHCPBudget(2*float64(d.MACRate), 2*float64(d.MACBurst))
}

func (a *Appliance) dhcpConfig(idx map[string]int) dhcpproxy.Config {
	c := dhcpproxy.Config{Limits: dhcpLimits(a.cfg.DHCP), MaxOnboarding: a.cfg.Portal.MaxOnboarding}
	for _, ac := range a.cfg.Access {
		pi := idx[ac.Interface]
		c.Circuits = append(c.Circuits, dhcpproxy.Circuit{
			Name: ac.Name, Interface: ac.Interface, Port: uint8(pi), VLAN: uint16(ac.VLAN),
			MAC: mac48(a.ports[pi].MAC), Addr: ac.Addr, Onboarding: onboardingOf(a.cfg, ac), MTU: ifMTU(ac.Interface),
		})
	}
	for _, isp := range a.cfg.ISPs {
		pi := idx[isp.Uplink]
		c.ISPs = append(c.ISPs, dhcpproxy.ISP{
			Index: uint8(isp.Index), Name: isp.Name, Port: uint8(pi), VLAN: uint16(isp.VLAN),
			MAC: mac48(a.ports[pi].MAC), Addr: isp.Prefix.Addr(), Servers: isp.DHCPServerAddrs,
			CircuitID: isp.CircuitID, ServerIDOverride: isp.ServerIDOverride,
			LinkSelection: isp.LinkSelectionAddr, VSS: isp.VSS, MTU: ifMTU(isp.Uplink),
		})
	}
	return c
}
