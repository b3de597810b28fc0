package appliance

import (
	"github.com/ispmux/ispmux/configs"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/metrics"
)

// metricsSource reads what /metrics exports, at scrape time, from the
// running parts (their own counters: nothing is added to the hot path).
func (a *Appliance) metricsSource() metrics.Source {
	return metrics.Funcs{
		ConfigFunc: a.configState,
		PortsFunc: func() []metrics.Port {
			ec := a.state.Counters()
			out := make([]metrics.Port, len(a.names))
			for i, n := range a.names {
				out[i].Name, out[i].Engine = n, ec[i]
				if i < len(a.ports) {
					var qs datapath.QueueStats
					for q := range a.ports[i].NumQueues() {
						qs.Add(a.ports[i].Queue(q).Stats())
					}
					out[i].Queue = qs
				}
			}
			return out
		},
		ISPsFunc: func() []metrics.ISP {
			dc := a.dhcp.ISPCounters()
			per := a.ctl.BindingsPerISP()
			hops := a.ctl.NextHops(a.ispIdx)
			counts := a.ten.Counts()
			out := make([]metrics.ISP, len(a.cfg.ISPs))
			for i, isp := range a.cfg.ISPs {
				m := metrics.ISP{Name: isp.Name, NextHopResolved: hops[i].MAC != 0}
				for _, c := range dc {
					if c.Name == isp.Name {
						m.DHCP = c
					}
				}
				n := per[uint8(isp.Index)]
				m.Bindings, m.StaticBindings = n.DHCP, n.Static
				m.Customers, m.Devices = counts[isp.Name].Customers, counts[isp.Name].Devices
				out[i] = m
			}
			return out
		},
		DHCPFunc: func() metrics.DHCP {
			ob := a.dhcp.OnboardingStats()
			return metrics.DHCP{Counters: a.dhcp.Counters(), Pending: a.dhcp.PendingTransactions(),
				PendingIntents: a.dhcp.PendingIntents(), Leases: a.dhcp.Leases(),
				OnboardingLeases: ob.Leases, OnboardingOffers: ob.Offers,
				MaxPending: a.dhcp.Limits().MaxPending, Registered: a.reg.Len(), MaxRegistered: a.cfg.Datapath.MACTableSize,
				MaxOnboarding: maxOnboarding(a.cfg)}
		},
		ControlFunc: a.ctl.Counters,
		StoreFunc:   a.store.CommitStats,
		WebhooksFunc: func() []metrics.WebhookSample {
			st := a.hooks.Status()
			out := make([]metrics.WebhookSample, len(st))
			for i, w := range st {
				out[i] = metrics.WebhookSample{ISP: w.ISP, Delivered: w.Delivered, Failures: w.Failures, Lag: w.Lag}
			}
			return out
		},
		PortalFunc: func() map[string]uint64 {
			if a.portal == nil {
				return nil
			}
			return a.portalStatus().Counters
		},
		APIFunc: func() metrics.API {
			r, l := a.api.RequestStats()
			return metrics.API{Requests: r, Latency: l, Connections: a.api.Connections(), ConnectionsRefused: a.api.ConnectionsRefused()}
		},
	}
}

// maxOnboarding is the onboarding cap in force: [portal] max_onboarding
// with the portal, 0 without (no device is onboarded).
func maxOnboarding(cfg *configs.Config) int {
	if !cfg.Portal.Enabled {
		return 0
	}
	return cfg.Portal.MaxOnboarding
}
