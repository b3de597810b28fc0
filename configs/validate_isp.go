package configs

import (
	"net/netip"
	"strings"
)

// Validation of the [[isp]] entries: names, uplinks, addressing, DHCP
// servers and relay settings (the size of their Option 82:
// validate_option82.go).

func validISPName(s string) bool {
	if len(s) < 1 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && c == '-') {
			return false
		}
	}
	return true
}

func (v *validator) isps() {
	isps := v.cfg.ISPs
	if len(isps) == 0 && !v.c.failed("isp") {
		v.errorf("isp", "at least one [[isp]] is required")
		return
	}
	if len(isps) > MaxISPs {
		v.errorf(indexKey("isp", MaxISPs), "too many [[isp]] entries: %d, at most %d", len(isps), MaxISPs)
	}
	accessPorts := map[port]int{}
	for i, a := range v.cfg.Access {
		accessPorts[port{a.Interface, a.VLAN}] = i
	}
	names := map[string]int{}
	uplinks := map[port]int{}
	for i := range isps {
		p := &isps[i]
		p.Index = i
		key := indexKey("isp", i)
		switch {
		case p.Name == "":
			v.errorf(key+".name", "missing (an ISP name, e.g. \"alpha\")")
		case !validISPName(p.Name):
			v.errorf(key+".name", "must match [a-z0-9][a-z0-9-]{0,31}, got %q", p.Name)
		default:
			if j, dup := names[p.Name]; dup {
				v.errorf(key+".name", "duplicate isp name %q (also isp[%d])", p.Name, j)
			} else {
				names[p.Name] = i
			}
		}
		ifOK := true
		if pr := ifnameProblem(p.Uplink); pr != "" {
			v.errorf(key+".uplink", "%s", pr)
			ifOK = false
		}
		if v.vlan(key+".vlan", p.VLAN) && ifOK {
			up := port{p.Uplink, p.VLAN}
			if j, dup := uplinks[up]; dup {
				v.errorf(key+".uplink", "%s is already the uplink of isp[%d] (ISPs may share an interface only on distinct VLANs)", up, j)
			} else {
				uplinks[up] = i
			}
			if j, dup := accessPorts[up]; dup {
				v.errorf(key+".uplink", "%s is already access[%d]", up, j)
			}
		}

		prefixOK := false
		if p.Address == "" {
			v.errorf(key+".address", "missing (our IPv4 address with prefix length, e.g. \"192.0.2.2/24\")")
		} else if pf, err := netip.ParsePrefix(p.Address); err != nil || !pf.Addr().Is4() {
			v.errorf(key+".address", "not an IPv4 prefix (address/length, e.g. \"192.0.2.2/24\"): %q", p.Address)
		} else if pr := specialProblem(pf.Addr()); pr != "" {
			v.errorf(key+".address", "%s", pr)
		} else if pr := edgeProblem(pf.Addr(), pf); pr != "" {
			v.errorf(key+".address", "%s", pr)
		} else {
			p.Prefix = pf
			prefixOK = true
		}

		if p.NextHop == "" {
			v.errorf(key+".next_hop", "missing (the ISP router's IPv4 address)")
		} else if a, pr := parseIPv4(p.NextHop); pr != "" {
			v.errorf(key+".next_hop", "%s", pr)
		} else if pr := specialProblem(a); pr != "" {
			v.errorf(key+".next_hop", "%s", pr)
		} else if prefixOK {
			switch {
			case !p.Prefix.Contains(a):
				v.errorf(key+".next_hop", "%s is outside %s (isp address)", a, p.Prefix.Masked())
			case a == p.Prefix.Addr():
				v.errorf(key+".next_hop", "%s is our own address (isp address)", a)
			default:
				if pr := edgeProblem(a, p.Prefix); pr != "" {
					v.errorf(key+".next_hop", "%s", pr)
				} else {
					p.NextHopAddr = a
				}
			}
		}

		p.DHCPServerAddrs = nil
		seen := map[netip.Addr]int{}
		for j, s := range p.DHCPServers {
			k := indexKey(key+".dhcp_servers", j)
			a, pr := parseIPv4(s)
			if pr == "" {
				pr = specialProblem(a)
			}
			if pr == "" && prefixOK && a == p.Prefix.Addr() {
				pr = a.String() + " is our own address (isp address): ispmux would relay the subscribers' DHCP to itself"
			}
			if pr != "" {
				v.errorf(k, "%s", pr)
				continue
			}
			if d, dup := seen[a]; dup {
				v.errorf(k, "duplicate dhcp server %s (also dhcp_servers[%d])", a, d)
				continue
			}
			seen[a] = j
			p.DHCPServerAddrs = append(p.DHCPServerAddrs, a)
		}

		if !v.defined[key+".circuit_id"] {
			p.CircuitID = defaultCircuitID
		} else if pr := circuitProblem(p.CircuitID); pr != "" {
			v.errorf(key+".circuit_id", "%s", pr)
		}
		p.LinkSelectionAddr = netip.Addr{}
		if v.defined[key+".link_selection"] {
			a, pr := parseIPv4(p.LinkSelection)
			if pr == "" {
				pr = specialProblem(a)
			}
			if pr != "" {
				v.errorf(key+".link_selection", "%s", pr)
			} else {
				p.LinkSelectionAddr = a
			}
		}
		if v.defined[key+".vss"] && (p.VSS == "" || len(p.VSS) > 250 || strings.ContainsFunc(p.VSS, func(r rune) bool { return r < ' ' || r > '~' })) {
			v.errorf(key+".vss", "must be 1..250 printable ASCII characters (RFC 6607 NVT ASCII VPN id), got %q", p.VSS)
		}
		v.option82(key, p)
	}
}
