package metrics

import (
	"slices"
	"sort"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/dhcpproxy"
	"github.com/ispmux/ispmux/engine"
	"github.com/ispmux/ispmux/internal/asynclog"
	"github.com/ispmux/ispmux/internal/histo"
)

// Collector is a prometheus.Collector reading a Source at scrape time.
type Collector struct {
	src Source
}

// New returns a collector of src.
func New(src Source) *Collector { return &Collector{src: src} }

// names are the metrics' names, in the order of their descriptions.
var names []string

func desc(name, help string, labels ...string) *prometheus.Desc {
	names = append(names, name)
	return prometheus.NewDesc(name, help, labels, nil)
}

// The metrics. docs/OPERATIONS.md says what each means and which to alert on.
var (
	// Ports.
	portRxFrames = desc("ispmux_port_received_frames_total", "Frames received on the data port (AF_XDP), all queues.", "port")
	portRxBytes  = desc("ispmux_port_received_bytes_total", "Bytes received on the data port.", "port")
	portTxFrames = desc("ispmux_port_transmitted_frames_total", "Frames sent out of the data port.", "port")
	portTxBytes  = desc("ispmux_port_transmitted_bytes_total", "Bytes sent out of the data port.", "port")
	portDrops    = desc("ispmux_port_drops_total", "Frames received on the port and dropped, by reason (the classifier's reasons: unknown_mac, spoofed_source, no_next_hop, punt_queue_full, tx_full, ...).", "port", "reason")
	portTxDrops  = desc("ispmux_port_transmit_drops_total", "Frames that could not be sent out of this (egress) port: reason tx_full (TX ring full) or no_frame (no free UMEM frame). The same frames are in ispmux_port_drops_total by ingress port.", "port", "reason")
	portErrors   = desc("ispmux_port_errors_total", "Failed kernel calls (sendto, poll) on the port's AF_XDP sockets.", "port")
	portDown     = desc("ispmux_port_down", "1 while the last kernel call on one of the port's queues failed (interface down or gone).", "port")
	portFwd      = desc("ispmux_port_forwarded_frames_total", "Frames received on the port and forwarded: direction up (subscriber to ISP) or down (ISP to subscriber).", "port", "direction")
	portFast     = desc("ispmux_port_fastpath_forwarded_frames_total", "Frames received on the port and forwarded by the XDP fast path (a part of ispmux_port_forwarded_frames_total; in no rx/tx frame count, which are the AF_XDP sockets').", "port", "direction")
	portARP      = desc("ispmux_port_arp_replies_total", "ARP requests received on the port and answered in place.", "port")
	portEcho     = desc("ispmux_port_echo_replies_total", "Pings to ispmux's own addresses received on the port and answered in place.", "port")
	portDNS      = desc("ispmux_port_garden_dns_answers_total", "DNS queries of walled-garden subscribers received on the port and answered in place.", "port")
	portResets   = desc("ispmux_port_garden_resets_total", "TCP connections of walled-garden subscribers to addresses other than the portal (HTTPS, and every port but HTTP's), reset in place.", "port")
	portRedirect = desc("ispmux_port_garden_http_redirects_total", "HTTP requests of walled-garden subscribers to addresses other than the portal, answered in place with a redirect to the portal.", "port")
	portHandshk  = desc("ispmux_port_garden_http_handshake_segments_total", "The other TCP segments of the walled garden's HTTP redirects (ispmux_port_garden_http_redirects_total), sent in place on the port: SYN-ACKs and the ACKs of the clients' FINs.", "port")
	portICMP     = desc("ispmux_port_icmp_errors_sent_total", "ICMP errors sent for frames received on the port: time exceeded (TTL expired) and fragmentation needed (DF over the egress MTU).", "port")
	portICMPLim  = desc("ispmux_port_icmp_errors_limited_total", "ICMP errors not sent for frames received on the port, by the budget that refused them: subscriber (one subscriber's share: a subscriber sending TTL-1 or DF-too-big packets faster than any traceroute or path MTU discovery) or port (the port's budget, per worker: burst 50, 100 a second).", "port", "budget")
	portPunts    = desc("ispmux_port_punted_frames_total", "Frames received on the port and copied to the control plane (DHCP, ARP from ISP routers).", "port")

	// Per ISP.
	ispRelayed   = desc("ispmux_dhcp_relayed_total", "Subscribers' DHCP messages (DISCOVER, REQUEST, INFORM; retransmissions included) relayed to the ISP's servers.", "isp")
	ispOutcomes  = desc("ispmux_dhcp_exchanges_total", "Subscribers' DHCP messages by what became of them: offer, ack (bound or renewed), nak (the ISP refused), timeout (the ISP did not answer), rejected (refused by ispmux: suspended, unusable address, ISP unreachable, ...), blocked, rate_limited, misplaced (refused for where the MAC was seen: the wrong access, or bound or onboarding on another).", "isp", "outcome")
	ispAnswer    = desc("ispmux_dhcp_isp_answer_seconds", "Time from relaying a subscriber's message to the ISP's answer (OFFER, ACK, NAK).", "isp")
	ispReqAck    = desc("ispmux_dhcp_request_ack_seconds", "Time from a subscriber's REQUEST to its ACK delivered: the ISP's answer, the durable commit and the install.", "isp")
	ispBindings  = desc("ispmux_bindings", "Subscribers bound (installed in the forwarding tables), by kind: dhcp (leases) or static.", "isp", "kind")
	ispCustomers = desc("ispmux_customers", "Customers the ISP has registered.", "isp")
	ispDevices   = desc("ispmux_devices", "Devices (subscriber MACs) registered to the ISP.", "isp")
	ispNextHop   = desc("ispmux_isp_next_hop_resolved", "1 when the MAC of the ISP's router is known; 0: nothing reaches the ISP.", "isp")

	// DHCP, global.
	dhcpDecisions  = desc("ispmux_dhcp_decisions_total", "The DHCP proxy's counters by name (relayed_discover, offer, ack, unknown_subscriber, rate_limited, timeout, store_error, pending_full, inject_full, ...; see docs/OPERATIONS.md).", "decision")
	dhcpPending    = desc("ispmux_dhcp_pending_transactions", "DHCP transactions waiting for an ISP's answer.")
	onbLeases      = desc("ispmux_onboarding_leases", "Onboarding leases held: devices without a device record, in the walled garden.")
	onbOffers      = desc("ispmux_onboarding_offers", "Onboarding offers outstanding (counted against the onboarding caps).")
	dhcpPendingMax = desc("ispmux_dhcp_pending_transactions_max", "The most DHCP transactions that may wait for ISPs at once ([dhcp] max_pending): past it, new DISCOVERs and REQUESTs are dropped (pending_full).")
	onbMax         = desc("ispmux_onboarding_max", "The most onboarding leases and offers held at once ([portal] max_onboarding; 0 without the portal).")
	regDevices     = desc("ispmux_registered_devices", "Device records of every source: every ISP's devices, the configuration's [[subscriber]] entries and the operator's blocks of MACs no ISP has.")
	regDevicesMax  = desc("ispmux_registered_devices_max", "The most device records the box holds ([datapath] mac_table_size): past it, attaches and claims are refused.")
	portalRequests = desc("ispmux_portal_requests_total", "Captive portal requests and claims by outcome.", "outcome")
	dhcpIntents    = desc("ispmux_dhcp_pending_intents", "Messages to ISPs (RELEASE, DECLINE at a binding's end; RELEASE of the lease of an ACK ispmux did not bind) recorded and not yet sent.")
	dhcpLeases     = desc("ispmux_dhcp_leases", "DHCP leases held.")
	dhcpSuppressed = desc("ispmux_events_suppressed_total", "Refusal events not recorded: over the per-ISP event budget, or too many writes in flight (summed up in suppressed events).")

	// Control plane.
	ctlARPSent     = desc("ispmux_arp_requests_sent_total", "ARP requests sent to resolve the ISPs' routers.")
	ctlARPLearned  = desc("ispmux_arp_learned_total", "ARP answers from ISP routers learned.")
	ctlPuntUnknown = desc("ispmux_punts_unhandled_total", "Punted frames the control plane had no use for.")

	// Store.
	storeCommit = desc("ispmux_store_commit_seconds", "Time of each write of the store's group commit (a bbolt transaction or a binding journal append), fsync included (a DHCP ACK waits for one).")
	storeWrites = desc("ispmux_store_writes_total", "Writes committed by the store's group commit; divided by ispmux_store_commit_seconds_count, the writes that share one commit's fsyncs.")
	storeErrs   = desc("ispmux_store_write_errors_total", "Store writes that failed (a full disk, an I/O error, a damaged file): their change was not made. DHCP's are also store_error decisions (ACKs withheld); the API's are errors of their requests, an import's of its lines.")
	storeWaits  = desc("ispmux_store_commit_window_waits_total", "Times the group commit's leader waited a commit window (2 ms, under concurrent writes only) for more writes before committing.")
	storeHeld   = desc("ispmux_event_log_held_events", "Events the event log keeps past [appliance] event_retention because an ISP's webhook receiver has not acknowledged them yet (at most 4× the retention in all): a receiver that is down or slow while the log fills.")
	storeSync   = desc("ispmux_store_journal_sync_info", "1, labelled with how the binding journal's appends are made durable: io_uring (the waiting goroutine holds no Go P), fdatasync (the system call: io_uring refused, or dropped after the kernel could not run an fsync through it) or none (no fsync: tests only).", "via")

	// The configuration file.
	cfgReloadOK      = desc("ispmux_config_last_reload_successful", "1 when the last reload (SIGHUP) applied the configuration file, or none was made since the start; 0: it was refused (errors in the file, or a change it could not apply: the log says which), or applied in part (ispmux_config_last_reload_partial 1), and the running configuration is not all the file's.")
	cfgReloadPartial = desc("ispmux_config_last_reload_partial", "1 when the last reload applied the configuration file in part: its subscriber entries and settings, not what its error names (a token file, certificate or webhook secret that did not load, whose one in force stays; a static subscriber it could not bind; ispmux ctl status says which); ispmux_config_last_reload_successful is 0 then too.")
	cfgReloadTime    = desc("ispmux_config_last_reload_success_timestamp_seconds", "When the configuration was last applied (the start, or the last reload not refused), Unix seconds.")
	cfgRestartNeeded = desc("ispmux_config_restart_pending", "1 when the configuration file, as last read, has changes only a restart applies (ispmux ctl status names the sections).")

	// The log.
	logDropped = desc("ispmux_log_dropped_lines_total", "Log lines dropped because the log's reader (journald, a pipe) fell behind: ispmux queues its log and never waits for the reader.")

	// API.
	apiRequests = desc("ispmux_api_requests_total", "Management API requests by route (the route's pattern, or other) and HTTP status code.", "route", "code")
	apiDuration = desc("ispmux_api_request_duration_seconds", "Time to serve a management API request, by route (an event stream's is its whole life).", "route")
	apiConns    = desc("ispmux_api_connections", "Open management API connections.")
	apiRefused  = desc("ispmux_api_connections_refused_total", "Management API connections refused, past their source address's share of max_connections: answered 503 and closed (closed at once while 64 refusals are being answered).")

	// Webhooks.
	whDelivered = desc("ispmux_webhook_deliveries_total", "Events the ISP's webhook receiver acknowledged.", "isp")
	whFailures  = desc("ispmux_webhook_failures_total", "Webhook delivery attempts that failed (error, timeout or non-2xx).", "isp")
	whLag       = desc("ispmux_webhook_lag_events", "The ISP's events not yet acknowledged by its webhook receiver.", "isp")

	allDescs = []*prometheus.Desc{
		portRxFrames, portRxBytes, portTxFrames, portTxBytes, portDrops, portTxDrops, portErrors, portDown, portFwd, portFast,
		portARP, portEcho, portICMP, portICMPLim, portPunts,
		ispRelayed, ispOutcomes, ispAnswer, ispReqAck, ispBindings, ispCustomers, ispDevices, ispNextHop,
		dhcpDecisions, dhcpPending, dhcpIntents, dhcpLeases, dhcpSuppressed, onbLeases, onbOffers, portalRequests,
		dhcpPendingMax, onbMax, regDevices, regDevicesMax,
		portDNS, portResets, portRedirect, portHandshk,
		ctlARPSent, ctlARPLearned, ctlPuntUnknown,
		storeCommit, storeWrites, storeErrs, storeWaits, storeSync, storeHeld, logDropped,
		cfgReloadOK, cfgReloadPartial, cfgReloadTime, cfgRestartNeeded,
		apiRequests, apiDuration, apiConns, apiRefused,
		whDelivered, whFailures, whLag,
	}
)

// suppressedCounter is the proxy counter exported as
// ispmux_events_suppressed_total rather than as a decision.
const suppressedCounter = "events_suppressed"

// knownDecisions are the DHCP proxy's counter names, sorted, exported
// from the first scrape on.
var knownDecisions = dhcpproxy.CounterNames()

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect reads the source.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.collectPorts(ch)
	c.collectISPs(ch)
	c.collectDHCP(ch)
	c.collectRest(ch)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func boolGauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v bool, labels ...string) {
	var f float64
	if v {
		f = 1
	}
	gauge(ch, d, f, labels...)
}

func histogram(ch chan<- prometheus.Metric, d *prometheus.Desc, s histo.Snapshot, labels ...string) {
	ch <- prometheus.MustNewConstHistogram(d, s.Count, s.Sum, s.Buckets(), labels...)
}

func (c *Collector) collectPorts(ch chan<- prometheus.Metric) {
	for _, p := range c.src.Ports() {
		q, e := &p.Queue, &p.Engine
		counter(ch, portRxFrames, q.RxFrames, p.Name)
		counter(ch, portRxBytes, q.RxBytes, p.Name)
		counter(ch, portTxFrames, q.TxFrames, p.Name)
		counter(ch, portTxBytes, q.TxBytes, p.Name)
		counter(ch, portTxDrops, q.TxFull, p.Name, "tx_full")
		counter(ch, portTxDrops, q.NoFrame, p.Name, "no_frame")
		counter(ch, portErrors, q.Errors, p.Name)
		boolGauge(ch, portDown, q.Down, p.Name)
		// Every reason, zero included: rate() sees the first drop.
		for r := 1; r < int(classifier.NumReasons); r++ {
			counter(ch, portDrops, e.Drops[r], p.Name, reasonName(r))
		}
		counter(ch, portFwd, e.Up, p.Name, "up")
		counter(ch, portFwd, e.Down, p.Name, "down")
		counter(ch, portFast, e.FastUp, p.Name, "up")
		counter(ch, portFast, e.FastDown, p.Name, "down")
		counter(ch, portARP, e.ARPReplies, p.Name)
		counter(ch, portEcho, e.EchoReplies, p.Name)
		counter(ch, portDNS, e.DNSAnswers, p.Name)
		counter(ch, portResets, e.GardenResets, p.Name)
		counter(ch, portRedirect, e.GardenRedirects, p.Name)
		counter(ch, portHandshk, e.GardenHandshake, p.Name)
		counter(ch, portICMP, e.ICMPErrors, p.Name)
		for b := range engine.NumICMPBudgets {
			counter(ch, portICMPLim, e.ICMPLimited[b], p.Name, b.String())
		}
		counter(ch, portPunts, e.Punts, p.Name)
	}
}

func (c *Collector) collectISPs(ch chan<- prometheus.Metric) {
	for _, isp := range c.src.ISPs() {
		n := isp.Name
		d := &isp.DHCP
		counter(ch, ispRelayed, d.Relayed, n)
		for o := range dhcpproxy.NumOutcomes {
			counter(ch, ispOutcomes, d.Outcomes[o], n, o.String())
		}
		histogram(ch, ispAnswer, d.Answer, n)
		histogram(ch, ispReqAck, d.RequestAck, n)
		gauge(ch, ispBindings, float64(isp.Bindings), n, "dhcp")
		gauge(ch, ispBindings, float64(isp.StaticBindings), n, "static")
		gauge(ch, ispCustomers, float64(isp.Customers), n)
		gauge(ch, ispDevices, float64(isp.Devices), n)
		boolGauge(ch, ispNextHop, isp.NextHopResolved, n)
	}
}

func (c *Collector) collectDHCP(ch chan<- prometheus.Metric) {
	d := c.src.DHCP()
	// Every known decision, zero included (a counter appears in
	// d.Counters at its first count only): rate() sees the first one.
	names := append(make([]string, 0, len(knownDecisions)+len(d.Counters)), knownDecisions...)
	for k := range d.Counters {
		if _, known := slices.BinarySearch(knownDecisions, k); k != suppressedCounter && !known {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		counter(ch, dhcpDecisions, d.Counters[k], k)
	}
	counter(ch, dhcpSuppressed, d.Counters[suppressedCounter])
	gauge(ch, dhcpPending, float64(d.Pending))
	gauge(ch, dhcpIntents, float64(d.PendingIntents))
	gauge(ch, dhcpLeases, float64(d.Leases))
	gauge(ch, onbLeases, float64(d.OnboardingLeases))
	gauge(ch, onbOffers, float64(d.OnboardingOffers))
	gauge(ch, dhcpPendingMax, float64(d.MaxPending))
	gauge(ch, onbMax, float64(d.MaxOnboarding))
	gauge(ch, regDevices, float64(d.Registered))
	gauge(ch, regDevicesMax, float64(d.MaxRegistered))
	if pc := c.src.Portal(); pc != nil {
		names := make([]string, 0, len(pc))
		for k := range pc {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			counter(ch, portalRequests, pc[k], k)
		}
	}
}

func (c *Collector) collectRest(ch chan<- prometheus.Metric) {
	ctl := c.src.Control()
	counter(ch, ctlARPSent, ctl.ARPSent)
	counter(ch, ctlARPLearned, ctl.ARPLearned)
	counter(ch, ctlPuntUnknown, ctl.PuntUnhandled)

	counter(ch, logDropped, asynclog.Dropped())

	if cf := c.src.Config(); !cf.LastSuccess.IsZero() {
		boolGauge(ch, cfgReloadOK, cf.LastReloadOK)
		boolGauge(ch, cfgReloadPartial, cf.LastReloadPartial)
		gauge(ch, cfgReloadTime, float64(cf.LastSuccess.UnixNano())/1e9)
		boolGauge(ch, cfgRestartNeeded, cf.RestartPending)
	}

	st := c.src.Store()
	histogram(ch, storeCommit, st.Latency)
	counter(ch, storeWrites, st.Writes)
	counter(ch, storeWaits, st.WindowWaits)
	counter(ch, storeErrs, st.WriteErrors)
	gauge(ch, storeHeld, float64(st.HeldEvents))
	if st.JournalSync != "" {
		gauge(ch, storeSync, 1, st.JournalSync)
	}

	a := c.src.API()
	for _, r := range a.Requests {
		counter(ch, apiRequests, r.Count, r.Route, strconv.Itoa(r.Code))
	}
	for _, l := range a.Latency {
		histogram(ch, apiDuration, l.Latency, l.Route)
	}
	gauge(ch, apiConns, float64(a.Connections))
	counter(ch, apiRefused, a.ConnectionsRefused)

	for _, w := range c.src.Webhooks() {
		counter(ch, whDelivered, w.Delivered, w.ISP)
		counter(ch, whFailures, w.Failures, w.ISP)
		gauge(ch, whLag, float64(w.Lag), w.ISP)
	}
}

// Names returns the name of every metric the collector exports.
func Names() []string { return append([]string(nil), names...) }
