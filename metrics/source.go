// Package metrics exposes ispmux's counters to Prometheus.
//
// A [Collector] reads, at scrape time, the counters the appliance already
// keeps (the datapath's and the engine's per port, the DHCP proxy's per
// ISP, the store's group commit, the API's requests, the webhook workers'
// delivery state) through a [Source]. Nothing is added to the per-packet
// path: a scrape loads atomics and walks a few small tables.
//
// Names follow the Prometheus conventions (docs/OPERATIONS.md lists them):
// the ispmux_ prefix, base units (seconds, bytes), _total on counters, and
// labels of bounded cardinality only (port, isp, reason, outcome, kind,
// direction, decision, route, code): never a MAC, an address or a customer
// ID, so the size of /metrics does not grow with the subscribers.
//
// [Handler] serves a Collector (with the Go runtime's and the process's
// collectors) as GET /metrics; [ServeListener] runs it on [metrics] listen with the
// API's rule: loopback, or TLS, or insecure = true.
package metrics

import (
	"github.com/ispmux/ispmux/api"
	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/dhcpproxy"
	"github.com/ispmux/ispmux/engine"
	"github.com/ispmux/ispmux/subscribers"
	"time"
)

// Source is what the appliance gives the collector. Every method is called
// on every scrape, possibly from several scrapes at once, and must be
// cheap: read counters, do not scan the store. [Funcs] implements it from
// functions.
type Source interface {
	// Ports returns each data port's counters.
	Ports() []Port
	// ISPs returns each configured ISP's counters and counts.
	ISPs() []ISP
	// DHCP returns the DHCP proxy's global state.
	DHCP() DHCP
	// Control returns the control plane's counters.
	Control() engine.ControlCounters
	// Store returns the store's group commit statistics.
	Store() subscribers.CommitStats
	// API returns the API's request statistics (zero when the API is
	// not served).
	API() API
	// Webhooks returns the webhook delivery state per ISP (nil when no
	// ISP has a webhook).
	Webhooks() []WebhookSample
	// Portal returns the captive portal's counters by name (nil when the
	// portal is off).
	Portal() map[string]uint64
	// Config returns the state of the configuration file's reloads.
	Config() Config
}

// Config is the state of the configuration file's reloads (SIGHUP).
type Config struct {
	// LastReloadOK: the last reload applied the file (true at start,
	// before any reload); false: it was refused (errors in the file, or
	// a change it could not apply), and the running configuration is
	// not the file's.
	LastReloadOK bool
	// LastReloadPartial: the last reload applied the file in part (its
	// subscriber entries, not some file it names or static subscriber);
	// LastReloadOK is false then too.
	LastReloadPartial bool
	// LastSuccess is when the configuration was last read and applied
	// (the start, or the last reload that was not refused).
	LastSuccess time.Time
	// RestartPending: the file, as last read, has changes only a
	// restart applies.
	RestartPending bool
}

// Port is one data port's counters, summed over its queues and workers.
type Port struct {
	Name string
	// Queue is the datapath's counters (AF_XDP sockets). Its TxFull and
	// NoFrame count, by egress port, the frames that Drops counts as
	// tx_full and no_tx_frame by ingress port.
	Queue datapath.QueueStats
	// Engine is the forwarding engine's counters; Engine.Drops counts the
	// frames received on this port and dropped, by reason.
	Engine engine.PortCounters
}

// ISP is one configured ISP.
type ISP struct {
	Name string
	// DHCP is the proxy's statistics of this ISP (Name is the ISP's).
	DHCP dhcpproxy.ISPCounters
	// Bindings and StaticBindings count the subscribers installed
	// (engine.Control.BindingsPerISP): DHCP leases and static-IP
	// subscribers.
	Bindings, StaticBindings int
	// Customers and Devices are the ISP's registered customers and
	// devices (registrations).
	Customers, Devices int
	// NextHopResolved is whether the ISP's router's MAC is known
	// (without it nothing reaches the ISP).
	NextHopResolved bool
}

// DHCP is the proxy's global state.
type DHCP struct {
	// Counters are dhcpproxy.Proxy.Counters(): its decisions by name (a
	// fixed set of names). events_suppressed is exported on its own.
	Counters map[string]uint64
	// Pending is the number of transactions waiting for an ISP
	// (dhcpproxy.Proxy.PendingTransactions).
	Pending int
	// PendingIntents is the number of messages to ISPs (RELEASE,
	// DECLINE) recorded and not yet sent.
	PendingIntents int
	// Leases is the number of DHCP leases held.
	Leases int
	// OnboardingLeases and OnboardingOffers are the onboarding leases
	// held and offers outstanding (devices in the walled garden).
	OnboardingLeases, OnboardingOffers int
	// The caps the figures above run into, so that an alert can fire
	// before: MaxPending ([dhcp] max_pending), MaxOnboarding ([portal]
	// max_onboarding, 0 without the portal); Registered is every device
	// record (of any source, the operator's blocks of MACs of no ISP
	// included), MaxRegistered its cap ([datapath] mac_table_size).
	MaxPending, MaxOnboarding, Registered, MaxRegistered int
}

// API is the management API's request statistics (api.Server).
type API struct {
	Requests    []api.RequestCount
	Latency     []api.RouteLatency
	Connections int
	// ConnectionsRefused counts the connections refused, past their
	// source's share (api.LimitListener): answered 503 and closed.
	ConnectionsRefused uint64
}

// WebhookSample is one ISP's webhook delivery state.
type WebhookSample struct {
	ISP string
	// Delivered counts the events the ISP's receiver acknowledged.
	Delivered uint64
	// Failures counts the delivery attempts that failed (an error, a
	// timeout or a non-2xx answer).
	Failures uint64
	// Lag is the number of the ISP's events not yet acknowledged.
	Lag int
}

// WebhookSource is what the webhook manager implements for [Funcs].
type WebhookSource interface {
	WebhookStatus() []WebhookSample
}

// Funcs is a [Source] made of functions; a nil function contributes
// nothing (its metrics are absent, or zero for the gauges of DHCP).
type Funcs struct {
	PortsFunc    func() []Port
	ISPsFunc     func() []ISP
	DHCPFunc     func() DHCP
	ControlFunc  func() engine.ControlCounters
	StoreFunc    func() subscribers.CommitStats
	APIFunc      func() API
	WebhooksFunc func() []WebhookSample
	PortalFunc   func() map[string]uint64
	ConfigFunc   func() Config
}

// Config calls ConfigFunc.
func (f Funcs) Config() Config { return call(f.ConfigFunc) }

// Ports calls PortsFunc.
func (f Funcs) Ports() []Port { return call(f.PortsFunc) }

// ISPs calls ISPsFunc.
func (f Funcs) ISPs() []ISP { return call(f.ISPsFunc) }

// DHCP calls DHCPFunc.
func (f Funcs) DHCP() DHCP { return call(f.DHCPFunc) }

// Control calls ControlFunc.
func (f Funcs) Control() engine.ControlCounters { return call(f.ControlFunc) }

// Store calls StoreFunc.
func (f Funcs) Store() subscribers.CommitStats { return call(f.StoreFunc) }

// Portal calls PortalFunc.
func (f Funcs) Portal() map[string]uint64 { return call(f.PortalFunc) }

// API calls APIFunc.
func (f Funcs) API() API { return call(f.APIFunc) }

// Webhooks calls WebhooksFunc.
func (f Funcs) Webhooks() []WebhookSample { return call(f.WebhooksFunc) }

func call[T any](f func() T) T {
	var zero T
	if f == nil {
		return zero
	}
	return f()
}

// reasonName is a drop reason's label value.
func reasonName(r int) string { return classifier.Reason(r).String() }
