package configs

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ispmux/ispmux/internal/circuitid"
)

// validate checks every value and cross reference of cfg (already decoded
// over the defaults) and fills the resolved fields. defined holds the paths
// the file set. Problems go to c; keys that failed to decode are skipped
// there (the collector keeps one error per key).
func validate(cfg *Config, c *collector, defined map[string]bool) {
	v := &validator{cfg: cfg, c: c, defined: defined}
	v.appliance()
	v.datapath()
	v.api()
	v.metrics()
	v.dhcp()
	v.access()
	v.isps()
	v.webhooks()
	v.portal()
	v.subscribers()
}

type validator struct {
	cfg     *Config
	c       *collector
	defined map[string]bool
}

func (v *validator) errorf(key, format string, args ...any) {
	v.c.add(key, fmt.Sprintf(format, args...))
}

func (v *validator) appliance() {
	a := &v.cfg.Appliance
	if a.StateDir == "" || !filepath.IsAbs(a.StateDir) {
		v.errorf("appliance.state_dir", "must be an absolute path, got %q", a.StateDir)
	}
	switch a.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		v.errorf("appliance.log_level", "must be one of debug, info, warn, error; got %q", a.LogLevel)
	}
}

func isPow2(n int) bool { return n > 0 && n&(n-1) == 0 }

func (v *validator) datapath() {
	d := &v.cfg.Datapath
	if d.Queues < 1 || d.Queues > 64 {
		v.errorf("datapath.queues", "must be 1..64, got %d", d.Queues)
	}
	if d.FrameSize != 2048 && d.FrameSize != 4096 {
		v.errorf("datapath.frame_size", "must be 2048 or 4096, got %d", d.FrameSize)
	}
	framesOK := isPow2(d.Frames) && d.Frames >= 64 && d.Frames <= 262144
	if !framesOK {
		v.errorf("datapath.frames", "must be a power of two in 64..262144, got %d", d.Frames)
	}
	for _, r := range []struct {
		key string
		n   int
	}{
		{"datapath.rx_ring", d.RxRing},
		{"datapath.tx_ring", d.TxRing},
		{"datapath.fill_ring", d.FillRing},
		{"datapath.completion_ring", d.CompletionRing},
	} {
		switch {
		case !isPow2(r.n) || r.n < 64 || r.n > 16384:
			v.errorf(r.key, "must be a power of two in 64..16384, got %d", r.n)
		case framesOK && r.n > d.Frames:
			v.errorf(r.key, "%d is more than datapath.frames (%d): a ring cannot hold more frames than the UMEM has", r.n, d.Frames)
		}
	}
	if d.Batch < 1 || d.Batch > 256 {
		v.errorf("datapath.batch", "must be 1..256, got %d", d.Batch)
	}
	switch d.AttachMode {
	case "native", "skb":
	default:
		v.errorf("datapath.attach_mode", "must be native or skb, got %q", d.AttachMode)
	}
	switch d.BindMode {
	case "auto", "zerocopy", "copy":
	default:
		v.errorf("datapath.bind_mode", "must be auto, zerocopy or copy, got %q", d.BindMode)
	}
	if dur, err := time.ParseDuration(d.PollTimeout); err != nil {
		v.errorf("datapath.poll_timeout", "not a duration (e.g. \"100ms\"): %q", d.PollTimeout)
	} else if dur < time.Millisecond || dur > 10*time.Second {
		v.errorf("datapath.poll_timeout", "must be 1ms..10s, got %s", dur)
	} else {
		d.PollTimeoutDur = dur
	}
	if d.MACTableSize < 1 || d.MACTableSize > 1<<24 {
		v.errorf("datapath.mac_table_size", "must be 1..16777216, got %d", d.MACTableSize)
	} else if n := len(v.cfg.Subscribers); d.MACTableSize < n {
		v.errorf("datapath.mac_table_size", "%d is less than the %d [[subscriber]] entries", d.MACTableSize, n)
	}
}

func (v *validator) dhcp() {
	d := &v.cfg.DHCP
	if dur, err := time.ParseDuration(d.Timeout); err != nil {
		v.errorf("dhcp.timeout", "not a duration (e.g. \"4s\"): %q", d.Timeout)
	} else if dur < time.Second || dur > time.Minute {
		v.errorf("dhcp.timeout", "must be 1s..60s, got %s", dur)
	} else {
		d.TimeoutDur = dur
	}
	if dur, err := time.ParseDuration(d.ClientLeaseMax); err != nil {
		v.errorf("dhcp.client_lease_max", "not a duration (e.g. \"10m\"): %q", d.ClientLeaseMax)
	} else if dur < 30*time.Second || dur > 24*time.Hour || dur%time.Second != 0 {
		v.errorf("dhcp.client_lease_max", "must be whole seconds, 30s..24h, got %s", dur)
	} else {
		d.ClientLeaseMaxDur = dur
	}
	for _, r := range []struct {
		key    string
		n, max int
	}{
		{"dhcp.max_pending", d.MaxPending, 1 << 20},
		{"dhcp.mac_rate", d.MACRate, 1000},
		{"dhcp.mac_burst", d.MACBurst, 10000},
		{"dhcp.circuit_rate", d.CircuitRate, 1 << 20},
		{"dhcp.circuit_burst", d.CircuitBurst, 1 << 20},
		{"dhcp.max_bindings_per_circuit", d.MaxBindingsPerCircuit, 1 << 24},
	} {
		if r.n < 1 || r.n > r.max {
			v.errorf(r.key, "must be 1..%d, got %d", r.max, r.n)
		}
	}
}

func (v *validator) api() {
	a := &v.cfg.API
	v.apiFiles()
	if a.MaxConnections < 1 || a.MaxConnections > 65536 {
		v.errorf("api.max_connections", "must be 1..65536, got %d", a.MaxConnections)
	}
	if a.MaxStreamsPerToken < 1 || a.MaxStreamsPerToken > 1024 {
		v.errorf("api.max_streams_per_token", "must be 1..1024, got %d", a.MaxStreamsPerToken)
	}
	l := a.Listen
	host, port, err := net.SplitHostPort(l)
	if err != nil {
		v.errorf("api.listen", "must be host:port (e.g. \"127.0.0.1:8080\"), got %q", l)
		return
	}
	if strings.ContainsAny(host, " \t") {
		v.errorf("api.listen", "bad host %q", host)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		v.errorf("api.listen", "port must be a number in 1..65535, got %q", port)
		return
	}
	if a.TLSCert == "" && !a.Insecure && !IsLoopbackHost(host) && !v.c.failed("api.tls_cert") && !v.c.failed("api.tls_key") {
		v.errorf("api.listen", "%q is not a loopback address: serving the API there needs tls_cert and tls_key (or insecure = true to send tokens in clear text)", l)
	}
}

// IsLoopbackHost reports whether host (of a listen address) is "localhost"
// or a loopback IP address. An empty host (all addresses) and other names
// are not.
func IsLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	h, _, _ := strings.Cut(host, "%")
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsLoopback()
}

// apiFiles checks the paths of the TLS and token files: absolute, TLS both
// or neither, at most two token files per ISP, no file named twice. The
// files themselves are read when the API starts (package auth, api).
func (v *validator) apiFiles() {
	a := &v.cfg.API
	paths := map[string]string{} // path → key that named it first
	file := func(key, p string) {
		switch {
		case p == "":
			v.errorf(key, "empty path")
		case !filepath.IsAbs(p):
			v.errorf(key, "must be an absolute path, got %q", p)
		default:
			c := filepath.Clean(p)
			if other, dup := paths[c]; dup {
				v.errorf(key, "%s is already named by %s (one file, one token)", p, other)
				return
			}
			paths[c] = key
		}
	}
	switch {
	case a.TLSCert != "" && a.TLSKey == "":
		v.errorf("api.tls_key", "missing: tls_cert is set, tls_key must be too")
	case a.TLSCert == "" && a.TLSKey != "":
		v.errorf("api.tls_cert", "missing: tls_key is set, tls_cert must be too")
	}
	if a.TLSCert != "" {
		file("api.tls_cert", a.TLSCert)
	}
	if a.TLSKey != "" {
		file("api.tls_key", a.TLSKey)
	}
	if v.defined["api.operator_token_file"] || a.OperatorTokenFile != "" {
		file("api.operator_token_file", a.OperatorTokenFile)
	}
	for i, p := range v.cfg.ISPs {
		key := indexKey("isp", i) + ".token_files"
		if len(p.TokenFiles) > 2 {
			v.errorf(key, "at most two token files per ISP (the current one and the next, for rotation), got %d", len(p.TokenFiles))
		}
		for j, f := range p.TokenFiles {
			file(fmt.Sprintf("%s[%d]", key, j), f)
		}
	}
	for i, f := range a.ClaimTokenFiles {
		file(fmt.Sprintf("api.claim_token_files[%d]", i), f)
	}
}

// ifname checks Linux interface name rules (dev_valid_name).
func ifnameProblem(s string) string {
	switch {
	case s == "":
		return "missing (a Linux interface name)"
	case len(s) > 15:
		return fmt.Sprintf("interface name %q is longer than 15 bytes", s)
	case s == "." || s == "..":
		return fmt.Sprintf("bad interface name %q", s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '/' || c == ':' || c <= ' ' || c == 0x7f {
			return fmt.Sprintf("bad interface name %q: no '/', ':', blanks or control characters", s)
		}
	}
	return ""
}

// vlanOK checks an optional VLAN id.
func (v *validator) vlan(key string, id int) bool {
	if id < 0 || id > 4094 {
		v.errorf(key, "must be 0 (untagged) or 1..4094, got %d", id)
		return false
	}
	return true
}

// parseIPv4 parses a plain IPv4 address.
func parseIPv4(s string) (netip.Addr, string) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Sprintf("not an IPv4 address: %q", s)
	}
	return a, ""
}

// specialProblem rejects addresses no host can have.
func specialProblem(a netip.Addr) string {
	switch {
	case a.IsUnspecified() || a.As4()[0] == 0:
		return fmt.Sprintf("%s is an unspecified (\"this network\") address", a)
	case a.IsLoopback():
		return fmt.Sprintf("%s is a loopback address", a)
	case a.IsMulticast():
		return fmt.Sprintf("%s is a multicast address", a)
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Sprintf("%s is the broadcast address", a)
	}
	return ""
}

// edgeProblem rejects the network and broadcast addresses of p (when p has
// them: prefixes up to /30).
func edgeProblem(a netip.Addr, p netip.Prefix) string {
	if !p.IsValid() || p.Bits() > 30 || !p.Contains(a) {
		return ""
	}
	if a == p.Masked().Addr() {
		return fmt.Sprintf("%s is the network address of %s", a, p.Masked())
	}
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	u := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	if a == netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)}) {
		return fmt.Sprintf("%s is the broadcast address of %s", a, p.Masked())
	}
	return ""
}

type port struct {
	ifname string
	vlan   int
}

func (p port) String() string {
	if p.vlan == 0 {
		return p.ifname + " (untagged)"
	}
	return fmt.Sprintf("%s vlan %d", p.ifname, p.vlan)
}

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
				v.errorf(key+".access", "no [[access]] is named %q", s.Access)
			}
		}

		// The customer ID goes to the ISP as the Option 82 subscriber-id
		// (RFC 3993), next to the ISP's other sub-options: all of them
		// must fit the one option. A subscriber registered without an
		// access may ask on any access port.
		if s.CustomerID != "" && s.ISPIndex >= 0 && !v.option82Failed(indexKey("isp", s.ISPIndex)) && !v.c.failed(key+".access") {
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
			// access port's address as its server identifier.
			if s.AccessIndex >= 0 && !cfg.Access[s.AccessIndex].Addr.IsValid() && !s.Blocked {
				v.errorf(key+".ip", "missing, and access %q has no address: a DHCP subscriber needs the access port's address (ispmux's server identifier)", cfg.Access[s.AccessIndex].Name)
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
