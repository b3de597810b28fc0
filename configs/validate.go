package configs

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"time"
)

// Validation is split by section. This file holds the entry point, the
// validator, the appliance's own tables ([appliance], [datapath], [dhcp])
// and the checks the sections share (interface names, VLANs, IPv4
// addresses). The other sections: validate_api.go ([api]),
// validate_access.go ([[access]]), validate_isp.go ([[isp]]),
// validate_option82.go (the Option 82 an ISP's relayed requests carry),
// validate_subscriber.go ([[subscriber]]) and validate_listen.go (the
// management listeners against the portal's addresses);
// metrics.go, webhook.go and portal.go check the keys they define.

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
	v.listenAddrs()
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
	if a.EventRetention < MinEventRetention || a.EventRetention > MaxEventRetention {
		v.errorf("appliance.event_retention", "must be %d..%d events, got %d", MinEventRetention, MaxEventRetention, a.EventRetention)
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
	switch d.FastPath {
	case "off", "xdp":
	default:
		v.errorf("datapath.fastpath", "must be off or xdp, got %q", d.FastPath)
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

// ifnameProblem checks Linux interface name rules (dev_valid_name).
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

// vlan checks an optional VLAN id.
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
