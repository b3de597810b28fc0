package appliance

import (
	"net/netip"
	"time"

	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/dhcpproxy"
	"github.com/ispmux/ispmux/engine"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/portal"
	"github.com/ispmux/ispmux/registry"
)

// onboardingPools are the configured onboarding pools (the portal's
// namespace routes them back through ispmux).
func onboardingPools(cfg *configs.Config) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range cfg.Access {
		if a.Onboarding.Enabled {
			out = append(out, a.Onboarding.PoolPrefix)
		}
	}
	return out
}

// onboardingOf is the DHCP proxy's onboarding configuration of access a
// (nil: off on that circuit).
func onboardingOf(cfg *configs.Config, a configs.Access) *dhcpproxy.Onboarding {
	if !a.Onboarding.Enabled || !cfg.Portal.Enabled {
		return nil
	}
	o := a.Onboarding
	return &dhcpproxy.Onboarding{Pool: o.PoolPrefix, LeaseTime: o.LeaseTimeDur, MaxLeases: o.MaxLeases,
		DNS: cfg.Portal.Addr, CaptiveURI: cfg.Portal.CaptiveURI()}
}

// handoverHint is how long a device takes to move to its ISP after a
// choice on the portal: its next renewal (half its onboarding lease),
// NAKed, then a DORA: 10 s for the last two, as busybox udhcpc waits 3 s
// after a NAK (a trial: 18 s with a 20 s lease, where the page said 15).
func handoverHint(cfg *configs.Config) time.Duration {
	var longest time.Duration
	for _, a := range cfg.Access {
		if a.Onboarding.Enabled && a.Onboarding.LeaseTimeDur > longest {
			longest = a.Onboarding.LeaseTimeDur
		}
	}
	return longest/2 + 10*time.Second
}

// configureGarden makes the portal's link the walled garden's uplink and
// tells the datapath where the portal is.
func (a *Appliance) configureGarden(port int) error {
	p := a.cfg.Portal
	a.ctl.ConfigureISP(binding.GardenVRF, fib.Uplink{
		Port: uint8(port), MAC: mac48(a.ports[port].MAC),
		Addr: engine.IP4(a.portalNS.local), PrefixLen: p.LinkPrefix.Bits(),
		Gateway: engine.IP4(a.portalNS.gateway),
	})
	a.ctl.NameISP(binding.GardenVRF, "walled garden (portal link)")
	var routers []uint32
	for _, ac := range a.cfg.Access {
		if o := onboardingOf(a.cfg, ac); o != nil {
			routers = append(routers, engine.IP4(dhcpproxy.PoolRouter(o.Pool)))
		}
	}
	return a.state.SetGarden(&engine.Garden{PortalAddr: engine.IP4(p.Addr), Names: p.DNSNames, Routers: routers})
}

// newPortal builds the portal's web server.
func (a *Appliance) newPortal() (*portal.Server, error) {
	p := a.cfg.Portal
	isps := make([]portal.ISP, len(a.cfg.ISPs))
	for i, isp := range a.cfg.ISPs {
		isps[i] = portal.ISP{Name: isp.Name, DisplayName: isp.DisplayName, Description: isp.Description}
	}
	return portal.New(portal.Config{
		Hostname: p.Hostname, ISPs: isps, CertFile: p.TLSCert, KeyFile: p.TLSKey,
		HandoverHint: handoverHint(a.cfg), MoveHintNow: func() time.Duration { return moveHint(a.dhcp.LeaseMax(time.Now())) },
		Log: a.log.With("part", "portal"),
	}, portalDir{a}, a.ten)
}

// moveHint is how long a bound device takes to move to another ISP at
// most, its client lease at most leaseMax: it renews at half of it at the
// latest, then a DORA's few seconds (portal.Config.MoveHintNow).
func moveHint(leaseMax time.Duration) time.Duration { return leaseMax/2 + 5*time.Second }

// gardenedForSuspension reports whether e, the registration of a device
// holding an onboarding lease, is why it is in the garden: its customer
// suspended, the device not blocked (dhcpproxy's suspended_onboarding). It
// chose nothing: its ISP is the one that suspended it.
func gardenedForSuspension(e registry.Entry) bool { return e.Suspended() && !e.Blocked }

// portalDir tells the portal who is behind a connection. On ports 80
// and 443: the holder of that onboarding lease (the garden's addresses are
// ispmux's own, so one address is one device), with the ISP it chose if it
// already did, and why it is back in the garden if its handover to that
// ISP failed (dhcpproxy's onboarding fallback), or when the retry a claim
// again asked for is due. On a VRF's portal port (binding.PortalPort): the subscriber
// bound at that ISP with that address (the datapath sent it there,
// engine/portalpath.go), with the ISP it is moving to if the registry
// already says another.
type portalDir struct {
	a *Appliance
}

func (d portalDir) Lookup(local, remote netip.AddrPort) (portal.Subscriber, bool) {
	a := d.a
	if vrf, _, ok := binding.PortalVRF(local.Port()); ok {
		if int(vrf) >= len(a.cfg.ISPs) {
			return portal.Subscriber{}, false
		}
		b, ok := a.ctl.Holder(vrf, remote.Addr())
		if !ok {
			return portal.Subscriber{}, false
		}
		s := portal.Subscriber{MAC: b.MAC, Access: a.accessName(b.Port, b.VLAN), Circuit: a.circuitName(b.Port, b.VLAN),
			Addr: remote.Addr(), ISP: a.cfg.ISPs[vrf].Name}
		if l, ok := a.dhcp.Lease(b.Port, b.VLAN, b.MAC); ok {
			s.Expires, s.ClientLeaseEnd = l.Expires, l.ClientEnd
		}
		if e, ok := a.reg.Lookup(b.MAC); ok && !e.Blocked && e.ISP != s.ISP {
			s.Claimed, s.ClaimedCustomerID = e.ISP, e.CustomerID
		} else if ok {
			s.Fixed = e.Source == registry.SourceConfig
		}
		return s, true
	}
	l, ok := a.dhcp.OnboardingByAddr(remote.Addr())
	if !ok {
		return portal.Subscriber{}, false
	}
	s := portal.Subscriber{MAC: l.MAC, Access: l.Access, Circuit: a.circuitName(l.Port, l.VLAN), Addr: remote.Addr(), Expires: l.Expires}
	if e, ok := a.reg.Lookup(l.MAC); ok && gardenedForSuspension(e) {
		s.Suspended = e.ISP
	} else if ok && !e.Blocked {
		s.Claimed, s.ClaimedCustomerID = e.ISP, e.CustomerID
		if l.HandoverISP == e.ISP {
			s.HandoverFailed, s.Retry = handoverFailed(l.HandoverFailed), l.HandoverRetry
		}
	}
	return s, true
}

// RetryHandover asks the DHCP proxy to hand sub's device, back in the
// walled garden, over again at its next message (dhcpproxy's
// RetryHandover: bounded there, and a no-op unless it is back in the
// garden for a failed handover of its registration now); Lookup then
// gives the retry's time without the failure, until its outcome.
func (d portalDir) RetryHandover(sub portal.Subscriber) bool {
	_, ok := d.a.dhcp.RetryHandover(sub.MAC)
	return ok
}

// handoverFailed is the portal's word for why the DHCP proxy sent a
// device back to the walled garden ("": it did not).
func handoverFailed(why string) string {
	switch why {
	case dhcpproxy.HandoverRefused:
		return portal.HandoverRefused
	case dhcpproxy.HandoverUnanswered:
		return portal.HandoverUnanswered
	case dhcpproxy.HandoverFailedBeforeStart:
		return portal.HandoverNotTaken
	}
	return ""
}
