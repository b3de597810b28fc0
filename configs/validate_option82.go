package configs

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ispmux/ispmux/internal/circuitid"
)

// Option 82: the circuit-id template, and the size of the relay agent
// information the DHCP proxy adds for an ISP on each access port, which the
// [[isp]] checks and the [[subscriber]] customer_id check use.

// defaultCircuitID is the circuit-id template of an ISP that sets none.
const defaultCircuitID = "{interface}:{vlan}"

// maxOption is the most bytes a DHCP option, and so each Option 82
// sub-option and the whole of Option 82 (RFC 3046 §2.0), can hold.
const maxOption = 255

// anyMAC stands for a subscriber's MAC in a circuit-id: every MAC is
// spelled with 17 characters.
const anyMAC = "00:00:00:00:00:00"

// expandCircuitID returns the circuit-id the DHCP proxy sends for template
// t on access a for the subscriber with MAC mac (the same expansion).
func expandCircuitID(t string, a *Access, mac string) string {
	return circuitid.Expand(t, a.Interface, a.VLAN, a.Name, mac)
}

// option82Size is the size of the Option 82 payload the DHCP proxy sends on
// behalf of isp for a subscriber on access a, without the subscriber-id, as
// dhcpproxy's relayInfo.encode lays it out: sub-options as code, length,
// data. circuit is the circuit-id's length alone.
func option82Size(isp *ISP, a *Access) (total, circuit int) {
	circuit = len(expandCircuitID(isp.CircuitID, a, anyMAC))
	total = 2 + circuit // 1: circuit-id
	total += 2 + 6      // 2: remote-id, the subscriber's MAC
	total += 2 + 1      // 10: relay flags (RFC 5010), when the client unicast
	if isp.LinkSelectionAddr.IsValid() {
		total += 2 + 4 // 5: link selection (RFC 3527)
	}
	if isp.ServerIDOverride {
		total += 2 + 4 // 11: server-id override (RFC 5107)
	}
	if isp.VSS != "" {
		total += 2 + 1 + len(isp.VSS) // 151: VSS (RFC 6607), type 0 + NVT ASCII
		total += 2                    // 152: VSS-Control (RFC 6607), empty
	}
	return total, circuit
}

// option82Failed reports whether a key of isp (key) that shapes its
// Option 82 has an error: its size is then unknown.
func (v *validator) option82Failed(key string) bool {
	if v.c.seen[key] {
		return true
	}
	for _, k := range []string{".circuit_id", ".server_id_override", ".link_selection", ".vss"} {
		if v.c.failed(key + k) {
			return true
		}
	}
	return false
}

// option82 checks that the sub-options isp adds to every relayed request
// fit one Option 82 on every access port. The subscriber-id (customer_id)
// is checked per subscriber, in the room this leaves.
func (v *validator) option82(key string, isp *ISP) {
	if v.option82Failed(key) {
		return
	}
	for i := range v.cfg.Access {
		a := &v.cfg.Access[i]
		if v.c.failed(indexKey("access", i)) {
			continue
		}
		total, circuit := option82Size(isp, a)
		switch {
		case circuit > maxOption:
			v.errorf(key+".circuit_id", "expands to %d bytes on access %q, more than the %d a sub-option holds", circuit, a.Name, maxOption)
			return
		case total > maxOption:
			v.errorf(key, "Option 82 would be %d bytes on access %q (circuit-id %d bytes; remote-id, relay flags, link selection, server-id override and vss add the rest), more than the %d an option holds: shorten circuit_id or vss",
				total, a.Name, circuit, maxOption)
			return
		}
	}
}

// customerIDRoom returns the bytes left in Option 82 for the subscriber-id
// of a subscriber of isp that asks on access ports accesses (nil: any), on
// the port where it is least, and that port's name. ok is false when there
// is no port to check.
func (v *validator) customerIDRoom(isp *ISP, accesses []int) (room int, access string, ok bool) {
	for i := range v.cfg.Access {
		if v.c.failed(indexKey("access", i)) || accesses != nil && !slices.Contains(accesses, i) {
			continue
		}
		a := &v.cfg.Access[i]
		total, _ := option82Size(isp, a)
		if r := maxOption - total - 2; !ok || r < room {
			room, access, ok = r, a.Name, true
		}
	}
	return max(room, 0), access, ok
}

// circuitProblem checks a circuit-id template: known placeholders only, at
// most 200 bytes (option82 checks its expansion on each access port).
func circuitProblem(t string) string {
	if t == "" {
		return "must not be empty"
	}
	rest := t
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return fmt.Sprintf("unclosed '{' in %q", t)
		}
		switch ph := rest[i+1 : i+j]; ph {
		case "interface", "vlan", "access", "mac":
		default:
			return fmt.Sprintf("unknown placeholder {%s} in %q (known: {interface} {vlan} {access} {mac})", ph, t)
		}
		rest = rest[i+j+1:]
	}
	if len(t) > 200 {
		return "longer than 200 bytes"
	}
	return ""
}
