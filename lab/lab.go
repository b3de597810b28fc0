// Package lab builds the ispmux test bed out of Linux network namespaces:
// subscribers behind a shared access bridge, the appliance namespace in which
// ispmux runs, and one router plus one host per ISP. The demo, the end-to-end
// tests and the benchmarks use it; production never does.
//
// # Topology
//
// Every namespace name is an ID ("ispmux" by default; tests pass unique
// ones), a dash and a role: app, acc, ispa…, ha…, s1…s200, gen (names.go).
// Down removes exactly those of its ID, no other namespace that happens to
// start with "ID-" (another lab's ID-b-s1, a user's ID-x). Interface names
// inside the namespaces are short fixed names, since each namespace has its
// own name space for links.
//
//	ID-s1  [eth0 02:00:00:00:01:01 100.64.0.11/24 gw .1]──p1─┐
//	ID-s2  [eth0 02:00:00:00:01:02 100.64.0.12/24 gw .1]──p2─┤ ID-acc: bridge br0
//	ID-s3  [eth0 02:00:00:00:01:03 100.64.0.11/24 gw .1]──p3─┤ (p* isolated: no
//	  ...                                                    │  subscriber-to-
//	                                                        up0  subscriber L2)
//	                                                         │ veth
//	            ID-app (the appliance, ispmux runs here)  [acc0 02:00:00:00:a0:00]
//	            no addresses, ip_forward=0, rp_filter=0   [acc1 02:00:00:00:a0:01]──veth──[eth0] ID-gen
//	                                                      │        (only with Options.Generator)
//	  [upa 02:00:00:00:a1:01]──veth──[eth0 02:00:00:00:b1:01 192.0.2.1/24] ID-ispa (router "alpha")
//	                                 [h0 198.51.100.1/24]──veth──[eth0 198.51.100.10/24] ID-ha
//	  [upb 02:00:00:00:a1:02]──veth──[eth0 02:00:00:00:b1:02 192.0.2.1/24] ID-ispb (router "beta")
//	                                 [h0 198.51.100.1/24]──veth──[eth0 198.51.100.10/24] ID-hb
//
// The ISP routers forward (ip_forward=1) and route 100.64.0.0/16 (and
// 100.65.0.0/16, the benchmark's synthetic subscribers, when the generator is
// present) via 192.0.2.2, ispmux's address on the uplink. Both ISPs use the
// same addressing: their plans overlap, as they may in the field.
//
// Subscribers are assigned deterministically: s1 → alpha 100.64.0.11,
// s2 → beta 100.64.0.12, s3 → beta 100.64.0.11 (the same address as s1 at
// another ISP), then s4, s5, ... cycle over the ISPs starting with alpha, with
// addresses 100.64.0.13, .14, ....
//
// IPv6 is disabled in every namespace so that no stray traffic appears; the
// MTU is 1500 everywhere and every MAC address is fixed.
//
// # DHCP lab
//
// With [Options.DHCP] the subscribers start with no address and no route
// (they run DHCP clients: [Topology.Dhclient], [Topology.Udhcpc]), each has a
// customer ID, and every ISP namespace runs kea-dhcp4 on eth0 as a validating
// ISP DHCP server. ispmux relays to it with Option 82 (giaddr 192.0.2.2,
// remote-id = the MAC as 6 bytes, subscriber-id = the customer ID):
//
//	sub  MAC                customer  in ispmux's config  ISP's Kea          role
//	s1   02:00:00:00:01:01  c-s1      alpha               knows it           RoleValid
//	s2   02:00:00:00:01:02  c-s2      beta                knows it           RoleValid
//	s3   02:00:00:00:01:03  c-s3      beta                knows it           RoleValid
//	s4   02:00:00:00:01:04  c-s4      alpha               silent (unknown)   RoleRefused
//	s5   02:00:00:00:01:05  c-s5      absent              -                  RoleUnregistered
//	s6…  02:00:00:00:01:06  c-s6      cycle from alpha    knows it           RoleValid
//
// Kea ([Topology.KeaConfigJSON]): subnet 100.64.0.0/24 (id 1) selected by
// relay address 192.0.2.2 or by link selection 100.64.0.1, pool
// 100.64.0.100 - 100.64.0.199 for class VALID only (both ISPs: overlapping
// plans), routers 100.64.0.1, authoritative, store-extended-info, memfile
// leases in the state directory ([KeaLeases]). A subscriber is VALID when
// its subscriber-id or its remote-id is one of the ISP's RoleValid
// subscribers'; everyone else gets no answer at all. Configs, lease files,
// logs, client scripts and client lease files live in [Options.StateDir],
// which Down removes.
//
// # Kernel baseline
//
// [Topology.KernelRouter] turns ID-app into the equivalent Linux policy
// router (addresses, ip_forward=1, one "ip rule from <subscriber> lookup
// <table>" per subscriber) for side-by-side benchmarks. It cannot express
// overlapping address plans: a source address selects one table only.
package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Fixed addressing of the lab.
const (
	DefaultID        = "ispmux"
	Gateway          = "100.64.0.1"      // subscribers' default gateway (answered by ispmux)
	SubscriberNet    = "100.64.0.0/16"   // what every ISP routes towards ispmux
	TrafficNet       = "100.65.0.0/16"   // synthetic benchmark subscribers
	RouterAddr       = "192.0.2.1"       // every ISP router's address on its uplink
	OurAddr          = "192.0.2.2/24"    // ispmux's address on every uplink
	HostAddr         = "198.51.100.10"   // every ISP's host
	hostNet          = "198.51.100.1/24" // ISP router side of the host link
	maxSubscribers   = 200
	kernelTableBase  = 100
	kernelRulePrefix = 1000
)

var ispNames = []string{"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"}

// Options select the size of the lab.
type Options struct {
	ID                 string // lab ID: its namespaces are ID-ROLE (names.go); default "ispmux"
	Subscribers        int    // default 3, at most 200
	ISPs               int    // default 2, at most 8
	Generator          bool   // add ID-gen on a second access port acc1
	TrafficSubscribers int    // synthetic subscribers on acc1 (Generator only), included in ConfigTOML and KernelRouter

	// DHCP builds the DHCP lab: subscribers start without address and
	// route (they run DHCP clients), every subscriber has a customer ID
	// and every ISP namespace runs a validating Kea (see the package doc).
	DHCP bool
	// StateDir holds the lab's files (Kea configs, leases and logs, client
	// scripts and lease files); default /tmp/ispmux-lab-ID. Down removes it.
	StateDir string
	// LeaseTime is Kea's valid-lifetime (DHCP only); default 120 s, whole
	// seconds, at least 8 s.
	LeaseTime time.Duration
	// KeaOpen (DHCP only, for benchmarks) makes every ISP's Kea serve any
	// relayed client instead of validating by Option 82: subnet
	// 100.64.0.0/16 (KeaOpenSubnet), selected by relay 192.0.2.2 or
	// 100.64.0.1 (or by giaddr inside it), pool KeaOpenPoolFirst -
	// KeaOpenPoolLast without a client class.
	KeaOpen bool
	// FastPath turns ispmux's XDP fast path on in ConfigTOML ([datapath]
	// fastpath = "xdp") and GRO on the lab's ends of the appliance's
	// ports (the access bridge's port, the ISP routers', the
	// generator's): a veth delivers an XDP_REDIRECT to its peer only with
	// the peer's NAPI receive on, which GRO turns on.
	FastPath bool
	// KeaKnown (DHCP only) adds customer IDs each ISP's Kea accepts as
	// Option 82 subscriber-id, by ISP name: customers registered through
	// the API rather than the lab's own c-sN.
	KeaKnown map[string][]string
	// KeaNotAuthoritative (DHCP only) runs every Kea non-authoritative:
	// a REQUEST for an address it does not know gets silence, not a NAK.
	KeaNotAuthoritative bool
	// Unconfigured names subscribers (s7, ...) left out of ConfigTOML's
	// [[subscriber]] entries: the test attaches them through the API.
	Unconfigured []string
	// API (DHCP only) makes tokens for the tenant API (the operator, a
	// claim token, one per ISP), writes their files in the state dir at
	// Up and names them in ConfigTOML's [api] and [[isp]] sections; the
	// config also serves /metrics on 127.0.0.1:9100 (in the appliance
	// namespace).
	API bool
	// Portal (DHCP only) turns the portal on: a lab CA and a certificate
	// for PortalHostname in the state dir, [portal] at PortalAddr, and
	// onboarding on acc0 from OnboardingPool (see portal.go).
	Portal bool
	// OnboardingLease is the onboarding lease time (Portal only); 0 is
	// ispmux's default.
	OnboardingLease time.Duration
	// OnboardingMaxLeases caps onboarding on acc0 (Portal only); 0 is
	// ispmux's default (the pool).
	OnboardingMaxLeases int
	// ISPServer (DHCP only) is the DHCP server every ISP runs: ServerKea
	// ("kea", the default when empty) or ServerDnsmasq ("dnsmasq", see
	// dnsmasq.go; lease time at least 2 minutes, no KeaOpen or
	// KeaNotAuthoritative).
	ISPServer string
	// ClientLeaseMax (DHCP only) is ispmux's [dhcp] client_lease_max in
	// ConfigTOML (see switching.go); 0 leaves ispmux's default.
	ClientLeaseMax time.Duration
}

// APITokens are the lab's API tokens (Options.API) and their files.
type APITokens struct {
	Operator     string            `json:"operator"`
	OperatorFile string            `json:"operator_file"`
	Claim        string            `json:"claim"`
	ClaimFile    string            `json:"claim_file"`
	ISP          map[string]string `json:"isp"`       // by ISP name
	ISPFile      map[string]string `json:"isp_files"` // by ISP name
}

// Iface is one end of a veth pair.
type Iface struct {
	Name   string `json:"name"`
	MAC    string `json:"mac"`
	NS     string `json:"ns"`
	Peer   string `json:"peer"`
	PeerNS string `json:"peer_ns"`
}

// Appliance is the namespace ispmux runs in and its ports.
type Appliance struct {
	NS      string  `json:"ns"`
	Access  []Iface `json:"access"`
	Uplinks []Iface `json:"uplinks"`
}

// ISP is one ISP: its router (the uplink's peer) and a host behind it.
type ISP struct {
	Name          string `json:"name"`
	NS            string `json:"ns"`
	RouterIf      string `json:"router_if"`
	RouterMAC     string `json:"router_mac"`
	RouterAddr    string `json:"router_addr"`
	OurAddr       string `json:"our_addr"`
	Uplink        string `json:"uplink"`
	HostNS        string `json:"host_ns"`
	HostAddr      string `json:"host_addr"`
	SubscriberNet string `json:"subscriber_net"`
	Table         int    `json:"table"` // routing table of this ISP in kernel-router mode

	// DHCP lab only: the ISP's Kea (runs in NS).
	KeaConfig    string `json:"kea_config,omitempty"`     // kea-dhcp4 -c file
	KeaLeaseFile string `json:"kea_lease_file,omitempty"` // memfile CSV, see KeaLeases
	KeaLog       string `json:"kea_log,omitempty"`        // Kea's log file
	KeaSocket    string `json:"kea_socket,omitempty"`     // Kea's unix control socket (ISP.Leases, ISP.KeaCommand)
}

// Sub is a subscriber. Synthetic traffic subscribers have no NS and If. In
// the DHCP lab IP is empty (the address comes from the ISP's DHCP server, see
// Topology.SubAddr), CustomerID and Role are set, and an unregistered
// subscriber has no ISP.
type Sub struct {
	Name       string `json:"name"`
	NS         string `json:"ns,omitempty"`
	If         string `json:"if,omitempty"`
	MAC        string `json:"mac"`
	IP         string `json:"ip"`
	Gateway    string `json:"gateway"`
	ISP        string `json:"isp"`
	Access     string `json:"access"`
	CustomerID string `json:"customer_id,omitempty"` // DHCP lab: c-s1, c-s2, ...
	Role       string `json:"role,omitempty"`        // DHCP lab: RoleValid, RoleRefused or RoleUnregistered
}

// Subscriber roles in the DHCP lab.
const (
	// RoleValid: in ispmux's config, and its ISP's Kea knows its customer
	// ID and remote-id: it gets an address.
	RoleValid = "valid"
	// RoleRefused: in ispmux's config (s4, at alpha), but its ISP's Kea
	// does not know it and stays silent: ispmux must time out.
	RoleRefused = "refused"
	// RoleUnregistered: not in ispmux's config at all (s5).
	RoleUnregistered = "unregistered"
)

// Gen is the traffic generator's namespace, directly on access port Access.
type Gen struct {
	NS                 string `json:"ns"`
	If                 string `json:"if"`
	MAC                string `json:"mac"`
	Access             string `json:"access"`
	AccessMAC          string `json:"access_mac"`
	TrafficSubscribers int    `json:"traffic_subscribers"`
}

// Topology describes a built lab. It is JSON-serialisable.
type Topology struct {
	ID          string    `json:"id"`
	AccessNS    string    `json:"access_ns"` // the access bridge namespace
	Appliance   Appliance `json:"appliance"`
	ISPs        []ISP     `json:"isps"`
	Subscribers []Sub     `json:"subscribers"`
	Generator   *Gen      `json:"generator,omitempty"`
	DHCP        bool      `json:"dhcp,omitempty"`
	StateDir    string    `json:"state_dir,omitempty"`  // the lab's files; removed by Down
	LeaseTime   int       `json:"lease_time,omitempty"` // Kea's valid-lifetime in seconds (DHCP lab)
	KeaOpen     bool      `json:"kea_open,omitempty"`   // Kea serves every relayed client (Options.KeaOpen)
	FastPath    bool      `json:"fastpath,omitempty"`   // Options.FastPath
	// KeaKnown, KeaNotAuthoritative and Unconfigured: see Options.
	KeaKnown            map[string][]string `json:"kea_known,omitempty"`
	KeaNotAuthoritative bool                `json:"kea_not_authoritative,omitempty"`
	Unconfigured        []string            `json:"unconfigured,omitempty"`
	// API holds the tenant API's tokens (Options.API), nil without.
	API *APITokens `json:"api,omitempty"`
	// Portal is the portal's lab files (Options.Portal), nil without.
	Portal *Portal `json:"portal,omitempty"`
	// ISPServer is Options.ISPServer ("" is Kea).
	ISPServer string `json:"isp_server,omitempty"`
	// ClientLeaseMax is Options.ClientLeaseMax.
	ClientLeaseMax time.Duration `json:"client_lease_max,omitempty"`
}

func mac(a, b byte) string { return fmt.Sprintf("02:00:00:00:%02x:%02x", a, b) }

// plan computes the topology for o without touching the system.
func plan(o Options) (*Topology, error) {
	if o.ID == "" {
		o.ID = DefaultID
	}
	if o.Subscribers == 0 {
		o.Subscribers = 3
	}
	if o.ISPs == 0 {
		o.ISPs = 2
	}
	if err := checkID(o.ID); err != nil {
		return nil, err
	}
	if o.Subscribers < 0 || o.Subscribers > maxSubscribers {
		return nil, fmt.Errorf("lab: subscribers %d out of range 1..%d", o.Subscribers, maxSubscribers)
	}
	if o.ISPs < 1 || o.ISPs > len(ispNames) {
		return nil, fmt.Errorf("lab: isps %d out of range 1..%d", o.ISPs, len(ispNames))
	}
	if o.TrafficSubscribers < 0 || o.TrafficSubscribers > 250*256 {
		return nil, fmt.Errorf("lab: traffic subscribers %d out of range", o.TrafficSubscribers)
	}
	if o.LeaseTime == 0 {
		o.LeaseTime = DefaultLeaseTime
	}
	if o.LeaseTime < 8*time.Second || o.LeaseTime%time.Second != 0 {
		return nil, fmt.Errorf("lab: lease time %v: want whole seconds, at least 8 s", o.LeaseTime)
	}
	stateDir := defaultStateDir(o.ID)
	if o.StateDir != "" {
		if !filepath.IsAbs(o.StateDir) {
			return nil, fmt.Errorf("lab: state dir %q is not absolute", o.StateDir)
		}
		stateDir = filepath.Clean(o.StateDir)
	}
	app := nsName(o.ID, roleApp)
	if os.Getenv("ISPMUX_LAB_FASTPATH") == "1" {
		o.FastPath = true // every lab with the fast path: the e2e suite against it
	}
	t := &Topology{ID: o.ID, AccessNS: nsName(o.ID, roleAcc), FastPath: o.FastPath}
	if err := checkISPServer(o); err != nil {
		return nil, err
	}
	if o.DHCP {
		t.DHCP, t.StateDir, t.LeaseTime = true, stateDir, int(o.LeaseTime/time.Second)
		t.ISPServer = o.ISPServer
		t.KeaOpen = o.KeaOpen
		t.KeaKnown, t.KeaNotAuthoritative, t.Unconfigured = o.KeaKnown, o.KeaNotAuthoritative, o.Unconfigured
		t.ClientLeaseMax = o.ClientLeaseMax
		if o.API {
			t.API = newAPITokens(stateDir, ispNames[:o.ISPs])
		}
		if o.Portal {
			t.Portal = newPortal(stateDir, o.OnboardingLease, o.OnboardingMaxLeases)
		}
	} else if o.KeaOpen || o.API || o.Portal || o.KeaNotAuthoritative || len(o.KeaKnown) > 0 {
		return nil, errors.New("lab: KeaOpen, KeaKnown, KeaNotAuthoritative, API and Portal need DHCP")
	}
	t.Appliance.NS = app
	t.Appliance.Access = []Iface{{Name: "acc0", MAC: mac(0xa0, 0), NS: app, Peer: "up0", PeerNS: t.AccessNS}}
	for i := 0; i < o.ISPs; i++ {
		l := ispLetter(i)
		isp := ISP{
			Name: ispNames[i], NS: nsName(o.ID, roleISP(i)), RouterIf: "eth0", RouterMAC: mac(0xb1, byte(i+1)),
			RouterAddr: RouterAddr, OurAddr: OurAddr, Uplink: "up" + l, HostNS: nsName(o.ID, roleHost(i)),
			HostAddr: HostAddr, SubscriberNet: SubscriberNet, Table: kernelTableBase + i,
		}
		if o.DHCP {
			isp.KeaConfig = filepath.Join(stateDir, "kea-isp"+l+".json")
			isp.KeaLeaseFile = filepath.Join(stateDir, "kea-isp"+l+".leases4.csv")
			isp.KeaLog = filepath.Join(stateDir, "kea-isp"+l+".log")
			isp.KeaSocket = filepath.Join(stateDir, "kea-isp"+l+".sock")
			if len(isp.KeaSocket) > maxSocketPath {
				return nil, fmt.Errorf("lab: Kea control socket path %s is longer than a unix socket address allows (%d bytes): choose a shorter state dir", isp.KeaSocket, maxSocketPath)
			}
		}
		t.ISPs = append(t.ISPs, isp)
		t.Appliance.Uplinks = append(t.Appliance.Uplinks, Iface{Name: isp.Uplink, MAC: mac(0xa1, byte(i+1)), NS: app, Peer: "eth0", PeerNS: isp.NS})
	}
	for i := 1; i <= o.Subscribers; i++ {
		var isp, host int
		switch {
		case i == 1:
			isp, host = 0, 11
		case i == 2:
			isp, host = 1, 12
		case i == 3:
			isp, host = 1, 11
		default:
			isp, host = (i-4)%o.ISPs, i+9
		}
		isp %= o.ISPs
		s := Sub{
			Name: roleSub(i), NS: nsName(o.ID, roleSub(i)), If: "eth0",
			MAC: mac(0x01, byte(i)), IP: "100.64.0." + strconv.Itoa(host), Gateway: Gateway,
			ISP: t.ISPs[isp].Name, Access: "acc0",
		}
		if o.DHCP {
			s.IP, s.CustomerID, s.Role = "", "c-"+s.Name, RoleValid
			switch i {
			case 4:
				s.ISP, s.Role = t.ISPs[0].Name, RoleRefused
			case 5:
				s.ISP, s.Role = "", RoleUnregistered
			}
		}
		t.Subscribers = append(t.Subscribers, s)
	}
	if o.Generator {
		t.Appliance.Access = append(t.Appliance.Access, Iface{Name: "acc1", MAC: mac(0xa0, 1), NS: app, Peer: "eth0", PeerNS: nsName(o.ID, roleGen)})
		t.Generator = &Gen{NS: nsName(o.ID, roleGen), If: "eth0", MAC: mac(0xe0, 1), Access: "acc1", AccessMAC: mac(0xa0, 1), TrafficSubscribers: o.TrafficSubscribers}
	}
	return t, nil
}

// TrafficSubscribers returns n synthetic subscribers on the generator's
// access port: MACs 02:10:00:00:hi:lo, distinct IPs in 100.65.0.0/16 and
// ISPs in turn. It returns nil when the lab has no generator.
func (t *Topology) TrafficSubscribers(n int) []Sub {
	if t.Generator == nil || n <= 0 {
		return nil
	}
	subs := make([]Sub, n)
	for i := range subs {
		j := i + 1
		subs[i] = Sub{
			Name:    "t" + strconv.Itoa(j),
			MAC:     fmt.Sprintf("02:10:00:%02x:%02x:%02x", byte(j>>16), byte(j>>8), byte(j)),
			IP:      fmt.Sprintf("100.65.%d.%d", i/250, 1+i%250),
			Gateway: Gateway,
			ISP:     t.ISPs[i%len(t.ISPs)].Name,
			Access:  t.Generator.Access,
		}
	}
	return subs
}

// namespaces lists every namespace of t, in creation order.
func (t *Topology) namespaces() []string {
	ns := []string{t.Appliance.NS, t.AccessNS}
	for _, i := range t.ISPs {
		ns = append(ns, i.NS, i.HostNS)
	}
	for _, s := range t.Subscribers {
		ns = append(ns, s.NS)
	}
	if t.Generator != nil {
		ns = append(ns, t.Generator.NS)
	}
	return ns
}
