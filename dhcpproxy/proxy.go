// Package dhcpproxy is ispmux's DHCP engine. Towards each ISP it is a relay
// agent that sends an extended request (RFC 2131/1542 relay with Option 82:
// circuit-id, remote-id = the subscriber's MAC, subscriber-id = the customer
// ID, optionally link selection, server-id override and VSS); towards the
// subscriber it is the DHCP server (it emulates the ISP): the server
// identifier the subscriber sees is ispmux's access address, Option 82
// never reaches it, and replies are delivered as RFC 2131 §4.1 says.
//
// # Flow
//
// The datapath punts every DHCP frame (a copy; the UMEM frame is recycled
// at once) to the control plane, which calls [Proxy.HandleFrame]. A client
// message is checked (malformed, BOOTREPLY from a client, chaddr ≠ source
// MAC, client-sent Option 82, giaddr ≠ 0, option overload: dropped and
// counted by reason), rate limited per MAC and per access circuit, admitted
// against the registry (unknown and blocked subscribers get no answer; the
// attempt is an event), then relayed to every DHCP server of the chosen ISP
// and remembered as a pending transaction (xid, MAC, ISP). A server reply is
// accepted only if it matches a pending transaction and echoes our Option 82
// byte for byte.
//
// # Binding order
//
// On an ACK: the binding is committed to the store (fsynced, grouped with
// concurrent commits) → installed in the MAC table and the ISP's VRF → only
// then is the ACK sent to the subscriber. A crash loses no binding a
// subscriber was told about and creates none the ISP did not grant. Commits
// run on their own goroutines so one fsync never holds up the other
// subscribers' exchanges.
//
// # Rejection
//
// No answer within the timeout, or a NAK, marks the subscriber rejected by
// its ISP with the reason: an event in the store (how the operator and the
// ISP are notified) and a log line.
package dhcpproxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/engine"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/circuitid"
	"github.com/ispmux/ispmux/subscribers"
)

// Store is the durable state the proxy needs (subscribers.Store).
type Store interface {
	Registration(mac subscribers.MAC) (subscribers.Registration, error)
	CommitBinding(b subscribers.Binding) error
	CommitBindingEvent(b subscribers.Binding, e subscribers.Event) (subscribers.Event, error)
	DeleteBinding(access string, vlan uint16, mac subscribers.MAC) (bool, error)
	Bindings() ([]subscribers.Binding, error)
	AddEvent(e subscribers.Event) (subscribers.Event, error)
}

// Tables is the forwarding state the proxy writes (engine.Control).
type Tables interface {
	// CheckBind reports whether Bind(b) would conflict (another
	// subscriber holds the address at that ISP), changing nothing.
	CheckBind(b engine.Binding) error
	Bind(b engine.Binding) error
	Unbind(port uint8, vlan uint16, mac uint64) bool
	NextHopMAC(isp uint8) (uint64, bool)
}

// Sender transmits a frame out of a port (a datapath worker's injection
// queue).
type Sender interface {
	Inject(port uint8, frame []byte) bool
}

// Circuit is an access port/VLAN where subscribers attach.
type Circuit struct {
	Name      string // the [[access]] name
	Interface string
	Port      uint8
	VLAN      uint16
	MAC       uint64     // our MAC on the port
	Addr      netip.Addr // our address: the server identifier subscribers see
}

// ISP is one ISP's DHCP side.
type ISP struct {
	Index            uint8
	Name             string
	Port             uint8
	VLAN             uint16
	MAC              uint64     // our uplink MAC
	Addr             netip.Addr // our uplink address: giaddr and relay source
	Servers          []netip.Addr
	CircuitID        string // template: {interface} {vlan} {access} {mac}
	ServerIDOverride bool
	LinkSelection    netip.Addr
	VSS              string
	// MTU is the uplink's IP MTU (0: 1500). A relayed message that would
	// not fit is refused, not sent to be dropped on the wire.
	MTU int
}

// Config holds the proxy's limits.
type Config struct {
	Timeout               time.Duration
	MaxPending            int
	MACRate, MACBurst     int
	CircuitRate           int
	CircuitBurst          int
	MaxBindingsPerCircuit int
	Circuits              []Circuit
	ISPs                  []ISP
}

type circuitKey struct {
	port uint8
	vlan uint16
}

type subKey struct {
	circuit circuitKey
	mac     uint64
}

type pendKey struct {
	xid [4]byte
	mac uint64
	isp uint8
}

// txn is a transaction waiting for the ISP.
type txn struct {
	sub      subKey
	circuit  *Circuit
	isp      *ISP
	reg      subscribers.Registration
	op82     []byte // exactly what we sent
	msgType  dhcpv4.MessageType
	deadline time.Time
	serverID netip.Addr // the ISP server's identifier, from its OFFER
	// requested is the address the client asked for (option 50, or
	// ciaddr when renewing), for the event of a NAK.
	requested netip.Addr
	// clientID is the client's identifier (option 61), if it sent one.
	clientID []byte
}

// unreachableNote is an ICMP unreachable heard about an ISP's server.
type unreachableNote struct {
	at     time.Time
	server netip.Addr
	why    string
}

// offer is the ISP server that last offered a subscriber an address.
type offer struct {
	isp *ISP
	sid netip.Addr
	at  time.Time
}

// offerMemory is how long an OFFER's server is remembered.
const offerMemory = 5 * time.Minute

// lease is a binding ispmux holds (mirror of the store's).
type lease struct {
	b       subscribers.Binding
	circuit *Circuit
	isp     *ISP
}

// Proxy is the DHCP engine. HandleFrame may be called from one goroutine
// (the control plane); Run drives timers. All methods are safe for
// concurrent use.
type Proxy struct {
	cfg    Config
	store  Store
	tables Tables
	send   Sender
	log    *slog.Logger

	circuits map[circuitKey]*Circuit
	uplinks  map[circuitKey]*ISP
	isps     map[string]*ISP

	// mu guards everything below.
	mu         sync.Mutex
	pending    map[pendKey]*txn
	leases     map[subKey]*lease
	perCircuit map[circuitKey]int
	macBucket  map[uint64]*bucket
	cirBucket  map[circuitKey]*bucket
	committing sync.WaitGroup
	events     sync.WaitGroup
	eventSem   chan struct{}
	// lastEvent suppresses repeats of the same rejection for one MAC (a
	// client retransmits every few seconds): one event per eventQuiet.
	lastEvent map[eventKey]time.Time
	// lastUnreachable is the last ICMP unreachable per ISP about a
	// server we relayed to (see unreachable).
	lastUnreachable map[uint8]unreachableNote
	// offered remembers the last OFFER's server per subscriber, for a
	// REQUEST that comes after its transaction ended.
	offered map[subKey]offer
	// static are the MACs of static-IP subscribers: their address comes
	// from the configuration, never from DHCP (SetStatic).
	static map[uint64]bool
	// noise limits refusal events in all; suppressed counts those it
	// held back since the last summary line, at lastSummary.
	noise       bucket
	suppressed  int
	lastSummary time.Time

	counters sync.Map // name → *atomic.Uint64
}

// New returns a proxy. Call Restore before the datapath forwards, then Run.
func New(cfg Config, store Store, tables Tables, send Sender, log *slog.Logger) *Proxy {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{
		cfg: cfg, store: store, tables: tables, send: send, log: log,
		circuits:        map[circuitKey]*Circuit{},
		uplinks:         map[circuitKey]*ISP{},
		isps:            map[string]*ISP{},
		pending:         map[pendKey]*txn{},
		leases:          map[subKey]*lease{},
		perCircuit:      map[circuitKey]int{},
		macBucket:       map[uint64]*bucket{},
		cirBucket:       map[circuitKey]*bucket{},
		lastEvent:       map[eventKey]time.Time{},
		offered:         map[subKey]offer{},
		lastUnreachable: map[uint8]unreachableNote{},
		eventSem:        make(chan struct{}, maxEventWriters),
	}
	for i := range cfg.Circuits {
		c := &p.cfg.Circuits[i]
		p.circuits[circuitKey{c.Port, c.VLAN}] = c
	}
	for i := range cfg.ISPs {
		isp := &p.cfg.ISPs[i]
		p.uplinks[circuitKey{isp.Port, isp.VLAN}] = isp
		p.isps[isp.Name] = isp
	}
	return p
}

func (p *Proxy) count(name string) {
	v, ok := p.counters.Load(name)
	if !ok {
		v, _ = p.counters.LoadOrStore(name, new(atomic.Uint64))
	}
	v.(*atomic.Uint64).Add(1)
}

// Counters returns the proxy's counters by name.
func (p *Proxy) Counters() map[string]uint64 {
	out := map[string]uint64{}
	p.counters.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}

type eventKey struct {
	mac  uint64
	kind subscribers.EventKind
}

// maxEventWriters bounds the events being stored at once.
const maxEventWriters = 256

// Header lengths of the relayed datagram (ispmux sends no IP options).
const ipv4HeaderLen, udpHeaderLen = 20, 8

// eventQuiet is how long a repeated rejection of one subscriber is not
// recorded again (it is still counted).
const eventQuiet = time.Minute

// Refusals (unknown, blocked, rejected, timeout, rate-limited) are recorded
// and logged at most noiseRate a second (burst noiseBurst) in all: a flood
// of made-up MACs must not flood the log and the store. Beyond that they
// are counted (events_suppressed) and summed up in one log line a
// noiseSummary.
const (
	noiseRate, noiseBurst = 10, 50
	noiseSummary          = 10 * time.Second
)

func isNoise(kind subscribers.EventKind) bool {
	switch kind {
	case subscribers.EventUnknown, subscribers.EventBlocked, subscribers.EventTimeout, subscribers.EventRejected, subscribers.EventRateLimited:
		return true
	}
	return false
}

func (p *Proxy) event(kind subscribers.EventKind, mac uint64, isp string, ip netip.Addr, reason string) {
	if isNoise(kind) {
		now := time.Now()
		k := eventKey{mac, kind}
		p.mu.Lock()
		last, seen := p.lastEvent[k]
		repeat := seen && now.Sub(last) < eventQuiet
		ok := !repeat && p.noise.take(now, noiseRate, noiseBurst)
		if ok {
			p.lastEvent[k] = now
		} else if !repeat {
			p.suppressed++
		}
		p.mu.Unlock()
		if !ok {
			if !repeat {
				p.count("events_suppressed")
			}
			return
		}
	}
	e := subscribers.Event{Time: time.Now(), Kind: kind, MAC: subscribers.MAC(macBytes(mac)), ISP: isp, IP: ip, Reason: reason}
	// Stored off the caller's goroutine: the control plane never waits for
	// an fsync (a flood of rejections must not stall everyone's DHCP), and
	// concurrent events share fsyncs with binding commits (group commit).
	// Bounded: beyond maxEventWriters in flight, events are counted and
	// dropped (the log line below still records them).
	select {
	case p.eventSem <- struct{}{}:
		p.events.Add(1)
		go func() {
			defer func() { <-p.eventSem; p.events.Done() }()
			if _, err := p.store.AddEvent(e); err != nil {
				p.log.Warn("event not stored", "kind", kind, "err", err)
			}
		}()
	default:
		p.count("events_dropped")
	}
	lvl := slog.LevelInfo
	switch kind {
	case subscribers.EventRejected, subscribers.EventTimeout, subscribers.EventNak, subscribers.EventUnknown, subscribers.EventBlocked:
		lvl = slog.LevelWarn
	}
	p.log.Log(context.Background(), lvl, "dhcp "+string(kind), "mac", engine.MACString(mac), "isp", isp, "ip", ip, "reason", reason)
}

// Restore installs every unexpired binding of the store in the tables and
// removes expired ones. Call it before the datapath starts forwarding.
func (p *Proxy) Restore(now time.Time) (int, error) {
	bs, err := p.store.Bindings()
	if err != nil {
		return 0, fmt.Errorf("dhcp restore: %w", err)
	}
	n := 0
	for _, b := range bs {
		c := p.circuitByName(b.Access, b.VLAN)
		isp := p.isps[b.ISP]
		if c == nil || isp == nil || !b.Expires.After(now) {
			if _, err := p.store.DeleteBinding(b.Access, b.VLAN, b.MAC); err != nil {
				return n, fmt.Errorf("dhcp restore: %w", err)
			}
			why := "lease expired while ispmux was stopped"
			if c == nil || isp == nil {
				why = "its access or ISP is no longer configured"
			}
			p.count("expired")
			p.event(subscribers.EventExpired, engine.MAC48(b.MAC), b.ISP, b.IP, why)
			continue
		}
		mac := engine.MAC48(b.MAC)
		// The registration may have changed while ispmux was down (the
		// operator blocked or removed the subscriber, or it chose another
		// ISP): such a binding must not forward until its lease runs out.
		if why := p.stale(b); why != "" {
			if _, err := p.store.DeleteBinding(b.Access, b.VLAN, b.MAC); err != nil {
				return n, fmt.Errorf("dhcp restore: %w", err)
			}
			p.count("binding_revoked")
			p.event(subscribers.EventRevoked, mac, b.ISP, b.IP, why)
			continue
		}
		if err := p.tables.Bind(engine.Binding{Port: c.Port, VLAN: c.VLAN, MAC: mac, ISP: isp.Index, IP: b.IP}); err != nil {
			// Its address is now a static subscriber's (the
			// configuration changed while ispmux was down): the lease
			// cannot forward, and is recorded as revoked.
			if _, derr := p.store.DeleteBinding(b.Access, b.VLAN, b.MAC); derr != nil {
				return n, fmt.Errorf("dhcp restore: %w", derr)
			}
			p.count("binding_revoked")
			p.event(subscribers.EventRevoked, mac, b.ISP, b.IP, "its address is taken: "+err.Error())
			continue
		}
		k := subKey{circuitKey{c.Port, c.VLAN}, mac}
		p.mu.Lock()
		p.leases[k] = &lease{b: b, circuit: c, isp: isp}
		p.perCircuit[k.circuit]++
		p.mu.Unlock()
		n++
	}
	return n, nil
}

// SetUplinkMTU records that the interface of port now has MTU mtu (for
// the ISPs whose uplink it is).
func (p *Proxy) SetUplinkMTU(port uint8, mtu int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, isp := range p.isps {
		if isp.Port == port {
			isp.MTU = mtu
		}
	}
}

// SetStatic sets the MACs of the static-IP subscribers. Their DISCOVERs
// and REQUESTs are refused (their address is configured; a DHCP lease would
// replace it), INFORM is served, and a DHCP binding they hold is stale.
func (p *Proxy) SetStatic(macs []uint64) {
	m := make(map[uint64]bool, len(macs))
	for _, x := range macs {
		m[x] = true
	}
	p.mu.Lock()
	p.static = m
	p.mu.Unlock()
}

func (p *Proxy) isStatic(mac uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.static[mac]
}

// Revalidate revokes, while running, every binding whose registration no
// longer matches it (after a configuration reload or a registry change):
// the subscriber stops forwarding at once instead of at lease expiry. It
// returns how many it revoked.
func (p *Proxy) Revalidate() int {
	p.mu.Lock()
	type held struct {
		k subKey
		b subscribers.Binding
	}
	all := make([]held, 0, len(p.leases))
	for k, l := range p.leases {
		all = append(all, held{k, l.b})
	}
	p.mu.Unlock()
	n := 0
	for _, h := range all {
		why := p.stale(h.b)
		if why == "" {
			continue
		}
		if ip := p.unbind(h.k); ip.IsValid() {
			p.count("binding_revoked")
			p.event(subscribers.EventRevoked, h.k.mac, h.b.ISP, ip, why)
			n++
		}
	}
	return n
}

// stale says why a stored binding no longer matches the subscriber's
// registration, or "" when it still does.
func (p *Proxy) stale(b subscribers.Binding) string {
	if p.isStatic(engine.MAC48(b.MAC)) {
		return "subscriber is now static"
	}
	reg, err := p.store.Registration(b.MAC)
	switch {
	case errors.Is(err, subscribers.ErrNotFound):
		return "registration withdrawn"
	case err != nil:
		return "" // keep it: a store error is not the operator's decision
	case reg.Blocked:
		return "subscriber blocked"
	case reg.ISP != b.ISP:
		return "subscriber moved to ISP " + reg.ISP
	case reg.Access != "" && reg.Access != b.Access:
		return "registered on access " + reg.Access
	}
	return ""
}

func (p *Proxy) circuitByName(name string, vlan uint16) *Circuit {
	for _, c := range p.circuits {
		if c.Name == name && c.VLAN == vlan {
			return c
		}
	}
	return nil
}

// HandleFrame processes one punted DHCP frame received on port.
func (p *Proxy) HandleFrame(port uint8, f []byte) {
	var pkt classifier.Packet
	if pkt.Decode(f) != classifier.ReasonNone {
		p.count("malformed_frame")
		return
	}
	k := circuitKey{port, pkt.VLAN & 0xfff}
	if isp, ok := p.uplinks[k]; ok && pkt.Kind == classifier.KindIPv4 && pkt.Proto == 1 && pkt.FragOff == 0 && pkt.L4+8 <= len(f) && f[pkt.L4] == 3 {
		p.unreachable(isp, &pkt, f)
		return
	}
	payload, ok := udpPayload(&pkt, f)
	if !ok {
		p.count("malformed_frame")
		return
	}
	if c, ok := p.circuits[k]; ok && pkt.DstPort == 67 {
		p.fromClient(c, &pkt, payload)
		return
	}
	if isp, ok := p.uplinks[k]; ok && pkt.DstPort == 67 && pkt.DstIP == ip4(isp.Addr) {
		p.fromServer(isp, &pkt, payload, false)
		return
	}
	if isp, ok := p.uplinks[k]; ok && pkt.SrcPort == 67 && pkt.DstPort == 68 {
		p.fromServer(isp, &pkt, payload, true)
		return
	}
	p.count("not_for_us")
}

// unreachable notes an ICMP destination unreachable received on isp's
// uplink about a DHCP message we relayed to one of its servers: the
// timeout event then names the cause instead of blaming a silent server.
func (p *Proxy) unreachable(isp *ISP, pkt *classifier.Packet, f []byte) {
	// ICMP header (8 bytes), then the quoted IPv4 header and at least 8
	// bytes of its payload (RFC 792).
	q := f[pkt.L4+8:]
	if len(q) < 28 || q[0]>>4 != 4 || q[9] != classifier.ProtoUDP {
		p.count("icmp_unreachable_other")
		return
	}
	ihl := int(q[0]&0x0f) * 4
	if ihl < 20 || len(q) < ihl+8 || binary.BigEndian.Uint16(q[ihl+2:]) != 67 {
		p.count("icmp_unreachable_other")
		return
	}
	srv := netip.AddrFrom4([4]byte(q[16:20]))
	why := "unreachable"
	switch f[pkt.L4+1] {
	case 3:
		why = "port unreachable: no DHCP server running"
	case 1:
		why = "host unreachable"
	case 0:
		why = "network unreachable"
	}
	p.count("server_unreachable")
	p.mu.Lock()
	p.lastUnreachable[isp.Index] = unreachableNote{at: time.Now(), server: srv, why: why}
	p.mu.Unlock()
}

func (p *Proxy) fromClient(c *Circuit, pkt *classifier.Packet, payload []byte) {
	if !c.Addr.IsValid() {
		// No server identifier to answer with (configs requires an
		// address where DHCP subscribers attach; static ones may not).
		p.count("no_access_address")
		return
	}
	m, err := dhcpv4.FromBytes(payload)
	if err != nil {
		p.count(errMalformed.Error())
		return
	}
	src := net.HardwareAddr(macBytes(pkt.Src))
	if err := checkClient(m, src); err != nil {
		p.count(err.Error())
		switch err {
		case errChaddr, errClientOption82, errClientGiaddr:
			// What a subscriber forging identities or posing as a
			// relay sends: worth an event, not only a counter.
			p.event(subscribers.EventRejected, pkt.Src, "", netip.Addr{}, "DHCP message refused: "+err.Error())
		}
		return
	}
	now := time.Now()
	sk := subKey{circuitKey{c.Port, c.VLAN}, pkt.Src}
	// Admission before the rate limits: an unregistered or blocked MAC
	// never spends the circuit's shared budget (a flood of random MACs
	// would lock every subscriber of the circuit out) and gets no
	// per-MAC state (it would grow with every MAC a flood makes up).
	reg, err := p.store.Registration(subscribers.MAC(src))
	switch {
	case errors.Is(err, subscribers.ErrNotFound):
		p.count("unknown_subscriber")
		p.event(subscribers.EventUnknown, pkt.Src, "", netip.Addr{}, "not registered ("+m.MessageType().String()+")")
		return
	case err != nil:
		p.count("store_error")
		p.log.Warn("dhcp: registry", "err", err)
		return
	case reg.Blocked:
		p.count("blocked_subscriber")
		p.event(subscribers.EventBlocked, pkt.Src, reg.ISP, netip.Addr{}, "blocked")
		return
	case reg.Access != "" && reg.Access != c.Name:
		p.count("wrong_circuit")
		p.event(subscribers.EventRejected, pkt.Src, reg.ISP, netip.Addr{}, "registered on access "+reg.Access+", seen on "+c.Name)
		return
	}
	if mt := m.MessageType(); p.isStatic(pkt.Src) && mt != dhcpv4.MessageTypeInform {
		p.count("static_subscriber")
		if mt == dhcpv4.MessageTypeDiscover || mt == dhcpv4.MessageTypeRequest {
			p.event(subscribers.EventRejected, pkt.Src, reg.ISP, netip.Addr{}, "static subscriber: its address is configured, DHCP "+mt.String()+" not served")
		}
		return
	}
	p.mu.Lock()
	limit := p.allow(sk, now)
	p.mu.Unlock()
	if limit != "" {
		// rate_limited counts both; rate_limited_mac and
		// rate_limited_circuit say which limit it was.
		p.count("rate_limited")
		p.count("rate_limited_" + limit)
		why := fmt.Sprintf("this subscriber's DHCP rate limit (%d/s, burst %d) exceeded", p.cfg.MACRate, p.cfg.MACBurst)
		if limit == "circuit" {
			why = fmt.Sprintf("access %s's DHCP rate limit (%d/s, burst %d, all its subscribers) exceeded", c.Name, p.cfg.CircuitRate, p.cfg.CircuitBurst)
		}
		p.event(subscribers.EventRateLimited, pkt.Src, reg.ISP, netip.Addr{}, why)
		return
	}
	isp := p.isps[reg.ISP]
	if isp == nil || len(isp.Servers) == 0 {
		p.count("no_isp_server")
		p.event(subscribers.EventRejected, pkt.Src, reg.ISP, netip.Addr{}, "ISP has no DHCP server configured")
		return
	}
	unicast := pkt.Dst == c.MAC && pkt.DstIP == ip4(c.Addr)
	p.relay(c, isp, reg, sk, payload, m, unicast, now)
}

// relay sends m to every DHCP server of isp as an extended request.
func (p *Proxy) relay(c *Circuit, isp *ISP, reg subscribers.Registration, sk subKey, raw []byte, m *dhcpv4.DHCPv4, unicast bool, now time.Time) {
	mt := m.MessageType()
	ri := relayInfo{
		CircuitID:    []byte(circuitID(isp.CircuitID, c, sk.mac)),
		RemoteID:     macBytes(sk.mac),
		SubscriberID: []byte(reg.CustomerID),
		Unicast:      unicast,
		VSS:          isp.VSS,
	}
	if isp.ServerIDOverride {
		ri.ServerIDOverride = c.Addr
	}
	ri.LinkSelection = isp.LinkSelection
	op82 := ri.encode()
	if len(op82) > 255 {
		// configs bounds every part; a registration from elsewhere may
		// not be. Never split or cut our Option 82.
		p.count("option82_too_long")
		p.event(subscribers.EventRejected, sk.mac, isp.Name, netip.Addr{},
			fmt.Sprintf("Option 82 would be %d bytes (max 255): customer ID or circuit ID too long", len(op82)))
		return
	}

	if mt == dhcpv4.MessageTypeRelease || mt == dhcpv4.MessageTypeDecline {
		// Only the holder's own address can be released or declined
		// (RFC 2131 §4.3.4): a message naming another one changes
		// nothing and goes nowhere.
		named := m.ClientIPAddr
		if mt == dhcpv4.MessageTypeDecline {
			named = m.RequestedIPAddress()
		}
		p.mu.Lock()
		l := p.leases[sk]
		p.mu.Unlock()
		if a, _ := netip.AddrFromSlice(named.To4()); l == nil || a != l.b.IP || l.isp != isp {
			// Not its own binding: relaying it would let a
			// subscriber release or quarantine (DECLINE) a
			// neighbour's lease at the ISP.
			p.count("release_not_own_address")
			return
		}
	}

	pk := pendKey{m.TransactionID, sk.mac, isp.Index}
	p.mu.Lock()
	t := p.pending[pk]
	ispServerID := netip.Addr{}
	if t != nil {
		ispServerID = t.serverID
	} else if l := p.leases[sk]; l != nil && l.isp == isp {
		ispServerID = l.b.ServerID
	}
	if !ispServerID.IsValid() {
		// A REQUEST after its DISCOVER's transaction ended (a client
		// slow to choose, or ispmux restarted in between) names our
		// server-id: the ISP's comes from the OFFER we remember, or is
		// the ISP's only server.
		if o, ok := p.offered[sk]; ok && o.isp == isp && now.Sub(o.at) < offerMemory {
			ispServerID = o.sid
		} else if len(isp.Servers) == 1 {
			ispServerID = isp.Servers[0]
		}
	}
	switch mt {
	case dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform:
		if t == nil {
			if len(p.pending) >= p.cfg.MaxPending {
				p.mu.Unlock()
				p.count("pending_full")
				return
			}
			t = &txn{sub: sk, circuit: c, isp: isp}
			p.pending[pk] = t
		}
		// The ISP's time runs from the first relay of this message: a
		// client's retransmissions do not extend it.
		if t.msgType != mt || t.deadline.IsZero() {
			t.deadline = now.Add(p.cfg.Timeout)
		}
		t.reg, t.op82, t.msgType = reg, op82, mt
		t.clientID = m.Options.Get(dhcpv4.OptionClientIdentifier)
		t.requested = netip.Addr{}
		if a, ok := netip.AddrFromSlice(m.RequestedIPAddress().To4()); ok && !a.IsUnspecified() {
			t.requested = a
		} else if a, ok := netip.AddrFromSlice(m.ClientIPAddr.To4()); ok && !a.IsUnspecified() {
			t.requested = a
		}
		if t.serverID.IsValid() {
			ispServerID = t.serverID
		}
	}
	p.mu.Unlock()

	gw, ok := p.tables.NextHopMAC(isp.Index)
	if !ok {
		// The ISP cannot be reached now: say so, rather than let the
		// transaction time out and blame the ISP's servers.
		p.count("no_next_hop")
		p.event(subscribers.EventRejected, sk.mac, isp.Name, netip.Addr{}, "ISP unreachable: next hop not resolved (uplink down?)")
		p.abandon(pk, t)
		return
	}
	payload := relayUp(raw, m, isp.Addr, c.Addr, ispServerID, &ri)
	p.mu.Lock()
	mtu := isp.MTU
	p.mu.Unlock()
	if mtu <= 0 {
		mtu = 1500
	}
	if n := ipv4HeaderLen + udpHeaderLen + len(payload); n > mtu {
		// The subscriber's message is legal; with our Option 82 it no
		// longer fits the uplink. Relaying it without Option 82 would
		// send the ISP a request it cannot validate, so it is refused
		// here, saying why (rather than a timeout blaming the ISP).
		p.count("relay_too_big")
		p.event(subscribers.EventRejected, sk.mac, isp.Name, netip.Addr{},
			fmt.Sprintf("%s of %d bytes does not fit the uplink MTU (%d) with Option 82", mt, n, mtu))
		p.abandon(pk, t)
		return
	}
	sent := false
	for _, srv := range isp.Servers {
		f := fib.UDPFrame(gw, isp.MAC, isp.VLAN, isp.Addr, srv, 67, 67, payload)
		if p.send.Inject(isp.Port, f) {
			sent = true
		}
	}
	if !sent {
		p.count("inject_full")
		return
	}
	p.count("relayed_" + strings.ToLower(mt.String()))
	p.log.Debug("dhcp relayed", "mac", engine.MACString(sk.mac), "type", mt.String(), "xid", m.TransactionID.String(),
		"isp", isp.Name, "servers", len(isp.Servers), "bytes", len(payload))

	switch mt {
	case dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
		kind := subscribers.EventReleased
		if mt == dhcpv4.MessageTypeDecline {
			kind = subscribers.EventDeclined
		}
		ip := p.unbind(sk)
		why := "the subscriber released its lease"
		if kind == subscribers.EventDeclined {
			why = "the subscriber declined its address (in use on its link)"
		}
		p.event(kind, sk.mac, isp.Name, ip, why)
	}
}

// leaseHolder returns the MAC of the DHCP subscriber holding ip at isp.
func (p *Proxy) leaseHolder(isp *ISP, ip netip.Addr) (uint64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, l := range p.leases {
		if l.isp == isp && l.b.IP == ip {
			return k.mac, true
		}
	}
	return 0, false
}

// leaseString spells a lease time; 0xffffffff seconds is infinite (RFC 2131).
func leaseString(d time.Duration) string {
	if d >= 0xffffffff*time.Second {
		return "infinite"
	}
	return d.String()
}

// unusable says why ip cannot be a subscriber's address on circuit c at
// isp, or "" if it can.
func (p *Proxy) unusable(c *Circuit, isp *ISP, ip netip.Addr) string {
	switch {
	case !ip.Is4() || ip.IsUnspecified() || ip.IsLoopback() || ip.IsMulticast() || ip.IsLinkLocalUnicast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "not a unicast address"
	case ip == c.Addr:
		return "the subscribers' gateway address"
	case ip == isp.Addr:
		return "our uplink address"
	}
	for _, s := range isp.Servers {
		if ip == s {
			return "the ISP's DHCP server"
		}
	}
	return ""
}

// abandon forgets transaction t (if it is still pending under pk): it was
// refused before reaching the ISP, so it must not time out later.
func (p *Proxy) abandon(pk pendKey, t *txn) {
	if t == nil {
		return
	}
	p.mu.Lock()
	if p.pending[pk] == t {
		delete(p.pending, pk)
	}
	p.mu.Unlock()
}

// circuitID expands the template (configs has checked its placeholders).
func circuitID(tmpl string, c *Circuit, mac uint64) string {
	if !strings.Contains(tmpl, "{") {
		return tmpl
	}
	return circuitid.Expand(tmpl, c.Interface, int(c.VLAN), c.Name, engine.MACString(mac))
}

// unbind removes a subscriber's binding from the tables, the store and the
// proxy; it returns the address it had.
func (p *Proxy) unbind(sk subKey) netip.Addr {
	p.mu.Lock()
	l := p.leases[sk]
	delete(p.leases, sk)
	if l != nil {
		p.perCircuit[sk.circuit]--
	}
	p.mu.Unlock()
	if l == nil {
		return netip.Addr{}
	}
	p.tables.Unbind(sk.circuit.port, sk.circuit.vlan, sk.mac)
	if _, err := p.store.DeleteBinding(l.b.Access, l.b.VLAN, l.b.MAC); err != nil {
		p.log.Warn("dhcp: binding not deleted from the store", "mac", engine.MACString(sk.mac), "err", err)
	}
	return l.b.IP
}

// fromServer handles an ISP server's message: relayed to our giaddr, or
// (direct) sent straight to a subscriber's address, as a server answers an
// INFORM (RFC 2131 §4.3.5); only that is accepted directly, and its Option
// 82, if echoed, must be ours.
func (p *Proxy) fromServer(isp *ISP, pkt *classifier.Packet, payload []byte, direct bool) {
	src := addr4(pkt.SrcIP)
	known := false
	for _, s := range isp.Servers {
		known = known || s == src
	}
	if !known {
		p.count("unknown_server")
		return
	}
	m, err := dhcpv4.FromBytes(payload)
	if err != nil || len(m.ClientHWAddr) != 6 {
		p.count(errServerMalformed.Error())
		return
	}
	mac := engine.MAC48([6]byte(m.ClientHWAddr))
	pk := pendKey{m.TransactionID, mac, isp.Index}
	p.mu.Lock()
	t := p.pending[pk]
	p.mu.Unlock()
	if t == nil {
		p.count("no_transaction")
		return
	}
	if direct {
		if t.msgType != dhcpv4.MessageTypeInform || m.MessageType() != dhcpv4.MessageTypeAck {
			p.count("server_direct_unexpected")
			return
		}
		if got := m.Options.Get(dhcpv4.OptionRelayAgentInformation); got != nil && !bytes.Equal(got, t.op82) {
			p.count(errOption82.Error())
			return
		}
		if m.OpCode != dhcpv4.OpcodeBootReply || m.Options.Has(dhcpv4.OptionOptionOverload) {
			p.count(errServerMalformed.Error())
			return
		}
	} else if err := checkServer(m, t.op82); err != nil {
		p.count(err.Error())
		if err == errVSSUnsupported {
			p.event(subscribers.EventRejected, mac, isp.Name, netip.Addr{}, "ISP server "+src.String()+
				" does not support VSS (RFC 6607: it echoed VSS-Control); its answer is not used")
		}
		return
	}
	c := t.circuit
	p.log.Debug("dhcp from ISP", "mac", engine.MACString(mac), "type", m.MessageType().String(), "xid", m.TransactionID.String(),
		"isp", isp.Name, "server", src, "yiaddr", m.YourIPAddr)
	switch m.MessageType() {
	case dhcpv4.MessageTypeOffer:
		// The subscriber sees one server (us): of several ISP servers
		// answering one DISCOVER, the first one's OFFER is delivered
		// and its server-id goes into the REQUEST, so the others see
		// they were not chosen (RFC 2131 §4.3.2) and only one ACKs.
		sid, _ := netip.AddrFromSlice(m.ServerIdentifier().To4())
		if !sid.IsValid() {
			p.count("offer_without_server_id")
			return
		}
		p.mu.Lock()
		if t.serverID.IsValid() && t.serverID != sid && t.msgType == dhcpv4.MessageTypeDiscover {
			p.mu.Unlock()
			p.count("offer_other_server")
			return
		}
		t.serverID = sid
		t.deadline = time.Now().Add(p.cfg.Timeout)
		p.offered[t.sub] = offer{isp: isp, sid: sid, at: time.Now()}
		p.mu.Unlock()
		p.deliver(c, m, relayDown(payload, c.Addr))
		p.count("offer")
	case dhcpv4.MessageTypeAck:
		p.mu.Lock()
		delete(p.pending, pk)
		p.mu.Unlock()
		if t.msgType == dhcpv4.MessageTypeInform {
			p.deliver(c, m, relayDown(payload, c.Addr))
			p.count("ack_inform")
			return
		}
		// The ACK goes out after the commit, from another goroutine:
		// build it now, while payload (the punt buffer) is ours.
		ack := relayDown(payload, c.Addr)
		p.committing.Add(1)
		go func() {
			defer p.committing.Done()
			p.bindAndAck(t, m, ack)
		}()
	case dhcpv4.MessageTypeNak:
		p.mu.Lock()
		delete(p.pending, pk)
		p.mu.Unlock()
		ip := p.unbind(t.sub)
		if t.requested.IsValid() {
			ip = t.requested // what the ISP refused
		}
		why := "the ISP refused (DHCPNAK)"
		if msg := m.Message(); msg != "" {
			why += ": " + msg
		}
		p.event(subscribers.EventNak, mac, isp.Name, ip, why)
		p.deliver(c, m, relayDown(payload, c.Addr))
		p.count("nak")
	default:
		p.count("server_unexpected_type")
	}
}

// bindAndAck commits the lease durably, installs it, and only then sends
// the ACK to the subscriber.
func (p *Proxy) bindAndAck(t *txn, m *dhcpv4.DHCPv4, ack []byte) {
	ip, ok := netip.AddrFromSlice(m.YourIPAddr.To4())
	if !ok || !ip.IsValid() || ip.IsUnspecified() {
		p.count("ack_without_address")
		return
	}
	lt := m.IPAddressLeaseTime(0)
	if lt <= 0 {
		p.count("ack_without_lease_time")
		return
	}
	sid := t.serverID
	if s := m.ServerIdentifier(); s != nil {
		if a, ok := netip.AddrFromSlice(s.To4()); ok {
			sid = a
		}
	}
	c := t.circuit
	mac := t.sub.mac
	p.mu.Lock()
	old := p.leases[t.sub]
	// A new ISP or a new address is a new binding (its own event and log
	// line: the audit trail must show which address a subscriber had).
	moved := old != nil && (old.isp != t.isp || old.b.IP != ip)
	if old == nil && p.perCircuit[t.sub.circuit] >= p.cfg.MaxBindingsPerCircuit {
		p.mu.Unlock()
		p.count("circuit_full")
		p.event(subscribers.EventRejected, mac, t.isp.Name, ip, "too many bindings on access "+c.Name)
		return
	}
	p.mu.Unlock()
	// The registration may have changed while the ISP was answering (the
	// subscriber blocked, removed or moved by a reload): no binding then.
	if why := p.stale(subscribers.Binding{MAC: subscribers.MAC(macBytes(mac)), Access: c.Name, ISP: t.isp.Name}); why != "" {
		p.count("ack_registration_changed")
		p.event(subscribers.EventRejected, mac, t.isp.Name, ip, "not bound: "+why+" during the exchange")
		p.nak(c, m, "not admitted")
		return
	}
	// An address no subscriber may hold (ours, broadcast, multicast...)
	// is the ISP's mistake: declined, like an address in use.
	if why := p.unusable(c, t.isp, ip); why != "" {
		p.count("ack_unusable_address")
		p.event(subscribers.EventRejected, mac, t.isp.Name, ip, "the ISP assigned an unusable address ("+why+"); declined to the ISP")
		p.declineAndNak(t, m, ip, sid)
		return
	}
	// An address another subscriber holds at this ISP (a static customer
	// inside the ISP's pool, say) cannot be installed: checked before
	// anything is committed, the lease is declined to the ISP (so its
	// server takes the address out of its pool and offers another) and
	// the subscriber is NAKed (so it starts over at once).
	if err := p.tables.CheckBind(engine.Binding{Port: c.Port, VLAN: c.VLAN, MAC: mac, ISP: t.isp.Index, IP: ip}); err != nil {
		p.count("bind_conflict")
		if holder, ok := p.leaseHolder(t.isp, ip); ok {
			// Another DHCP subscriber holds it: the ISP handed one
			// lease to two clients (a shared or forged client
			// identifier). Declining it would take the address from
			// its holder: only this subscriber is refused.
			p.event(subscribers.EventRejected, mac, t.isp.Name, ip, "the ISP assigned the address of DHCP subscriber "+
				engine.MACString(holder)+" (the same client identifier?); refused")
			p.nak(c, m, "address in use")
			return
		}
		p.event(subscribers.EventRejected, mac, t.isp.Name, ip, "the ISP assigned an address in use: "+err.Error()+"; declined to the ISP")
		p.declineAndNak(t, m, ip, sid)
		return
	}
	now := time.Now()
	b := subscribers.Binding{
		MAC: subscribers.MAC(macBytes(mac)), Access: c.Name, VLAN: c.VLAN, ISP: t.isp.Name, IP: ip,
		Circuit: circuitID(t.isp.CircuitID, c, mac), ServerID: sid, Expires: now.Add(lt), Updated: now,
	}
	if len(t.isp.Servers) > 0 {
		b.Relay = t.isp.Servers[0]
	}
	// A new binding is stored with its "bound" event in one transaction
	// (one fsync); a renewal only moves the expiry.
	var err error
	if old == nil || moved {
		_, err = p.store.CommitBindingEvent(b, subscribers.Event{Time: now, Kind: subscribers.EventBound,
			MAC: b.MAC, ISP: b.ISP, IP: ip, Reason: "lease " + leaseString(lt)})
	} else {
		err = p.store.CommitBinding(b)
	}
	if err != nil {
		p.count("store_error")
		p.log.Error("dhcp: binding not committed; ACK withheld", "mac", engine.MACString(mac), "err", err)
		return
	}
	if old != nil && old.b.IP != ip {
		p.tables.Unbind(c.Port, c.VLAN, mac)
	}
	if err := p.tables.Bind(engine.Binding{Port: c.Port, VLAN: c.VLAN, MAC: mac, ISP: t.isp.Index, IP: ip}); err != nil {
		p.count("bind_conflict")
		_, _ = p.store.DeleteBinding(b.Access, b.VLAN, b.MAC)
		p.event(subscribers.EventRejected, mac, t.isp.Name, ip, "address not installable: "+err.Error())
		return
	}
	p.mu.Lock()
	if p.leases[t.sub] == nil {
		p.perCircuit[t.sub.circuit]++
	}
	p.leases[t.sub] = &lease{b: b, circuit: c, isp: t.isp}
	p.mu.Unlock()
	p.deliver(c, m, ack)
	p.count("ack")
	if old == nil || moved {
		p.log.Info("dhcp bound", "mac", engine.MACString(mac), "isp", t.isp.Name, "ip", ip, "lease", leaseString(lt))
	}
}

// declineAndNak refuses an ACKed address on the subscriber's behalf: a
// DHCPDECLINE for ip to the ISP's servers (relayed as ours, with the
// transaction's Option 82 and the client's identifier, so the server
// matches its lease), and a DHCPNAK to the subscriber.
func (p *Proxy) declineAndNak(t *txn, ack *dhcpv4.DHCPv4, ip, ispServerID netip.Addr) {
	p.decline(t, ack, ip, ispServerID)
	p.nak(t.circuit, ack, "address in use")
}

// decline sends the ISP a DHCPDECLINE of ip for the subscriber of t.
func (p *Proxy) decline(t *txn, ack *dhcpv4.DHCPv4, ip, ispServerID netip.Addr) {
	isp := t.isp
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithTransactionID(ack.TransactionID),
		dhcpv4.WithHwAddr(ack.ClientHWAddr),
		dhcpv4.WithGatewayIP(net.IP(isp.Addr.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP(ip.AsSlice()))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ispServerID.AsSlice()))),
		dhcpv4.WithOption(dhcpv4.OptMessage("address in use behind the relay agent")),
	}
	if len(t.clientID) > 0 {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionClientIdentifier, t.clientID))
	}
	mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionRelayAgentInformation, t.op82))
	if dec, err := dhcpv4.New(mods...); err == nil {
		dec.HopCount = 1
		if gw, ok := p.tables.NextHopMAC(isp.Index); ok {
			payload := dec.ToBytes()
			for _, srv := range isp.Servers {
				p.send.Inject(isp.Port, fib.UDPFrame(gw, isp.MAC, isp.VLAN, isp.Addr, srv, 67, 67, payload))
			}
			p.count("declined_for_subscriber")
		}
	}
}

// nak sends the subscriber a DHCPNAK for the transaction of ack, as its
// server.
func (p *Proxy) nak(c *Circuit, ack *dhcpv4.DHCPv4, msg string) {
	nak, err := dhcpv4.New(
		dhcpv4.WithReply(ack),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithTransactionID(ack.TransactionID),
		dhcpv4.WithHwAddr(ack.ClientHWAddr),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(c.Addr.AsSlice()))),
		dhcpv4.WithOption(dhcpv4.OptMessage(msg)),
	)
	if err != nil {
		return
	}
	nak.YourIPAddr, nak.GatewayIPAddr, nak.ClientIPAddr = net.IPv4zero, net.IPv4zero, net.IPv4zero
	p.deliver(c, nak, nak.ToBytes())
	p.count("nak_sent")
}

// deliver sends a server message to the subscriber as RFC 2131 §4.1 says
// for a server on the client's link (giaddr 0): NAKs are broadcast; a
// client with an address (ciaddr) gets unicast; a client that asked for
// broadcast gets broadcast; otherwise unicast to yiaddr at chaddr. Every
// frame is addressed to chaddr at L2 (see below).
func (p *Proxy) deliver(c *Circuit, m *dhcpv4.DHCPv4, payload []byte) {
	// The Ethernet destination is always the client's own MAC: where RFC
	// 2131 says broadcast, the IP destination is 255.255.255.255 (which
	// a client without an address accepts) but the frame goes to chaddr
	// only — a broadcast frame would show every subscriber on the access
	// network its neighbour's MAC, address and options.
	dstMAC := engine.MAC48([6]byte(m.ClientHWAddr))
	var dst netip.Addr
	bcast := netip.AddrFrom4([4]byte{255, 255, 255, 255})
	ciaddr, _ := netip.AddrFromSlice(m.ClientIPAddr.To4())
	yiaddr, _ := netip.AddrFromSlice(m.YourIPAddr.To4())
	switch {
	case m.MessageType() == dhcpv4.MessageTypeNak:
		dst = bcast
	case ciaddr.IsValid() && !ciaddr.IsUnspecified():
		dst = ciaddr
	case m.IsBroadcast():
		dst = bcast
	case yiaddr.IsValid() && !yiaddr.IsUnspecified():
		dst = yiaddr
	default:
		dst = bcast
	}
	f := fib.UDPFrame(dstMAC, c.MAC, c.VLAN, c.Addr, dst, 67, 68, payload)
	if !p.send.Inject(c.Port, f) {
		p.count("inject_full")
	}
}

// Run expires pending transactions (rejection by silence) and leases until
// ctx ends, then waits for in-flight commits.
func (p *Proxy) Run(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	defer p.events.Wait()
	defer p.committing.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			p.expire(now)
		}
	}
}

func (p *Proxy) expire(now time.Time) {
	type timedOut struct {
		mac     uint64
		isp     string
		mt      dhcpv4.MessageType
		unreach unreachableNote
	}
	var tos []timedOut
	type lapsed struct {
		k   subKey
		isp string
	}
	var expired []lapsed
	p.mu.Lock()
	for k, t := range p.pending {
		if now.After(t.deadline) {
			delete(p.pending, k)
			if t.msgType == dhcpv4.MessageTypeDiscover && !t.serverID.IsValid() || t.msgType == dhcpv4.MessageTypeRequest {
				tos = append(tos, timedOut{t.sub.mac, t.isp.Name, t.msgType, p.lastUnreachable[t.isp.Index]})
			}
		}
	}
	for k, l := range p.leases {
		if !l.b.Expires.After(now) {
			expired = append(expired, lapsed{k, l.b.ISP})
		}
	}
	for mac, b := range p.macBucket {
		if b.full(now, p.cfg.MACRate, p.cfg.MACBurst) {
			delete(p.macBucket, mac)
		}
	}
	for k, t := range p.lastEvent {
		if now.Sub(t) >= eventQuiet {
			delete(p.lastEvent, k)
		}
	}
	for k, o := range p.offered {
		if now.Sub(o.at) >= offerMemory {
			delete(p.offered, k)
		}
	}
	suppressed := 0
	if p.suppressed > 0 && now.Sub(p.lastSummary) >= noiseSummary {
		suppressed, p.suppressed, p.lastSummary = p.suppressed, 0, now
	}
	p.mu.Unlock()
	if suppressed > 0 {
		p.log.Warn("dhcp: refusals beyond the event rate were counted, not recorded", "suppressed", suppressed, "rate_per_s", noiseRate)
	}
	for _, to := range tos {
		p.count("timeout")
		why := fmt.Sprintf("no answer from the ISP to %s within %s", to.mt, p.cfg.Timeout)
		if u := to.unreach; u.server.IsValid() && now.Sub(u.at) < 2*p.cfg.Timeout {
			why += fmt.Sprintf(" (its server %s: %s)", u.server, u.why)
		}
		p.event(subscribers.EventTimeout, to.mac, to.isp, netip.Addr{}, why)
	}
	for _, e := range expired {
		ip := p.unbind(e.k)
		p.count("expired")
		p.event(subscribers.EventExpired, e.k.mac, e.isp, ip, "lease expired")
	}
}

// Lease returns the DHCP binding of the subscriber at port, vlan, mac.
func (p *Proxy) Lease(port uint8, vlan uint16, mac uint64) (subscribers.Binding, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.leases[subKey{circuitKey{port, vlan}, mac}]
	if l == nil {
		return subscribers.Binding{}, false
	}
	return l.b, true
}

// Leases returns the number of leases held.
func (p *Proxy) Leases() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.leases)
}

func ip4(a netip.Addr) uint32 {
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
