package configs

import (
	"fmt"
	"strings"
)

// Validation of the [[access]] entries: the ports subscribers are on.

func (v *validator) access() {
	acc := v.cfg.Access
	if len(acc) == 0 && !v.c.failed("access") {
		v.errorf("access", "at least one [[access]] is required")
		return
	}
	tooMany := len(acc) > MaxAccess
	if tooMany {
		v.errorf(indexKey("access", MaxAccess), "too many [[access]] entries: %d, at most %d", len(acc), MaxAccess)
	}
	names := map[string]int{}
	ports := map[port]int{}
	ifaces := map[string]bool{}
	for i := range acc {
		a := &acc[i]
		key := indexKey("access", i)
		ifOK := true
		if p := ifnameProblem(a.Interface); p != "" {
			v.errorf(key+".interface", "%s", p)
			ifOK = false
		}
		vlanOK := v.vlan(key+".vlan", a.VLAN)
		if !v.defined[key+".name"] {
			a.Name = a.Interface
			if a.VLAN != 0 {
				a.Name = fmt.Sprintf("%s.%d", a.Interface, a.VLAN)
			}
		} else if a.Name == "" || len(a.Name) > 32 || strings.ContainsFunc(a.Name, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			v.errorf(key+".name", "must be 1..32 characters without blanks, got %q", a.Name)
		}
		if a.Name != "" {
			if j, dup := names[a.Name]; dup {
				v.errorf(key+".name", "duplicate access name %q (also access[%d])", a.Name, j)
			} else {
				names[a.Name] = i
			}
		}
		if ifOK && vlanOK {
			p := port{a.Interface, a.VLAN}
			if j, dup := ports[p]; dup {
				v.errorf(key+".interface", "%s is already access[%d]", p, j)
			} else {
				ports[p] = i
			}
			if !ifaces[a.Interface] {
				ifaces[a.Interface] = true
				// Too many entries is reported once, above: it also
				// means too many interfaces when they are all distinct.
				if len(ifaces) > MaxAccessInterfaces && !tooMany {
					v.errorf(key+".interface", "too many access interfaces: at most %d", MaxAccessInterfaces)
				}
			}
		}
		if v.defined[key+".address"] {
			addr, p := parseIPv4(a.Address)
			if p == "" {
				p = specialProblem(addr)
			}
			if p != "" {
				v.errorf(key+".address", "%s", p)
			} else {
				a.Addr = addr
			}
		}
	}
}
