package configs

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Portal is the [portal] table: the captive portal onboarding subscribers
// (and, later, bound ones) reach to choose their ISP. Its presence turns
// the portal on; [access.onboarding] needs it.
type Portal struct {
	// Hostname is the portal's DNS name (never an IP literal): the
	// certificate's name, the user portal URL https://Hostname/ and the
	// RFC 8910 captive-portal API URI https://Hostname/api/captive.
	Hostname string `toml:"hostname"`
	// Address is the portal's IPv4 address: outside every ISP's address
	// plan, every onboarding pool and the portal link.
	Address string `toml:"address"`
	// TLSCert and TLSKey are PEM files (absolute paths) for Hostname;
	// re-read on SIGHUP.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// DNSNames, if set, are the only names the walled garden's DNS
	// answers (with Address); every other name is NXDOMAIN. Empty: every
	// name resolves to Address (so any http:// URL lands on the portal).
	DNSNames []string `toml:"dns_names"`
	// MaxOnboarding caps the onboarding leases and offers over every
	// access circuit (each circuit has its own cap too).
	MaxOnboarding int `toml:"max_onboarding"`
	// Interface is the name of ispmux's end of the link to the portal's
	// network namespace (created by ispmux at start).
	Interface string `toml:"interface"`
	// Link is the IPv4 /30 of that link: ispmux takes its first host
	// address, the portal namespace the second.
	Link string `toml:"link"`

	Enabled    bool         `toml:"-"` // the [portal] table is present
	Addr       netip.Addr   `toml:"-"` // Address parsed
	LinkPrefix netip.Prefix `toml:"-"` // Link parsed (masked)
}

// CaptiveURI is the RFC 8908 API URI announced in DHCP option 114.
func (p *Portal) CaptiveURI() string { return "https://" + p.Hostname + "/api/captive" }

// Onboarding is an [access.onboarding] table (under an [[access]] entry):
// MACs with no device record get a short lease from ispmux's own pool and
// reach only the portal until they choose an ISP there.
type Onboarding struct {
	// Pool is the IPv4 prefix leased from (/8../29, host bits zero). Its
	// first address is the subscribers' router (ispmux answers for it);
	// the network and broadcast addresses are not leased.
	Pool string `toml:"pool"`
	// LeaseTime is the onboarding lease (Go duration, 10s..1h; default
	// 20s). T1 is half of it, so a device renews, and after a choice on
	// the portal is moved to its ISP, within LeaseTime/2.
	LeaseTime string `toml:"lease_time"`
	// MaxLeases caps the leases and offers on this circuit (default: the
	// pool's leasable addresses).
	MaxLeases int `toml:"max_leases"`

	Enabled      bool          `toml:"-"` // the table is present
	PoolPrefix   netip.Prefix  `toml:"-"` // Pool parsed
	LeaseTimeDur time.Duration `toml:"-"` // LeaseTime parsed
}

// Router is the pool's first address: the onboarding subscribers' router.
func (o *Onboarding) Router() netip.Addr { return o.PoolPrefix.Addr().Next() }

// Leasable is the number of addresses the pool leases (all but network,
// router and broadcast).
func (o *Onboarding) Leasable() int { return 1<<(32-o.PoolPrefix.Bits()) - 3 }

// Portal defaults.
const (
	DefaultPortalInterface = "ispmux-portal"
	DefaultPortalLink      = "169.254.80.0/30"
	DefaultMaxOnboarding   = 4096
	DefaultOnboardingLease = 20 * time.Second
)

// hostnameProblem checks a DNS host name (RFC 1123 labels, at least two).
func hostnameProblem(h string) string {
	if _, err := netip.ParseAddr(h); err == nil {
		return fmt.Sprintf("must be a DNS name, not an IP address (%q): the certificate and the captive-portal URI name it", h)
	}
	if len(h) == 0 || len(h) > 253 {
		return fmt.Sprintf("must be a DNS name of 1..253 characters, got %q", h)
	}
	labels := strings.Split(h, ".")
	if len(labels) < 2 {
		return fmt.Sprintf("must be a fully qualified name (e.g. portal.example.net), got %q", h)
	}
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Sprintf("bad label %q in %q", l, h)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Sprintf("bad character %q in %q (letters, digits and '-' only)", c, h)
			}
		}
	}
	return ""
}

// portal checks [portal] and every [access.onboarding], after access() and
// isps() resolved their addresses.
func (v *validator) portal() {
	p := &v.cfg.Portal
	p.Enabled = v.defined["portal"]
	for i := range v.cfg.ISPs {
		isp := &v.cfg.ISPs[i]
		key := indexKey("isp", i)
		if isp.DisplayName == "" {
			isp.DisplayName = isp.Name
		} else if len(isp.DisplayName) > 64 || strings.ContainsFunc(isp.DisplayName, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			v.errorf(key+".display_name", "must be 1..64 printable characters, got %q", isp.DisplayName)
		}
		if len(isp.Description) > 500 || strings.ContainsFunc(isp.Description, func(r rune) bool { return r < ' ' && r != '\n' || r == 0x7f }) {
			v.errorf(key+".description", "must be at most 500 printable characters")
		}
	}
	if p.Enabled {
		v.portalTable()
	}
	type used struct {
		pfx netip.Prefix
		key string
	}
	var taken []used
	if p.Enabled && p.LinkPrefix.IsValid() {
		taken = append(taken, used{p.LinkPrefix, "portal.link"})
	}
	for _, isp := range v.cfg.ISPs {
		if isp.Prefix.IsValid() {
			taken = append(taken, used{isp.Prefix.Masked(), indexKey("isp", isp.Index) + ".address"})
		}
	}
	for i := range v.cfg.Access {
		a := &v.cfg.Access[i]
		key := indexKey("access", i) + ".onboarding"
		o := &a.Onboarding
		o.Enabled = v.defined[key]
		if !o.Enabled {
			continue
		}
		if !p.Enabled {
			v.errorf(key, "needs a [portal] table: onboarding subscribers get the portal's address as DNS and its captive-portal URI")
		}
		if !a.Addr.IsValid() && !v.c.failed(indexKey("access", i)+".address") {
			v.errorf(key, "access %s needs an address: it is the DHCP server identifier onboarding subscribers see", a.Name)
		}
		pfx, err := netip.ParsePrefix(o.Pool)
		switch {
		case !v.defined[key+".pool"]:
			v.errorf(key+".pool", "missing (an IPv4 prefix, e.g. \"100.64.0.0/22\")")
		case err != nil || !pfx.Addr().Is4():
			v.errorf(key+".pool", "must be an IPv4 prefix (e.g. \"100.64.0.0/22\"), got %q", o.Pool)
		case pfx.Bits() < 8 || pfx.Bits() > 29:
			v.errorf(key+".pool", "must be /8../29 (a router, a client, the network and broadcast addresses), got /%d", pfx.Bits())
		case pfx != pfx.Masked():
			v.errorf(key+".pool", "host bits set: write %s", pfx.Masked())
		case specialProblem(pfx.Addr().Next()) != "":
			v.errorf(key+".pool", "%s", specialProblem(pfx.Addr().Next()))
		default:
			o.PoolPrefix = pfx
			for _, t := range taken {
				if t.pfx.Overlaps(pfx) {
					v.errorf(key+".pool", "%s overlaps %s (%s)", pfx, t.pfx, t.key)
				}
			}
			if p.Addr.IsValid() && pfx.Contains(p.Addr) {
				v.errorf(key+".pool", "%s contains the portal's address %s", pfx, p.Addr)
			}
			for j, b := range v.cfg.Access {
				if b.Addr.IsValid() && pfx.Contains(b.Addr) {
					v.errorf(key+".pool", "%s contains access %s's address %s", pfx, v.cfg.Access[j].Name, b.Addr)
				}
			}
			taken = append(taken, used{pfx, key + ".pool"})
		}
		o.LeaseTimeDur = DefaultOnboardingLease
		if v.defined[key+".lease_time"] {
			d, err := time.ParseDuration(o.LeaseTime)
			switch {
			case err != nil:
				v.errorf(key+".lease_time", "not a duration (e.g. \"20s\"): %q", o.LeaseTime)
			case d < 10*time.Second || d > time.Hour:
				v.errorf(key+".lease_time", "must be 10s..1h, got %s", d)
			default:
				o.LeaseTimeDur = d
			}
		}
		if o.PoolPrefix.IsValid() {
			if !v.defined[key+".max_leases"] {
				o.MaxLeases = o.Leasable()
			} else if o.MaxLeases < 1 || o.MaxLeases > o.Leasable() {
				v.errorf(key+".max_leases", "must be 1..%d (the pool's leasable addresses), got %d", o.Leasable(), o.MaxLeases)
			}
		}
	}
}

// portalTable checks the [portal] table's own keys.
func (v *validator) portalTable() {
	p := &v.cfg.Portal
	if !v.defined["portal.hostname"] {
		v.errorf("portal.hostname", "missing (the portal's DNS name, e.g. \"portal.example.net\")")
	} else if pr := hostnameProblem(p.Hostname); pr != "" {
		v.errorf("portal.hostname", "%s", pr)
	} else {
		p.Hostname = strings.ToLower(p.Hostname)
	}
	if !v.defined["portal.address"] {
		v.errorf("portal.address", "missing (the portal's IPv4 address, outside every ISP's address plan)")
	} else if a, pr := parseIPv4(p.Address); pr != "" {
		v.errorf("portal.address", "%s", pr)
	} else if pr := specialProblem(a); pr != "" {
		v.errorf("portal.address", "%s", pr)
	} else {
		p.Addr = a
		for _, isp := range v.cfg.ISPs {
			if isp.Prefix.IsValid() && isp.Prefix.Masked().Contains(a) {
				v.errorf("portal.address", "%s is inside isp %s's uplink subnet %s: the portal's address must lie outside every ISP's address plan", a, isp.Name, isp.Prefix.Masked())
			}
		}
		for _, ac := range v.cfg.Access {
			if ac.Addr == a {
				v.errorf("portal.address", "%s is access %s's address", a, ac.Name)
			}
		}
	}
	for _, k := range []struct{ key, val string }{{"portal.tls_cert", p.TLSCert}, {"portal.tls_key", p.TLSKey}} {
		switch {
		case !v.defined[k.key]:
			v.errorf(k.key, "missing: the portal is served over HTTPS only (a PEM file for %s)", p.Hostname)
		case !strings.HasPrefix(k.val, "/"):
			v.errorf(k.key, "must be an absolute path, got %q", k.val)
		}
	}
	seen := map[string]bool{}
	for i, n := range p.DNSNames {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if pr := hostnameProblem(n); pr != "" {
			v.errorf(fmt.Sprintf("portal.dns_names[%d]", i), "%s", pr)
		} else if seen[n] {
			v.errorf(fmt.Sprintf("portal.dns_names[%d]", i), "duplicate name %q", n)
		}
		seen[n] = true
		p.DNSNames[i] = n
	}
	if len(p.DNSNames) > 0 && p.Hostname != "" && !seen[p.Hostname] {
		v.errorf("portal.dns_names", "must include the portal's hostname %q (else it would not resolve in the walled garden)", p.Hostname)
	}
	if p.MaxOnboarding < 1 || p.MaxOnboarding > 1<<20 {
		v.errorf("portal.max_onboarding", "must be 1..1048576, got %d", p.MaxOnboarding)
	}
	if pr := ifnameProblem(p.Interface); pr != "" {
		v.errorf("portal.interface", "%s", pr)
	} else {
		for i, a := range v.cfg.Access {
			if a.Interface == p.Interface {
				v.errorf("portal.interface", "%s is access[%d]'s interface: ispmux creates the portal's link itself", p.Interface, i)
			}
		}
		for i, isp := range v.cfg.ISPs {
			if isp.Uplink == p.Interface {
				v.errorf("portal.interface", "%s is isp[%d]'s uplink: ispmux creates the portal's link itself", p.Interface, i)
			}
		}
	}
	if l, err := netip.ParsePrefix(p.Link); err != nil || !l.Addr().Is4() || l.Bits() != 30 || l != l.Masked() {
		v.errorf("portal.link", "must be an IPv4 /30 with host bits zero (e.g. %q), got %q", DefaultPortalLink, p.Link)
	} else {
		p.LinkPrefix = l
		if p.Addr.IsValid() && l.Contains(p.Addr) {
			v.errorf("portal.link", "%s contains the portal's address", l)
		}
		for _, isp := range v.cfg.ISPs {
			if isp.Prefix.IsValid() && isp.Prefix.Masked().Overlaps(l) {
				v.errorf("portal.link", "%s overlaps isp %s's uplink subnet %s", l, isp.Name, isp.Prefix.Masked())
			}
		}
	}
	// Subscribers in the walled garden must reach nothing of the host but
	// the portal: the portal lives in its own network namespace, and a
	// management API on every address is refused outright.
	if host, _, err := net.SplitHostPort(v.cfg.API.Listen); err == nil && !v.c.failed("api.listen") {
		if a, err := netip.ParseAddr(host); host == "" || err == nil && a.IsUnspecified() {
			v.errorf("api.listen", "%q listens on every address, which the portal forbids: name the management address (subscribers must reach no listener of the appliance but the portal)", v.cfg.API.Listen)
		}
	}
}
