// Package circuitid holds what the configuration, the tenants and the DHCP
// proxy share about the identifiers ispmux sends in Option 82: the
// expansion of the circuit-id templates ({interface}, {vlan}, {access},
// {mac}), the one both the proxy (what goes on the wire) and the
// configuration's size checks (what must fit in Option 82) use, and the
// rule for a customer ID (the subscriber-id, RFC 3993), the one both the
// configuration and the management API apply.
package circuitid

import (
	"strconv"
	"strings"
)

// Expand returns template t with each placeholder replaced: {interface}
// by iface, {vlan} by vlan in decimal, {access} by access and {mac} by
// mac. An unknown placeholder and text after an unclosed brace are kept
// as they are.
func Expand(t, iface string, vlan int, access, mac string) string {
	if !strings.Contains(t, "{") {
		return t
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(t, '{')
		j := strings.IndexByte(t, '}')
		if i < 0 || j < i {
			b.WriteString(t)
			return b.String()
		}
		b.WriteString(t[:i])
		switch t[i+1 : j] {
		case "interface":
			b.WriteString(iface)
		case "vlan":
			b.WriteString(strconv.Itoa(vlan))
		case "access":
			b.WriteString(access)
		case "mac":
			b.WriteString(mac)
		default:
			b.WriteString(t[i : j+1])
		}
		t = t[j+1:]
	}
}

// MaxCustomerID is the longest customer ID, in bytes.
const MaxCustomerID = 64

// CustomerIDProblem says what is wrong with a customer ID, "" if nothing:
// it becomes the Option 82 subscriber-id (RFC 3993), so 1..MaxCustomerID
// bytes, printable, no space, no control character (NUL included), and
// not "." or ".." (the API names a customer in its URL path).
func CustomerIDProblem(id string) string {
	if id == "" || len(id) > MaxCustomerID {
		return "must be 1.." + strconv.Itoa(MaxCustomerID) + " bytes"
	}
	for _, r := range id {
		if r < 0x21 || r == 0x7f {
			return "has a space or control character"
		}
	}
	if id == "." || id == ".." {
		// A dot-segment (RFC 3986 §5.2.4): clients and servers remove
		// it, so /v1/isps/{isp}/customers/.. would never reach it.
		return "is a dot-segment, which cannot be named in a URL path"
	}
	return ""
}
