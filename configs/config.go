package configs

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Version is the only configuration schema version this build reads.
const Version = 1

// Limits checked by validation.
const (
	MaxAccess           = 16  // [[access]] entries
	MaxAccessInterfaces = 16  // distinct access interfaces
	MaxISPs             = 250 // [[isp]] entries (VRF ids 0..249)
)

// Config is the whole configuration file. Fields tagged `toml:"-"` are
// resolved by Parse from the textual ones and are valid only on a Config
// that Parse returned without error.
type Config struct {
	Version     int          `toml:"version"`
	Appliance   Appliance    `toml:"appliance"`
	Datapath    Datapath     `toml:"datapath"`
	API         API          `toml:"api"`
	Metrics     Metrics      `toml:"metrics"`
	DHCP        DHCP         `toml:"dhcp"`
	Portal      Portal       `toml:"portal"`
	Access      []Access     `toml:"access"`
	ISPs        []ISP        `toml:"isp"`
	Subscribers []Subscriber `toml:"subscriber"`
}

// Appliance is the [appliance] table.
type Appliance struct {
	StateDir string `toml:"state_dir"` // absolute path; default /var/lib/ispmux
	LogLevel string `toml:"log_level"` // debug|info|warn|error; default info
	// EventRetention is how many events the event log keeps, the newest
	// (and at most 30 days of them): 1000..10,000,000, default 100,000.
	// A box of many subscribers wants more: one mass expiry ends each of
	// them with an event.
	EventRetention int `toml:"event_retention"`
}

// Event log retention limits.
const (
	MinEventRetention     = 1000
	MaxEventRetention     = 10_000_000
	DefaultEventRetention = 100_000
)

// Datapath is the [datapath] table: AF_XDP sizing, per socket.
type Datapath struct {
	Queues         int    `toml:"queues"`          // 1..64
	FrameSize      int    `toml:"frame_size"`      // 2048 or 4096
	Frames         int    `toml:"frames"`          // UMEM frames per socket, power of two, 64..262144
	RxRing         int    `toml:"rx_ring"`         // rings: power of two, 64..16384, <= Frames
	TxRing         int    `toml:"tx_ring"`         //
	FillRing       int    `toml:"fill_ring"`       //
	CompletionRing int    `toml:"completion_ring"` //
	Batch          int    `toml:"batch"`           // 1..256
	AttachMode     string `toml:"attach_mode"`     // native|skb
	BindMode       string `toml:"bind_mode"`       // auto|zerocopy|copy
	// FastPath is "xdp" (bound subscribers' traffic forwarded in the XDP
	// hook, package fastpath) or "off" (every frame to the AF_XDP
	// sockets).
	FastPath     string `toml:"fastpath"`
	PollTimeout  string `toml:"poll_timeout"`   // Go duration, 1ms..10s
	MACTableSize int    `toml:"mac_table_size"` // 1..16777216, >= number of subscribers

	PollTimeoutDur time.Duration `toml:"-"` // PollTimeout parsed
}

// DHCP is the [dhcp] table: the DHCP proxy's timers and limits.
type DHCP struct {
	// Timeout is how long an ISP has to answer a relayed request before
	// the subscriber is reported rejected (silence); Go duration, 1s..60s.
	Timeout string `toml:"timeout"`
	// MaxPending caps the transactions waiting for an ISP's answer; with
	// more than one ISP, one ISP's at three quarters of it.
	MaxPending int `toml:"max_pending"`
	// MACRate and MACBurst limit DHCP messages per subscriber MAC on
	// each access circuit (token bucket: per second, burst): a MAC's
	// messages on one circuit spend nothing of its budget on another.
	MACRate  int `toml:"mac_rate"`
	MACBurst int `toml:"mac_burst"`
	// CircuitRate and CircuitBurst limit DHCP messages per access circuit
	// (access port and VLAN).
	CircuitRate  int `toml:"circuit_rate"`
	CircuitBurst int `toml:"circuit_burst"`
	// MaxBindingsPerCircuit caps the leases on one access circuit.
	MaxBindingsPerCircuit int `toml:"max_bindings_per_circuit"`
	// ClientLeaseMax caps the lease a subscriber is given (options 51,
	// 58 = half of it and 59 = 7/8 rewritten by ispmux): the subscriber
	// renews with ispmux at least every half of it, which bounds how long
	// a move to another ISP takes to reach it. Go duration, 30s..24h.
	ClientLeaseMax string `toml:"client_lease_max"`

	TimeoutDur        time.Duration `toml:"-"` // Timeout parsed
	ClientLeaseMaxDur time.Duration `toml:"-"` // ClientLeaseMax parsed
}

// API is the [api] table: the management API (package api).
type API struct {
	Listen string `toml:"listen"` // host:port
	// TLSCert and TLSKey are PEM files (absolute paths), both or neither;
	// re-read on SIGHUP.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// Insecure allows a non-loopback Listen without TLS.
	Insecure bool `toml:"insecure"`
	// OperatorTokenFile holds the operator's token (or its sha256:).
	OperatorTokenFile string `toml:"operator_token_file"`
	// ClaimTokenFiles hold claim-scoped tokens (installers, the portal).
	ClaimTokenFiles []string `toml:"claim_token_files"`
	// MaxConnections caps the API's open connections.
	MaxConnections int `toml:"max_connections"`
	// MaxStreamsPerToken caps the event streams one token holds open.
	MaxStreamsPerToken int `toml:"max_streams_per_token"`
}

// Access is one [[access]] entry: a port (interface, optional VLAN) that
// subscribers are attached to.
type Access struct {
	Name      string `toml:"name"`      // unique; default Interface, or Interface.VLAN
	Interface string `toml:"interface"` // Linux interface name
	VLAN      int    `toml:"vlan"`      // 0 untagged, 1..4094
	Address   string `toml:"address"`   // optional IPv4: our gateway address on this side
	// Onboarding, when its table [access.onboarding] is present, serves
	// MACs without a device record on this circuit from ispmux's own
	// pool, in the walled garden (see portal.go).
	Onboarding Onboarding `toml:"onboarding"`

	Addr netip.Addr `toml:"-"` // Address parsed; invalid when absent
}

// ISP is one [[isp]] entry. Its position in the file is its VRF id.
type ISP struct {
	Name        string   `toml:"name"`         // [a-z0-9][a-z0-9-]{0,31}, unique
	DisplayName string   `toml:"display_name"` // shown on the portal; default Name
	Description string   `toml:"description"`  // shown on the portal; optional
	Uplink      string   `toml:"uplink"`       // Linux interface name
	VLAN        int      `toml:"vlan"`         // 0 untagged, 1..4094
	Address     string   `toml:"address"`      // our IPv4 address with its prefix length
	NextHop     string   `toml:"next_hop"`     // the ISP router, inside Address's subnet
	DHCPServers []string `toml:"dhcp_servers"` // optional IPv4 addresses
	// CircuitID is the Option 82 circuit-id template: {interface}, {vlan},
	// {access} and {mac} are replaced. Default "{interface}:{vlan}".
	CircuitID string `toml:"circuit_id"`
	// ServerIDOverride adds sub-option 11 (RFC 5107) with our access address.
	ServerIDOverride bool `toml:"server_id_override"`
	// LinkSelection, if set, adds sub-option 5 (RFC 3527): the subscriber
	// subnet the ISP should allocate from (IPv4 address in it).
	LinkSelection string `toml:"link_selection"`
	// VSS, if set, adds sub-option 151 (RFC 6607, NVT ASCII VPN id).
	VSS string `toml:"vss"`
	// TokenFiles are this ISP's API token files (at most two, so a token
	// can be rotated: add the new file, move clients, remove the old).
	TokenFiles []string `toml:"token_files"`

	// Webhook settings (package webhooks; see webhook.go for the checks):
	// WebhookURL, if set, receives a signed POST of each of this ISP's
	// events; WebhookSecretFile holds the signing secret (whsec_<base64>,
	// required with WebhookURL); WebhookCAFile, a PEM file, replaces the
	// system roots for verifying the receiver; WebhookInsecure allows
	// http:// to a host that is not loopback; WebhookRetryMax caps the
	// back-off between attempts (Go duration, 1s..1h, default 5m).
	WebhookURL        string `toml:"webhook_url"`
	WebhookSecretFile string `toml:"webhook_secret_file"`
	WebhookCAFile     string `toml:"webhook_ca_file"`
	WebhookInsecure   bool   `toml:"webhook_insecure"`
	WebhookRetryMax   string `toml:"webhook_retry_max"`

	WebhookRetryMaxDur time.Duration `toml:"-"` // WebhookRetryMax parsed

	Prefix            netip.Prefix `toml:"-"` // Address parsed, host bits kept (192.0.2.2/24)
	NextHopAddr       netip.Addr   `toml:"-"`
	DHCPServerAddrs   []netip.Addr `toml:"-"`
	LinkSelectionAddr netip.Addr   `toml:"-"` // LinkSelection parsed
	Index             int          `toml:"-"` // 0-based position in the file; the VRF id
}

// Subscriber is one [[subscriber]] entry: a statically registered customer.
type Subscriber struct {
	MAC        string `toml:"mac"`         // unicast, non-zero
	ISP        string `toml:"isp"`         // name of an [[isp]]
	IP         string `toml:"ip"`          // optional static IPv4 address
	CustomerID string `toml:"customer_id"` // optional
	Access     string `toml:"access"`      // optional name of the [[access]] it is pinned to; without it, served on any access (a static ip: on the first)
	Blocked    bool   `toml:"blocked"`     // registered but refused service

	HWAddr      [6]byte    `toml:"-"`
	Addr        netip.Addr `toml:"-"` // IP parsed; invalid when absent (bound by DHCP)
	AccessIndex int        `toml:"-"` // index into Config.Access
	ISPIndex    int        `toml:"-"` // index into Config.ISPs
}

// Default returns the values used for every key a file leaves out. It has
// no access, ISP or subscriber entries, so it does not validate on its own.
func Default() *Config {
	return &Config{
		Version: Version,
		Appliance: Appliance{
			StateDir:       "/var/lib/ispmux",
			LogLevel:       "info",
			EventRetention: DefaultEventRetention,
		},
		Datapath: Datapath{
			Queues:         1,
			FrameSize:      2048,
			Frames:         4096,
			RxRing:         2048,
			TxRing:         2048,
			FillRing:       2048,
			CompletionRing: 2048,
			Batch:          64,
			AttachMode:     "native",
			BindMode:       "auto",
			FastPath:       "off",
			PollTimeout:    "100ms",
			MACTableSize:   1 << 20,
		},
		API: API{
			Listen:             "127.0.0.1:8080",
			MaxConnections:     256,
			MaxStreamsPerToken: 4,
		},
		Portal: Portal{
			Interface:     DefaultPortalInterface,
			Link:          DefaultPortalLink,
			MaxOnboarding: DefaultMaxOnboarding,
		},
		DHCP: DHCP{
			Timeout:               "4s",
			MaxPending:            4096,
			MACRate:               4,
			MACBurst:              8,
			CircuitRate:           500,
			CircuitBurst:          1000,
			MaxBindingsPerCircuit: 4096,
			ClientLeaseMax:        "10m",
		},
	}
}

// Load reads the file at path and parses it (see Parse).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// StateDirOf is the state_dir of the configuration file at path, read
// leniently: whatever else the file holds, valid or not, once it parses as
// TOML and says version = Version (the default when [appliance] has
// none). ispmux ctl finds the
// control socket with it when Load refuses the file: ctl status is where
// an operator sees that a reload of that very file was refused.
func StateDirOf(path string) (string, error) {
	var f struct {
		Version   any `toml:"version"`
		Appliance struct {
			StateDir string `toml:"state_dir"`
		} `toml:"appliance"`
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if _, err := toml.Decode(string(data), &f); err != nil {
		// Not TOML (a refused reload's typo): its [appliance] table
		// alone, where the typo is not (a field trial's ctl status
		// stopped at the error it was to show).
		sec, ok := applianceTable(data)
		if !ok {
			return "", err
		}
		if _, serr := toml.Decode(sec, &f); serr != nil {
			return "", err
		}
		f.Version = int64(Version)
	}
	if f.Version != int64(Version) {
		return "", fmt.Errorf("%s: not a version %d configuration", path, Version)
	}
	if f.Appliance.StateDir == "" {
		return Default().Appliance.StateDir, nil
	}
	if !filepath.IsAbs(f.Appliance.StateDir) {
		return "", fmt.Errorf("%s: appliance.state_dir: %q is not an absolute path", path, f.Appliance.StateDir)
	}
	return f.Appliance.StateDir, nil
}

// applianceTable is the [appliance] table of a configuration's text, from
// its header to the next table's, and whether there is one.
func applianceTable(data []byte) (string, bool) {
	var b strings.Builder
	in, found := false, false
	for line := range strings.Lines(string(data)) {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "[") {
			in = t == "[appliance]" || strings.HasPrefix(t, "[appliance]") && strings.HasPrefix(strings.TrimSpace(t[len("[appliance]"):]), "#")
			found = found || in
			if in {
				b.WriteString("[appliance]\n")
			}
			continue
		}
		if in {
			b.WriteString(line)
		}
	}
	return b.String(), found
}

// Parse decodes data strictly, applies defaults and validates the result.
// file names the source in error messages. On failure the error is an
// Errors listing every problem found, and the Config is nil.
func Parse(file string, data []byte) (*Config, error) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			line, key := pe.Position.Line, pe.LastKey
			if strings.Contains(pe.Message, "table name") || strings.Contains(pe.Message, "table array name") {
				// A broken [table] header: LastKey is the table
				// before it, and a header cut by its newline is
				// reported on the line after.
				key = ""
				if strings.Contains(pe.Message, `'\n'`) && line > 1 {
					line--
				}
			} else if k := keyAt(data, line); k != "" {
				// The parser's LastKey has no array indices
				// ("isp.name") and, for a bad value, is the table
				// holding the key ("datapath" for batch = 4s).
				key = k
			}
			return nil, Errors{{File: file, Line: line, Key: key, Msg: oneLine(pe.Message)}}
		}
		return nil, Errors{{File: file, Msg: oneLine(err.Error())}}
	}
	c := newCollector(file, data)

	// The version selects the schema: nothing else is checked against a
	// schema the file did not ask for.
	switch v, ok := raw["version"]; {
	case !ok:
		// A misspelt version key is named where it is, too: a trial's
		// "versoin = 1" got "version: missing" alone, with no line.
		top := map[string]int{}
		for i, t := 0, reflect.TypeFor[Config](); i < t.NumField(); i++ {
			if tag := t.Field(i).Tag.Get("toml"); tag != "" && tag != "-" {
				top[tag] = i
			}
		}
		for _, k := range slices.Sorted(maps.Keys(raw)) {
			if _, known := top[k]; !known && suggest(k, map[string]int{"version": 0}) != "" {
				c.add(quoteKey(k), "unknown key"+suggest(k, top))
			}
		}
		c.add("version", fmt.Sprintf("missing (add version = %d at the top)", Version))
		return nil, c.result()
	case v != int64(Version):
		if _, isInt := v.(int64); !isInt {
			c.add("version", fmt.Sprintf("expected an integer, got %s", describe(v)))
		} else {
			c.add("version", fmt.Sprintf("unsupported version %v (this build reads version %d)", v, Version))
		}
		return nil, c.result()
	}

	cfg := Default()
	d := &decoder{c: c, defined: map[string]bool{}}
	d.table("", raw, reflectValue(cfg))
	validate(cfg, c, d.defined)
	if err := c.result(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// ServesAPI reports whether the management API listens: it does when some
// token file is configured (operator, claim or an ISP's); without one the
// tenant API is served on the control socket only.
func (c *Config) ServesAPI() bool {
	if c.API.OperatorTokenFile != "" || len(c.API.ClaimTokenFiles) > 0 {
		return true
	}
	for _, p := range c.ISPs {
		if len(p.TokenFiles) > 0 {
			return true
		}
	}
	return false
}

// Summary describes the configuration in a few lines, for `ispmux check`.
func (c *Config) Summary() string {
	var b strings.Builder
	dp := c.Datapath
	api := "api on " + c.API.Listen
	if !c.ServesAPI() {
		api = "api: control socket only (no token files: nothing listens on " + c.API.Listen + ")"
	}
	metrics := "metrics off"
	if c.Metrics.Enabled() {
		scheme := "http"
		if c.Metrics.TLSCert != "" {
			scheme = "https"
		}
		metrics = "metrics on " + c.Metrics.Listen + " (" + scheme + ")"
	}
	fmt.Fprintf(&b, "config version %d, state in %s (event log: the newest %d), log level %s, %s, %s\n",
		c.Version, c.Appliance.StateDir, c.Appliance.EventRetention, c.Appliance.LogLevel, api, metrics)
	fmt.Fprintf(&b, "datapath: %d queue(s), %d frames of %d B, rings rx/tx/fill/comp %d/%d/%d/%d, batch %d, attach %s, bind %s, poll %s, mac table %d, fast path %s\n",
		dp.Queues, dp.Frames, dp.FrameSize, dp.RxRing, dp.TxRing, dp.FillRing, dp.CompletionRing,
		dp.Batch, dp.AttachMode, dp.BindMode, dp.PollTimeoutDur, dp.MACTableSize, dp.FastPath)
	perAccess := make([]int, len(c.Access))
	perISP := make([]int, len(c.ISPs))
	static := 0
	anyAccess := 0
	for _, s := range c.Subscribers {
		switch {
		case s.Access == "" && !s.Addr.IsValid():
			anyAccess++ // served on every access (not pinned)
		case s.AccessIndex >= 0 && s.AccessIndex < len(perAccess):
			perAccess[s.AccessIndex]++
		}
		if s.ISPIndex >= 0 && s.ISPIndex < len(perISP) {
			perISP[s.ISPIndex]++
		}
		if s.Addr.IsValid() {
			static++
		}
	}
	for i, a := range c.Access {
		fmt.Fprintf(&b, "access %s: interface %s", a.Name, a.Interface)
		if a.VLAN != 0 {
			fmt.Fprintf(&b, " vlan %d", a.VLAN)
		} else {
			b.WriteString(" untagged")
		}
		if a.Addr.IsValid() {
			fmt.Fprintf(&b, ", address %s", a.Addr)
		}
		if o := a.Onboarding; o.Enabled {
			fmt.Fprintf(&b, ", onboarding pool %s (router %s, lease %s, at most %d)", o.PoolPrefix, o.Router(), o.LeaseTimeDur, o.MaxLeases)
		}
		fmt.Fprintf(&b, ", %d subscriber(s)\n", perAccess[i])
	}
	if anyAccess > 0 {
		fmt.Fprintf(&b, "any access: %d DHCP subscriber(s) without an access key, served on every access\n", anyAccess)
	}
	for i, p := range c.ISPs {
		fmt.Fprintf(&b, "isp %s (vrf %d): uplink %s", p.Name, p.Index, p.Uplink)
		if p.VLAN != 0 {
			fmt.Fprintf(&b, " vlan %d", p.VLAN)
		} else {
			b.WriteString(" untagged")
		}
		fmt.Fprintf(&b, ", address %s, next hop %s", p.Prefix, p.NextHopAddr)
		if len(p.DHCPServerAddrs) > 0 {
			fmt.Fprintf(&b, ", dhcp servers %v", p.DHCPServerAddrs)
		}
		// The circuit-id goes to every ISP (default or not); the other
		// Option 82 sub-options only where set.
		fmt.Fprintf(&b, ", circuit-id %q", p.CircuitID)
		if p.ServerIDOverride {
			b.WriteString(", server-id override")
		}
		if p.LinkSelectionAddr.IsValid() {
			fmt.Fprintf(&b, ", link selection %s", p.LinkSelectionAddr)
		}
		if p.VSS != "" {
			fmt.Fprintf(&b, ", vss %q", p.VSS)
		}
		b.WriteString(p.webhookSummary())
		fmt.Fprintf(&b, ", %d subscriber(s)\n", perISP[i])
	}
	if p := c.Portal; p.Enabled {
		fmt.Fprintf(&b, "portal: https://%s/ at %s, link %s %s, at most %d onboarding\n", p.Hostname, p.Addr, p.Interface, p.LinkPrefix, p.MaxOnboarding)
	}
	fmt.Fprintf(&b, "subscribers: %d registered, %d with a static ip\n", len(c.Subscribers), static)
	return b.String()
}
