package appliance

import (
	"sort"
	"strconv"
	"time"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/ctlsock"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/engine"
	"github.com/ispmux/ispmux/internal/binding"
)

func controlStatus(c engine.ControlCounters) ctlsock.ControlStatus {
	return ctlsock.ControlStatus{ARPSent: c.ARPSent, ARPLearned: c.ARPLearned, PuntUnhandled: c.PuntUnhandled}
}

// Status returns the appliance's counters and tables.
func (a *Appliance) Status() ctlsock.Status { return a.status(ctlsock.StatusBindingsMax) }

// status is Status with the bindings listed only if there are at most
// maxBindings of them (0: never; the counts stay O(ISPs)).
func (a *Appliance) status(maxBindings int) ctlsock.Status {
	total := 0
	for vrf, n := range a.ctl.BindingsPerISP() {
		if vrf != binding.GardenVRF { // onboarding leases: listed below
			total += n.DHCP + n.Static
		}
	}
	var bs []engine.Binding
	if total <= maxBindings {
		bs = a.ctl.Bindings()
	}
	st := ctlsock.Status{Uptime: time.Since(a.started).Round(time.Second).String(), Control: controlStatus(a.ctl.Counters()),
		DHCP: a.dhcp.Counters(), Leases: a.dhcp.Leases(), PendingIntents: a.dhcp.PendingIntents(), Bindings: make([]ctlsock.BindingStatus, 0, len(bs)),
		BindingsTotal: total, BindingsOmitted: total > maxBindings}
	if pr := a.restartPending.Load(); pr != nil && len(pr.sections) > 0 {
		st.RestartPending, st.RestartPendingSince = pr.sections, pr.at.UTC().Format(time.RFC3339Nano)
	}
	a.reloadStatus(&st)
	ec := a.state.Counters()
	links := a.linkStatuses()
	for i, name := range a.names {
		ps := ctlsock.PortStatus{Name: name, Drops: map[string]uint64{}}
		var qs datapath.QueueStats
		if i < len(a.ports) {
			for q := range a.ports[i].NumQueues() {
				qs.Add(a.ports[i].Queue(q).Stats())
			}
			ls := a.ports[i].LinkStats()
			ps.Reopens, ps.ReopenFailures, ps.Ifindex = ls.Reopens, ls.Failures, a.ports[i].Index()
		}
		if i < len(links) {
			ps.Link, ps.LinkError, ps.LinkFlaps = links[i].State, links[i].LastErr, links[i].Flaps
		}
		ps.RxFrames, ps.RxBytes, ps.TxFrames, ps.TxBytes = qs.RxFrames, qs.RxBytes, qs.TxFrames, qs.TxBytes
		ps.TxFull, ps.NoFrame, ps.Errors, ps.Down = qs.TxFull, qs.NoFrame, qs.Errors, qs.Down
		portCounters(&ps, &ec[i])
		for _, d := range a.state.LastFrom(i) {
			ps.LastDrops = append(ps.LastDrops, ctlsock.LastDrop{Reason: d.Reason.String(), MAC: engine.MACString(d.MAC), At: d.At.UTC().Format(time.RFC3339Nano)})
		}
		st.Ports = append(st.Ports, ps)
	}
	hops := a.ctl.NextHops(a.ispIdx)
	for i, isp := range a.cfg.ISPs {
		is := ctlsock.ISPStatus{Name: isp.Name, NextHop: isp.NextHop, State: hops[i].State}
		if hops[i].MAC != 0 {
			is.MAC = engine.MACString(hops[i].MAC)
		}
		st.ISPs = append(st.ISPs, is)
	}
	for _, b := range bs {
		if b.ISP == binding.GardenVRF {
			continue // onboarding leases: below
		}
		bst := ctlsock.BindingStatus{
			MAC: engine.MACString(b.MAC), Access: a.accessName(b.Port, b.VLAN), VLAN: b.VLAN,
			ISP: a.cfg.ISPs[b.ISP].Name, IP: b.IP.String(), Static: b.Static,
		}
		if l, ok := a.dhcp.Lease(b.Port, b.VLAN, b.MAC); ok && !b.Static {
			bst.Expires = l.Expires.UTC().Format(time.RFC3339)
			if l.ServerID.IsValid() {
				bst.ServerID = l.ServerID.String()
			}
		}
		st.Bindings = append(st.Bindings, bst)
	}
	sort.Slice(st.Bindings, func(i, j int) bool { return st.Bindings[i].MAC < st.Bindings[j].MAC })
	st.Onboarding = []ctlsock.OnboardingStatus{}
	for _, l := range a.dhcp.OnboardingLeases() {
		o := ctlsock.OnboardingStatus{MAC: engine.MACString(l.MAC), Access: l.Access, IP: l.IP.String(),
			Expires: l.Expires.UTC().Format(time.RFC3339)}
		if e, ok := a.reg.Lookup(l.MAC); ok && gardenedForSuspension(e) {
			o.Suspended = e.ISP // a trial read "chosen: alpha"
		} else if ok {
			o.Chosen = e.ISP
			if l.HandoverISP == e.ISP {
				o.HandoverFailed, o.HandoverRetry = l.HandoverFailed, rfc3339(l.HandoverRetry)
			}
		}
		st.Onboarding = append(st.Onboarding, o)
	}
	st.Handovers = []ctlsock.HandoverStatus{}
	for _, h := range a.dhcp.Handovers(ctlsock.StatusBindingsMax) {
		hs := ctlsock.HandoverStatus{MAC: engine.MACString(h.MAC), Access: h.Access, ISP: h.ISP, CustomerID: h.CustomerID,
			HeldUntil: rfc3339(h.HeldUntil), SilentSince: rfc3339(h.SilentSince), Failed: h.Failed}
		st.Handovers = append(st.Handovers, hs)
	}
	if a.portal != nil {
		st.Portal = a.portalStatus()
	}
	return st
}

// rfc3339 is t in UTC as RFC 3339, "" for the zero time.
func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// portalStatus is the portal's state: its link's next hop and its
// counters, with the onboarding figures of the DHCP proxy.
func (a *Appliance) portalStatus() *ctlsock.PortalStatus {
	p := &ctlsock.PortalStatus{Hostname: a.cfg.Portal.Hostname, Address: a.cfg.Portal.Addr.String(), Counters: map[string]uint64{}}
	if hops := a.ctl.NextHops([]uint8{binding.GardenVRF}); len(hops) == 1 {
		p.NextHop = hops[0].State
	}
	ps := a.portal.Stats()
	for k, v := range map[string]uint64{
		"pages": ps.Pages, "redirects": ps.Redirects, "insecure_refused": ps.InsecureRefused, "api": ps.API,
		"claims_ok": ps.ClaimsOK, "claims_refused": ps.ClaimsRefused, "claims_rate_limited": ps.ClaimsRateLimited,
		"claims_failed": ps.ClaimsFailed, "cross_origin": ps.CrossOrigin, "bad_token": ps.BadToken,
		"unknown_source": ps.UnknownSource, "busy": ps.Busy, "conns_refused": ps.ConnsRefused,
	} {
		p.Counters[k] = v
	}
	return p
}

// circuitName names the circuit of port and vlan, "interface/VLAN" (the
// DHCP proxy's circuit): the portal's claims limit new claimants per
// circuit (tenants.ClaimLimits), and unlike accessName it tells a port's
// VLANs apart when no [[access]] entry matches.
func (a *Appliance) circuitName(port uint8, vlan uint16) string {
	return a.names[port] + "/" + strconv.Itoa(int(vlan))
}

// accessName is the name of the [[access]] entry on port and vlan (the
// interface's name if none matches).
func (a *Appliance) accessName(port uint8, vlan uint16) string {
	for _, ac := range a.cfg.Access {
		if ac.Interface == a.names[port] && uint16(ac.VLAN) == vlan {
			return ac.Name
		}
	}
	return a.names[port]
}

// reloadStatus sets st's fields of the last reload: when, and a reload
// refused or applied in part, its error and where in the file
// (reloadOutcome.text).
func (a *Appliance) reloadStatus(st *ctlsock.Status) {
	if o := a.lastReload.Load(); o != nil {
		st.LastReloadAt = o.at.UTC().Format(time.RFC3339Nano)
		if o.err != "" {
			st.ReloadRefused, st.ReloadRefusedAt, st.ReloadPartial = o.text(), st.LastReloadAt, o.partial
		}
	}
}

// portCounters fills ps's engine counters from c: forwarded, answered in
// place, punted, dropped (by reason, those > 0), and the ICMP errors sent
// and refused by each budget (every budget, 0 included: a script reads
// the key before the first refusal).
func portCounters(ps *ctlsock.PortStatus, c *engine.PortCounters) {
	ps.FwdUp, ps.FwdDown, ps.ARPReplies, ps.Punts = c.Up, c.Down, c.ARPReplies, c.Punts
	ps.Echo = c.EchoReplies
	ps.FastUp, ps.FastDown = c.FastUp, c.FastDown
	if ps.Drops == nil {
		ps.Drops = map[string]uint64{}
	}
	for r, n := range c.Drops {
		if n > 0 {
			ps.Drops[classifier.Reason(r).String()] = n
		}
	}
	ps.ICMPErrors = c.ICMPErrors
	ps.ICMPLimited = make(map[string]uint64, engine.NumICMPBudgets)
	for b := range engine.NumICMPBudgets {
		ps.ICMPLimited[b.String()] = c.ICMPLimited[b]
	}
}
