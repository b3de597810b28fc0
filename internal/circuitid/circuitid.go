// Package circuitid expands the Option 82 circuit-id templates of the
// configuration ({interface}, {vlan}, {access}, {mac}). It is the one
// expansion both the DHCP proxy (what goes on the wire) and the
// configuration's size checks (what must fit in Option 82) use.
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
