package configs

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/ispmux/ispmux/internal/circuitid"
)

// Validation of the [[subscriber]] entries and of their references to
// [[isp]] and [[access]].

func (v *validator) subscribers() {
	cfg := v.cfg
	ispByName := map[string]int{}
	for i, p := range cfg.ISPs {
		if _, dup := ispByName[p.Name]; !dup && p.Name != "" {
			ispByName[p.Name] = i
		}
	}
	accessByName := map[string]int{}
	for i, a := range cfg.Access {
		if _, dup := accessByName[a.Name]; !dup && a.Name != "" {
			accessByName[a.Name] = i
		}
	}
	type accMAC struct {
		access int
		mac    [6]byte
	}
	type ispIP struct {
		isp int
		ip  netip.Addr
	}
	macs := map[accMAC]int{}
	ips := map[ispIP]int{}
	// The DHCP subscribers of an access without an address, of an ISP
	// without dhcp_servers: one error each, at the first of them (a
	// dhcp_servers misspelt is one fault, not one per subscriber).
	noAddr := make([]subscriberFold, len(cfg.Access))
	noServers := make([]subscriberFold, len(cfg.ISPs))
	defer func() {
		for j, f := range noAddr {
			if f.n > 0 {
				v.errorf(indexKey("subscriber", f.first)+".ip", "missing, and access %q has no address: a DHCP subscriber needs the access port's address (ispmux's server identifier%s)",
					cfg.Access[j].Name, f.more("on access "+strconv.Quote(cfg.Access[j].Name)))
			}
		}
		for j, f := range noServers {
			if f.n > 0 {
				v.errorf(indexKey("subscriber", f.first)+".ip", "missing, and isp %q has no dhcp_servers: a DHCP subscriber's requests are relayed to them (give the subscriber an ip, or the isp dhcp_servers%s)",
					cfg.ISPs[j].Name, f.more("of isp "+strconv.Quote(cfg.ISPs[j].Name)))
			}
		}
	}()
	for i := range cfg.Subscribers {
		s := &cfg.Subscribers[i]
		key := indexKey("subscriber", i)

		macOK := false
		if s.MAC == "" {
			v.errorf(key+".mac", "missing (the subscriber's MAC address, e.g. \"02:00:00:00:00:01\")")
		} else if hw, err := net.ParseMAC(s.MAC); err != nil || len(hw) != 6 {
			v.errorf(key+".mac", "not an Ethernet MAC address: %q", s.MAC)
		} else if hw[0]&1 != 0 {
			v.errorf(key+".mac", "%s is a multicast/broadcast address", hw)
		} else if [6]byte(hw) == [6]byte{} {
			v.errorf(key+".mac", "the all-zero MAC address is not a subscriber")
		} else {
			s.HWAddr = [6]byte(hw)
			macOK = true
		}

		s.ISPIndex = -1
		if s.ISP == "" {
			v.errorf(key+".isp", "missing (the name of an [[isp]])")
		} else if j, ok := ispByName[s.ISP]; !ok {
			v.errorf(key+".isp", "no [[isp]] is named %q", s.ISP)
		} else {
			s.ISPIndex = j
		}

		s.AccessIndex = -1
		switch {
		case !v.defined[key+".access"]:
			if len(cfg.Access) > 0 {
				s.AccessIndex = 0
			}
		default:
			if j, ok := accessByName[s.Access]; ok {
				s.AccessIndex = j
			} else {
				v.errorf(key+".access", "no [[access]] is named %q%s", s.Access, v.accessNameHint(s.Access))
			}
		}

		// The customer ID goes to the ISP as the Option 82 subscriber-id
		// (RFC 3993), next to the ISP's other sub-options: all of them
		// must fit the one option. A subscriber registered without an
		// access may ask on any access port. It also names the ISP's
		// customer record, by the rule the API applies.
		if s.CustomerID != "" {
			if why := circuitid.CustomerIDProblem(s.CustomerID); why != "" {
				v.errorf(key+".customer_id", "%s (it is the customer's ID at the ISP and the Option 82 subscriber-id)", why)
			}
		}
		if s.CustomerID != "" && s.ISPIndex >= 0 && !v.c.failed(key+".customer_id") && !v.option82Failed(indexKey("isp", s.ISPIndex)) && !v.c.failed(key+".access") {
			var accesses []int
			if v.defined[key+".access"] {
				accesses = []int{s.AccessIndex}
			}
			room, access, ok := v.customerIDRoom(&cfg.ISPs[s.ISPIndex], accesses)
			if ok && len(s.CustomerID) > room {
				v.errorf(key+".customer_id", "%d bytes do not fit Option 82: isp %q's other sub-options on access %q leave %d bytes for it (the whole option holds %d, RFC 3046)",
					len(s.CustomerID), s.ISP, access, room, maxOption)
			}
		}

		if macOK && s.AccessIndex >= 0 {
			// One entry per MAC: the registry and the admission filter
			// know a subscriber by its MAC (one ISP per MAC).
			k := accMAC{0, s.HWAddr}
			if j, dup := macs[k]; dup {
				v.errorf(key+".mac", "duplicate mac %s (also subscriber[%d]): a MAC has one entry, on one access and one ISP", net.HardwareAddr(s.HWAddr[:]), j)
			} else {
				macs[k] = i
			}
		}

		s.Addr = netip.Addr{}
		if !v.defined[key+".ip"] {
			// Leased by DHCP: ispmux answers as the server, with the
			// access port's address as its server identifier. Either
			// want is the access's or the ISP's: counted, and told
			// once per access or ISP (below).
			switch {
			case s.Blocked:
			case s.AccessIndex >= 0 && !cfg.Access[s.AccessIndex].Addr.IsValid():
				noAddr[s.AccessIndex].add(i)
			case s.ISPIndex >= 0 && len(cfg.ISPs[s.ISPIndex].DHCPServers) == 0:
				noServers[s.ISPIndex].add(i)
			}
			continue
		}
		a, pr := parseIPv4(s.IP)
		if pr == "" {
			pr = specialProblem(a)
		}
		if pr == "" && s.ISPIndex >= 0 {
			p := cfg.ISPs[s.ISPIndex]
			switch {
			case p.Prefix.IsValid() && a == p.Prefix.Addr():
				pr = fmt.Sprintf("%s is isp %q's own address", a, p.Name)
			case p.NextHopAddr.IsValid() && a == p.NextHopAddr:
				pr = fmt.Sprintf("%s is isp %q's next hop", a, p.Name)
			default:
				pr = edgeProblem(a, p.Prefix)
			}
		}
		if pr == "" && s.AccessIndex >= 0 && cfg.Access[s.AccessIndex].Addr == a {
			pr = fmt.Sprintf("%s is the address of access %q", a, cfg.Access[s.AccessIndex].Name)
		}
		if pr != "" {
			v.errorf(key+".ip", "%s", pr)
			continue
		}
		s.Addr = a
		if s.ISPIndex >= 0 {
			k := ispIP{s.ISPIndex, a}
			if j, dup := ips[k]; dup {
				v.errorf(key+".ip", "duplicate ip %s at isp %q (also subscriber[%d])", a, cfg.ISPs[s.ISPIndex].Name, j)
			} else {
				ips[k] = i
			}
		}
	}
}

// accessNameHint explains a subscriber's access that names the interface
// of an [[access]] entry given a vlan and no name, which is named
// interface.vlan (a vlan added to an access its subscribers name by its
// interface): the entry and its name. "" otherwise.
func (v *validator) accessNameHint(name string) string {
	for i, a := range v.cfg.Access {
		if a.Interface == name && a.VLAN != 0 && !v.defined[indexKey("access", i)+".name"] {
			return fmt.Sprintf(" (access[%d] on interface %q vlan %d is named %q: an entry with a vlan and no name is named interface.vlan)", i, a.Interface, a.VLAN, a.Name)
		}
	}
	return ""
}

// subscriberFold counts the [[subscriber]] entries that one fault of an
// access or ISP fails: the first, the last, how many.
type subscriberFold struct{ first, last, n int }

func (f *subscriberFold) add(i int) {
	if f.n == 0 {
		f.first = i
	}
	f.last = i
	f.n++
}

// more is what the error at the first entry adds of the others ("" for
// none): how many, and up to which.
func (f subscriberFold) more(where string) string {
	switch f.n {
	case 0, 1:
		return ""
	case 2:
		return fmt.Sprintf("; so does 1 more [[subscriber]] entry %s, subscriber[%d]", where, f.last)
	}
	return fmt.Sprintf("; so do %d more [[subscriber]] entries %s, up to subscriber[%d]", f.n-1, where, f.last)
}
