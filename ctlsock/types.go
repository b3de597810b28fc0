// Package ctlsock is the appliance's control socket: a unix socket in
// state_dir (mode 0600, root's only, reachable from any network namespace
// through the file system) that serves the running appliance's status, its
// event log, a consistent backup of its store and, as the operator without
// a token, the whole tenant API (/v1/...); and the client functions that
// read it (`ispmux ctl`, the demo, the tests). The appliance assembles the
// Status; this package owns the wire format.
package ctlsock

import "time"

// Status is what the control socket reports.
// StatusBindingsMax is the most bindings a status lists one by one.
const StatusBindingsMax = 10000

type Status struct {
	Uptime string `json:"uptime"`
	// RestartPending names what the configuration file says that only a
	// restart applies (sections that differ from the running ones), as
	// the last reload (at RestartPendingSince) read it; empty: nothing.
	RestartPending      []string `json:"restart_pending,omitempty"`
	RestartPendingSince string   `json:"restart_pending_since,omitempty"` // RFC 3339
	// ReloadRefused is the error of the last reload (SIGHUP) when it was
	// refused, at ReloadRefusedAt (RFC 3339): the running configuration
	// is not the file's (RestartPending is then what the last reload
	// that read the file saw), then a line "at FILE:LINE: KEY" for each
	// file the configuration names that does not load, as check names
	// it. Empty: the last reload applied the file, or none was made.
	ReloadRefused   string `json:"reload_refused,omitempty"`
	ReloadRefusedAt string `json:"reload_refused_at,omitempty"`
	// LastReloadAt (RFC 3339) is when the last reload was made, applied
	// or not; empty: none since the start.
	LastReloadAt string `json:"last_reload_at,omitempty"`
	// ReloadPartial: that reload applied the subscriber entries but not
	// every file the configuration names (ReloadRefused says which).
	ReloadPartial bool         `json:"reload_partial,omitempty"`
	Ports         []PortStatus `json:"ports"`
	ISPs          []ISPStatus  `json:"isps"`
	// Bindings lists every binding when there are at most
	// StatusBindingsMax of them; above, it is empty, BindingsOmitted is
	// set and `ctl bindings` pages them (a status at a million
	// subscribers must not be a million-line answer). BindingsTotal is
	// always the number of bindings installed.
	Bindings        []BindingStatus `json:"bindings"` // [] when none
	BindingsTotal   int             `json:"bindings_total"`
	BindingsOmitted bool            `json:"bindings_omitted,omitempty"`
	Control         ControlStatus   `json:"control"`
	// DHCP counts the DHCP proxy's decisions (relayed, offers, acks,
	// drops by reason, rejections).
	DHCP map[string]uint64 `json:"dhcp"`
	// Leases is the number of DHCP leases held.
	Leases int `json:"leases"`
	// PendingIntents is the number of messages to ISPs (RELEASE, DECLINE
	// on a binding's end) recorded and not yet sent: above 0 for long, an
	// ISP's next hop is unresolved.
	PendingIntents int `json:"pending_intents"`
	// Onboarding are the onboarding leases (devices without a device
	// record, in the walled garden until they choose an ISP on the
	// portal); [] when none. Portal is the portal's state, nil when off.
	Onboarding []OnboardingStatus `json:"onboarding"`
	Portal     *PortalStatus      `json:"portal,omitempty"`
	// Handovers are the devices on their way from the walled garden, or
	// from their old ISP (a switch they made on the portal), to the ISP
	// they chose, with neither an onboarding lease nor a binding now:
	// their DORA with that ISP under way, or just refused (back to the
	// garden at their next DISCOVER). [] when none; at most
	// StatusBindingsMax.
	Handovers []HandoverStatus `json:"handovers"`
}

// HandoverStatus is one device in Status.Handovers.
type HandoverStatus struct {
	MAC    string `json:"mac"`
	Access string `json:"access"`
	// ISP and CustomerID are where it is going (its registration).
	ISP        string `json:"isp"`
	CustomerID string `json:"customer_id"`
	// HeldUntil (RFC 3339) is when its hold on the access lapses unless
	// it asks again there; empty: none left.
	HeldUntil string `json:"held_until,omitempty"`
	// SilentSince (RFC 3339) is when the ISP first left its DORA
	// unanswered; empty: not so far.
	SilentSince string `json:"silent_since,omitempty"`
	// Failed is why it goes back to the walled garden at its next
	// DISCOVER: "refused" or "unanswered"; empty while it goes on.
	Failed string `json:"failed,omitempty"`
}

// OnboardingStatus is one onboarding lease.
type OnboardingStatus struct {
	MAC     string `json:"mac"`
	Access  string `json:"access"`
	IP      string `json:"ip"`
	Expires string `json:"expires"`
	// Chosen is the ISP the device was attached to (on the portal or by
	// the operator) while it held this lease: it moves there at its next
	// renewal. Empty while it has not chosen.
	Chosen string `json:"chosen,omitempty"`
	// Suspended is the ISP whose customer the device is and which
	// suspended that customer: the device is in the garden to choose
	// another ISP (Chosen is then empty).
	Suspended string `json:"suspended,omitempty"`
	// HandoverFailed is set when the device is back in the walled garden
	// because Chosen did not take it: "refused" (its DHCP server NAKed),
	// "unanswered" (it stayed silent) or "failed" (one of the two, before
	// ispmux last started). The device is handed over again about once
	// an onboarding lease time.
	HandoverFailed string `json:"handover_failed,omitempty"`
	// HandoverRetry is when the device is handed over to Chosen again
	// (RFC 3339): after a failure (HandoverFailed set), or a retry asked
	// for on the portal's failure page (HandoverFailed empty: its
	// outcome not known yet). Empty: none due.
	HandoverRetry string `json:"handover_retry,omitempty"`
}

// PortalStatus is the captive portal's state and counters.
type PortalStatus struct {
	Hostname string            `json:"hostname"`
	Address  string            `json:"address"`
	NextHop  string            `json:"next_hop"` // the portal namespace's link: reachable, unresolved, ...
	Counters map[string]uint64 `json:"counters"`
}

// ControlStatus is the control plane's counters.
type ControlStatus struct {
	ARPSent       uint64 `json:"arp_sent"`
	ARPLearned    uint64 `json:"arp_learned"`
	PuntUnhandled uint64 `json:"punt_unhandled"`
}

// LastDrop is the source of a port's last frame dropped for a reason.
type LastDrop struct {
	Reason string `json:"reason"`
	MAC    string `json:"mac"`
	At     string `json:"at"` // RFC 3339
}

// PortStatus is one port's datapath and engine counters, summed over queues
// and workers.
type PortStatus struct {
	Name     string `json:"name"`
	RxFrames uint64 `json:"rx_frames"`
	RxBytes  uint64 `json:"rx_bytes"`
	TxFrames uint64 `json:"tx_frames"`
	TxBytes  uint64 `json:"tx_bytes"`
	TxFull   uint64 `json:"tx_full"`
	NoFrame  uint64 `json:"no_frame"`
	Errors   uint64 `json:"errors"`
	Down     bool   `json:"down"`
	FwdUp    uint64 `json:"forwarded_up"`
	FwdDown  uint64 `json:"forwarded_down"`
	// FastUp and FastDown are the part of FwdUp and FwdDown the XDP fast
	// path forwarded ([datapath] fastpath = "xdp"): those frames are in
	// no RxFrames or TxFrames, which count the AF_XDP sockets' frames.
	FastUp     uint64            `json:"fastpath_up,omitempty"`
	FastDown   uint64            `json:"fastpath_down,omitempty"`
	ARPReplies uint64            `json:"arp_replies"`
	Echo       uint64            `json:"echo_replies"`
	Punts      uint64            `json:"punts"`
	Drops      map[string]uint64 `json:"drops"`
	// ICMPErrors counts the ICMP errors (time exceeded, fragmentation
	// needed) sent for frames that arrived on the port; ICMPLimited those
	// not sent, by the budget that refused them ("subscriber": one
	// subscriber's share, "port": the port's; both always present), as
	// ispmux_port_icmp_errors_sent_total and ispmux_port_icmp_errors_limited_total
	// count them.
	ICMPErrors  uint64            `json:"icmp_errors"`
	ICMPLimited map[string]uint64 `json:"icmp_errors_limited"`
	// LastDrops names, per drop reason a subscriber causes
	// (spoofed_source, unknown_mac, dhcp_flood, ...), the source MAC of
	// the port's last frame dropped for it and when: who, where Drops
	// says how many.
	LastDrops []LastDrop `json:"last_drops,omitempty"`

	// Link is the port's interface as ispmux knows it: up, down, gone,
	// reopening (up again, its queues not open yet) or failed (re-opens
	// fail and are retried; LinkError says why). LinkFlaps counts the
	// times it left up, Reopens the re-opens after one (ReopenFailures
	// the failed attempts); Ifindex is the interface's index now.
	Link           string `json:"link,omitempty"`
	LinkError      string `json:"link_error,omitempty"`
	LinkFlaps      uint64 `json:"link_flaps"`
	Reopens        uint64 `json:"reopens"`
	ReopenFailures uint64 `json:"reopen_failures"`
	Ifindex        int    `json:"ifindex,omitempty"`
}

// ISPStatus is one ISP's next-hop resolution.
type ISPStatus struct {
	Name    string `json:"name"`
	NextHop string `json:"next_hop"`
	State   string `json:"state"`
	MAC     string `json:"mac,omitempty"`
}

// BindingStatus is one bound subscriber.
type BindingStatus struct {
	MAC    string `json:"mac"`
	Access string `json:"access"`
	VLAN   uint16 `json:"vlan"`
	ISP    string `json:"isp"`
	IP     string `json:"ip"`
	Static bool   `json:"static"`
	// DHCP bindings: when the lease runs out and the ISP server that
	// granted it (its server identifier).
	Expires  string `json:"expires,omitempty"`
	ServerID string `json:"server_id,omitempty"`
}

// EventStatus is one stored event as the control socket reports it.
type EventStatus struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	MAC    string    `json:"mac,omitempty"` // none for a customer's event
	ISP    string    `json:"isp,omitempty"`
	IP     string    `json:"ip,omitempty"`
	Reason string    `json:"reason,omitempty"`
	// Customer and Access are the subscriber's customer ID and access
	// entry, where known.
	Customer string `json:"customer,omitempty"`
	Access   string `json:"access,omitempty"`
}

// EventPage is a slice of the event log, ascending by Seq, and the range of
// sequence numbers the log holds.
type EventPage struct {
	Events []EventStatus
	// Oldest and Newest are the Seq of the oldest event the log still
	// holds (0 when the log is empty) and of the newest one given out (a
	// new store with no event: the number before its first, its base,
	// subscribers.Store.EventBase; 0 for a store numbered from 1). Events are
	// older than the page when its first Seq is above Oldest, newer when
	// its last Seq is below Newest.
	Oldest, Newest uint64
}
