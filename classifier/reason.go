package classifier

import "strconv"

// Reason says why a frame was dropped; ReasonNone means it was not. Reasons
// are counted per worker and ingress port in [Counters] and exported as
// metric labels by [Reason.String]. The engine decides most; the transmit
// side's three (no_tx_frame, tx_full, port_error) are the datapath worker's,
// reported back to the engine by ingress port. Every reason is
// produced somewhere (engine's TestEveryDropReason checks it): a new one
// comes with the code that produces it. DHCP the proxy refuses is not a
// frame drop here: the proxy counts it (and records an event).
type Reason uint8

// Drop reasons. Append new ones before NumReasons and give them a name in
// reasonNames.
const (
	ReasonNone                    Reason = iota
	ReasonMalformed                      // truncated or inconsistent headers
	ReasonBadChecksum                    // IPv4 header checksum does not verify; or (engine) the transport checksum of a segment ispmux would answer itself
	ReasonUnsupportedEtherType           // not IPv4 or ARP (IPv6 included, for now), or stacked VLAN tags
	ReasonBadSourceMAC                   // source MAC is multicast, broadcast or zero, or a subscriber's frame has ours
	ReasonUnknownInterface               // frame on a port or VLAN not in the configuration
	ReasonUnknownMAC                     // sender not in the MAC table (and not DHCP or ARP)
	ReasonSpoofedSource                  // bound subscriber sent from another IPv4 address
	ReasonSubscriberToSubscriber         // subscribers never reach each other
	ReasonL2Broadcast                    // broadcast or multicast that is neither DHCP nor ARP
	ReasonNotForUs                       // destination MAC is not ours
	ReasonTTLExpired                     // TTL would reach 0 on forwarding
	ReasonNoNextHop                      // ISP next hop not resolved (ARP pending)
	ReasonNoRoute                        // no subscriber or VRF for the destination
	ReasonARPIgnored                     // ARP we do not answer
	ReasonPuntQueueFull                  // control-plane queue full (DHCP, ARP)
	ReasonNoTxFrame                      // forwarded, but no free frame in the egress port's UMEM to copy it into
	ReasonTxFull                         // forwarded, but the egress TX ring was full
	ReasonPortError                      // forwarded, but the egress TX ring was full and the port is in error (down or gone)
	ReasonUnregisteredDHCP               // DHCP from an unregistered MAC beyond the sample the proxy sees
	ReasonTooBig                         // larger than the egress port's MTU (no fragmentation; DF gets ICMP)
	ReasonWalledGarden                   // from a walled-garden (onboarding) subscriber, to anything but the portal, DNS or the gateway
	ReasonNotUnicast                     // from a subscriber, IPv4 to no single host (broadcast, multicast, 0/8, 127/8, class E): not routed
	ReasonDHCPFlood                      // DHCP from one subscriber (circuit and MAC) beyond its budget: faster than any client sends
	ReasonIPOptions                      // IPv4 with a source route option (LSRR, SSRR) or options that do not parse: not routed (RFC 7126 §4.3, §4.4)
	ReasonDHCPBypass                     // UDP to or from a DHCP port (67, 68) that is not a client's message to the proxy nor a server's to it: DHCP around the relay
	ReasonUnregisteredDHCPCircuit        // DHCP from unregistered MACs on one circuit beyond the circuit's share of the port's sample
	NumReasons                           // number of reasons; not a reason
)

var reasonNames = [NumReasons]string{
	ReasonNone:                    "none",
	ReasonMalformed:               "malformed",
	ReasonBadChecksum:             "bad_checksum",
	ReasonUnsupportedEtherType:    "unsupported_ethertype",
	ReasonBadSourceMAC:            "bad_source_mac",
	ReasonUnknownInterface:        "unknown_interface",
	ReasonUnknownMAC:              "unknown_mac",
	ReasonSpoofedSource:           "spoofed_source",
	ReasonSubscriberToSubscriber:  "subscriber_to_subscriber",
	ReasonL2Broadcast:             "l2_broadcast",
	ReasonNotForUs:                "not_for_us",
	ReasonTTLExpired:              "ttl_expired",
	ReasonNoNextHop:               "no_next_hop",
	ReasonNoRoute:                 "no_route",
	ReasonARPIgnored:              "arp_ignored",
	ReasonPuntQueueFull:           "punt_queue_full",
	ReasonNoTxFrame:               "no_tx_frame",
	ReasonTxFull:                  "tx_full",
	ReasonPortError:               "port_error",
	ReasonUnregisteredDHCP:        "unregistered_dhcp",
	ReasonTooBig:                  "too_big",
	ReasonWalledGarden:            "walled_garden",
	ReasonNotUnicast:              "not_unicast",
	ReasonDHCPFlood:               "dhcp_flood",
	ReasonIPOptions:               "ip_options",
	ReasonDHCPBypass:              "dhcp_bypass",
	ReasonUnregisteredDHCPCircuit: "unregistered_dhcp_circuit",
}

// String returns the reason's snake_case name, used as a metric label (for
// example "unknown_mac"). It does not allocate for defined reasons.
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "reason_" + strconv.Itoa(int(r))
}

// Counters counts frames per Reason. Each worker owns one and increments it
// with plain adds (c[r]++); once per batch it is added into a shared total
// under the metrics' own synchronisation and reset.
type Counters [NumReasons]uint64

// Add adds o into c.
func (c *Counters) Add(o *Counters) {
	for i := range c {
		c[i] += o[i]
	}
}
