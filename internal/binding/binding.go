// Package binding holds the types the control plane (the DHCP proxy, the
// appliance) and the forwarding engine share: a subscriber's forwarding
// binding and the 48-bit MAC form the tables use. It imports nothing of
// ispmux, so neither side imports the other for a struct.
package binding

import (
	"errors"
	"net/netip"
)

// Binding is one subscriber bound to an ISP with an address.
type Binding struct {
	Port uint8  // access port
	VLAN uint16 // access VLAN, 0 = untagged
	MAC  uint64
	ISP  uint8
	IP   netip.Addr
	// Static marks a configured (not leased) binding.
	Static bool
}

// ErrConflict is returned when a binding's address is bound to another
// subscriber at the same ISP.
var ErrConflict = errors.New("address already bound at this ISP")

// MAC48 converts a 6-byte MAC to the uint64 the tables use.
func MAC48(b [6]byte) uint64 {
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

// SubscriberMAC reports whether m can be a subscriber's MAC: a 48-bit
// unicast address other than the all-zero one (no frame carries the
// others as its source).
func SubscriberMAC(m uint64) bool { return m != 0 && m < 1<<48 && m&(1<<40) == 0 }

// MACBytes is the inverse of MAC48.
func MACBytes(m uint64) [6]byte {
	return [6]byte{byte(m >> 40), byte(m >> 32), byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}
}

// MACString formats a 48-bit MAC as aa:bb:cc:dd:ee:ff.
func MACString(m uint64) string {
	const hex = "0123456789abcdef"
	var b [17]byte
	for i := range 6 {
		o := byte(m >> (40 - 8*i))
		b[3*i], b[3*i+1] = hex[o>>4], hex[o&15]
		if i < 5 {
			b[3*i+2] = ':'
		}
	}
	return string(b[:])
}

// GardenVRF is the VRF of the walled garden. Onboarding leases (subscribers
// without a device record, served by ispmux itself until they choose an
// ISP on the portal) are bound in it, and its uplink is the link to the
// captive portal. Real ISPs use VRFs 0..249 (configs.MaxISPs).
const GardenVRF uint8 = 250

// Bound subscribers (ISP VRFs 0..249) reach the captive portal too: the
// datapath sends their TCP to the portal's address, ports 80 and 443, to
// the portal's link with the destination port rewritten to
// PortalHTTPBase+VRF or PortalHTTPSBase+VRF, where the portal listens per
// VRF; the answers' source port gives the VRF back. Their addresses may
// overlap across ISPs, but the (address, port, VRF port) tuple is unique,
// and nothing is kept per connection.
const (
	PortalHTTPBase  = 30000
	PortalHTTPSBase = 31000
)

// PortalPort is the portal's port for VRF vrf (< GardenVRF): HTTPS or
// HTTP.
func PortalPort(vrf uint8, https bool) uint16 {
	if https {
		return PortalHTTPSBase + uint16(vrf)
	}
	return PortalHTTPBase + uint16(vrf)
}

// PortalVRF inverts PortalPort: the VRF and scheme of a portal port, false
// for a port outside both ranges.
func PortalVRF(port uint16) (vrf uint8, https bool, ok bool) {
	switch {
	case port >= PortalHTTPSBase && port < PortalHTTPSBase+uint16(GardenVRF):
		return uint8(port - PortalHTTPSBase), true, true
	case port >= PortalHTTPBase && port < PortalHTTPBase+uint16(GardenVRF):
		return uint8(port - PortalHTTPBase), false, true
	}
	return 0, false, false
}
