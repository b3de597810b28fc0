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
// counted by reason), admitted against the registry (unknown and blocked
// subscribers get no answer; the attempt is an event — except that on a
// circuit with an onboarding pool ispmux itself serves the MACs without a
// device record, onboarding.go), rate limited per
// MAC and per access circuit, then relayed to every DHCP server of the
// chosen ISP and remembered as a pending transaction (xid, MAC, ISP). A
// server reply is accepted only if it matches a pending transaction and
// echoes our Option 82 byte for byte.
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
//
// # Files and their state
//
// One concern a file, each with its own state and the one lock that owns
// it; no two of these locks are ever held at once, and none is held across
// a store call or a send. Above them, a per-subscriber stripe (subMu)
// serialises a binding's commit and its end, and is held across those (the
// concern locks are taken under it, never the other way round); above that
// one, a stripe by client identifier (cidMu) serialises the ACKs that
// would bind one identifier, and is held across a commit and across the
// revocation of the identifier's holder (clientid_ack.go):
//
//   - proxy.go: configuration (immutable after New), counters (atomic),
//     the dispatch of punted frames, Run.
//   - txns.go: the transactions in flight with the ISPs, the OFFERs
//     remembered (txns.mu); txnindex.go: the table's changes (put, del),
//     which keep its index by subscriber and give a drained burst's
//     memory back; txnnotes.go: the notes the relay makes on a
//     transaction; timeouts.go: those past their deadline, and the ICMP
//     unreachables, unlisted repliers and malformed answers heard about
//     them, which their timeout events name; txndue.go: the deadlines'
//     heap, from which timeouts.go takes the transactions due; atheap.go:
//     the min-heap by time it shares with the lease ends and the moves.
//   - upstream.go: messages from subscribers: checks, admission, relay up.
//   - replies.go: messages from the ISPs' servers and what the subscriber
//     is sent (no state of its own); naks.go: the NAKs ispmux sends, and
//     the DECLINE of an acknowledged address it cannot use.
//   - lifecycle.go: the bindings held (leaseTable.mu): bind, revalidation,
//     expiry; restore.go: the stored bindings installed (or ended) at the
//     start; bulkend.go: many bindings ended at once, in batches of one
//     store transaction (no state of its own).
//   - renewals.go: the client lease (at most ClientLeaseMax: options 51,
//     58, 59 ispmux's), renewals answered from the binding before the
//     ISP's T1, the NAK of any REQUEST not for the subscriber's binding at
//     its current ISP (no state of its own).
//   - moves.go: a device moved to another ISP keeps its old binding until
//     its next REQUEST or ClientLeaseMax (make-before-break); a binding
//     another circuit asks for is taken over only once the client lease
//     ispmux last gave its holder has run out unrenewed, at the latest
//     ClientLeaseMax after the claim without a word from the holder (the
//     deadlines, claims and client leases' ends are leaseTable's).
//   - probes.go: the ARP probes of a claimed binding's circuit, which end
//     the claim (an answer) or let it take the binding over at once
//     (silence); the probe sets in flight and budgets (probeTable.mu).
//   - intents.go: ending a binding the ISP must hear about, through a
//     durable intent; the intents not yet completed (intentQueue.mu).
//   - limit.go: the per-MAC and per-circuit rate limits (limiter.mu).
//   - mapmem.go: when a map a burst filled is remade to give its memory
//     back (mapMem, no state of its own: its owner's lock), for the
//     transactions' and the intents' maps, the rate limits' buckets, the
//     generations, the revoked addresses and the reclaims' waits.
//   - events.go: state-change events (stored with their change) and
//     refusal events (folded, budgeted per ISP: eventNotes.mu).
//   - storeerr.go: the log lines of the writes the store refused, at most
//     one per message every 10 s (logLimiter.mu).
//   - onboarding.go, onboarding_pool.go, onboarding_end.go (how a lease
//     ends, and comes back at a start): ispmux as the DHCP server of the
//     MACs without a device record on circuits with an onboarding pool
//     (leases in the walled garden's VRF), the handover to their ISP; the
//     pools, onboarding leases, offers, quarantined addresses and
//     handovers' holds (onboardingTable.mu).
//
// The static-IP subscribers' set is an atomically replaced map (SetStatic);
// the ports' MTUs are atomics (SetPortMTU).
package dhcpproxy

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/registry"
	"github.com/ispmux/ispmux/subscribers"
)

// Store is the durable state the proxy needs (subscribers.Store).
type Store interface {
	// CommitBindingEvent stores a binding and the event recording it
	// (bound, renewed) in one durable transaction.
	CommitBindingEvent(b subscribers.Binding, e subscribers.Event) (subscribers.Event, error)
	// EndBinding removes a binding, stores the intent (if any) and the
	// event, in one durable transaction.
	EndBinding(access string, vlan uint16, mac subscribers.MAC, in *subscribers.Intent, e subscribers.Event) (subscribers.Intent, subscribers.Event, bool, error)
	// EndBindings ends many bindings with no intent, each with its
	// event, many to a durable transaction (a restart's expired ones).
	EndBindings(ends []subscribers.BindingEnd) ([]subscribers.Event, error)
	// CommitOnboarding stores an onboarding lease and the event recording
	// it (none for a renewal: e.Kind ""), in one durable transaction.
	CommitOnboarding(l subscribers.OnboardingLease, e subscribers.Event) (subscribers.Event, error)
	// EndOnboarding removes a MAC's onboarding lease and stores the event
	// recording it, in one durable transaction (nothing if it had none).
	EndOnboarding(mac subscribers.MAC, e subscribers.Event) (subscribers.Event, bool, error)
	OnboardingLeases() ([]subscribers.OnboardingLease, error)
	// AddIntent stores an intent on its own, durably (a DECLINE of an
	// address ispmux never bound: no binding ends with it).
	AddIntent(in subscribers.Intent) (subscribers.Intent, error)
	CompleteIntent(id uint64) error
	// CompleteIntents deletes many intents in one durable transaction
	// (a round's backlog, completeBatch at a time).
	CompleteIntents(ids []uint64) error
	Intents() ([]subscribers.Intent, error)
	// ForEachBindingBorrowed calls fn with every stored binding, one at
	// a time (Restore: nothing of the whole set is held at once); the
	// binding's strings and bytes are valid only until fn returns.
	ForEachBindingBorrowed(fn func(*subscribers.Binding) error) error
	// Binding reads one binding (what the lease table does not keep).
	Binding(access string, vlan uint16, mac subscribers.MAC) (subscribers.Binding, error)
	// Registration reads a MAC's registration (when it was made: what
	// the registry does not keep).
	Registration(mac subscribers.MAC) (subscribers.Registration, error)
	// Customer reads a customer (when it last changed: a suspension
	// lifted, restoreFallback).
	Customer(isp, id string) (subscribers.Customer, error)
	AddEvent(e subscribers.Event) (subscribers.Event, error)
}

// Registry is who may get service (registry.Registry), read for every
// message: never the store.
type Registry interface {
	Lookup(mac uint64) (registry.Entry, bool)
}

// Tables is the forwarding state the proxy writes (engine.Control).
type Tables interface {
	// CheckBind reports whether Bind(b) would conflict (another
	// subscriber holds the address at that ISP), changing nothing.
	CheckBind(b binding.Binding) error
	Bind(b binding.Binding) error
	Unbind(port uint8, vlan uint16, mac uint64) bool
	// Holder returns the binding that holds address a at ISP isp.
	Holder(isp uint8, a netip.Addr) (binding.Binding, bool)
	NextHopMAC(isp uint8) (uint64, bool)
}

// reserver is what Tables may also do (engine.Control does): make room at
// once for n bindings more than they hold, before RestoreLoaded installs
// as many (the ISP bindings, then the onboarding leases), so that the
// tables do not grow in steps (see engine.Control.Reserve).
type reserver interface {
	Reserve(n int)
}

// Sender transmits a frame out of a port (a datapath worker's injection
// queue). Inject copies frame (or is done with it) before it returns: the
// proxy reuses its frame buffers.
type Sender interface {
	Inject(port uint8, frame []byte) bool
}

// framePool holds frame buffers for injectUDP (an Ethernet frame fits).
var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// injectUDP builds the UDP frame around payload (fib.UDPFrame) in a
// pooled buffer and injects it out of port.
func (p *Proxy) injectUDP(port uint8, dstMAC, srcMAC uint64, vlan uint16, src, dst netip.Addr, sport, dport uint16, payload []byte) bool {
	bp := framePool.Get().(*[]byte)
	f := fib.AppendUDPFrame((*bp)[:0], dstMAC, srcMAC, vlan, src, dst, sport, dport, payload)
	ok := p.send.Inject(port, f)
	*bp = f[:0]
	framePool.Put(bp)
	return ok
}

// relayedCounter is the counter of a relayed message of type mt
// ("relayed_discover" …), without building the name each time.
func relayedCounter(mt dhcpv4.MessageType) string {
	switch mt {
	case dhcpv4.MessageTypeDiscover:
		return "relayed_discover"
	case dhcpv4.MessageTypeRequest:
		return "relayed_request"
	case dhcpv4.MessageTypeRelease:
		return "relayed_release"
	case dhcpv4.MessageTypeDecline:
		return "relayed_decline"
	case dhcpv4.MessageTypeInform:
		return "relayed_inform"
	}
	return "relayed_" + strings.ToLower(mt.String())
}

// Circuit is an access port/VLAN where subscribers attach.
type Circuit struct {
	Name      string // the [[access]] name
	Interface string
	Port      uint8
	VLAN      uint16
	MAC       uint64     // our MAC on the port
	Addr      netip.Addr // our address: the server identifier subscribers see
	// MTU is the access port's IP MTU at start (0: 1500): no reply to a
	// subscriber is longer (fitReply). SetPortMTU changes it while
	// running.
	MTU int
	// Onboarding is the circuit's onboarding pool; nil: onboarding off
	// (MACs without a device record get no answer, an event).
	Onboarding *Onboarding
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
	// MTU is the uplink's IP MTU at start (0: 1500). A relayed message
	// that would not fit is refused, not sent to be dropped on the wire.
	// SetPortMTU changes it while running.
	MTU int
}

// Config is the proxy's configuration: its circuits and ISPs, fixed for
// its life, and its first Limits.
type Config struct {
	Limits   Limits
	Circuits []Circuit
	ISPs     []ISP
	// MaxOnboarding caps the onboarding leases and outstanding offers
	// over all circuits (0: no cap beyond each circuit's).
	MaxOnboarding int
}

// Limits are the proxy's timers and limits ([dhcp]), which SetLimits
// changes while it runs (a SIGHUP): each is read where it applies, so a
// change applies to what comes after it. A transaction keeps the
// deadline it was given, a lease the cut it was given, a bucket its
// tokens (refilled at the new rate up to the new burst), and bindings
// beyond a lowered MaxBindingsPerCircuit stay (new ones are refused).
type Limits struct {
	Timeout               time.Duration
	MaxPending            int
	MACRate, MACBurst     int
	CircuitRate           int
	CircuitBurst          int
	MaxBindingsPerCircuit int
	// ClientLeaseMax caps the lease a subscriber is given (renewals.go);
	// 0: DefaultClientLeaseMax.
	ClientLeaseMax time.Duration
}

// SetLimits applies l from now on (see Limits). A ClientLeaseMax lowered
// leaves the leases given under the old one as they are: until the old one
// has passed, the waits that count on every client lease being within it
// (a moved device's deadline, another circuit's claim) take the old one
// (leaseMaxFor).
func (p *Proxy) SetLimits(l Limits) {
	if l.ClientLeaseMax <= 0 {
		l.ClientLeaseMax = DefaultClientLeaseMax
	}
	if old := p.lim.Load(); old != nil && old.ClientLeaseMax > l.ClientLeaseMax {
		hw := leaseMaxHigh{max: old.ClientLeaseMax, until: time.Now().Add(old.ClientLeaseMax)}
		if prev := p.leaseHigh.Load(); prev != nil && prev.max > hw.max && prev.until.After(hw.until) {
			hw = *prev // an earlier, longer one still runs
		}
		p.leaseHigh.Store(&hw)
	}
	p.lim.Store(&l)
}

// leaseMaxHigh is a ClientLeaseMax lowered by SetLimits: leases given
// under it may run until until.
type leaseMaxHigh struct {
	max   time.Duration
	until time.Time
}

// LeaseMax is the longest client lease a subscriber may hold at now
// (leaseMaxFor): what a move waits for at most.
func (p *Proxy) LeaseMax(now time.Time) time.Duration { return p.leaseMaxFor(now) }

// leaseMaxFor is the longest client lease a subscriber may hold at now:
// ClientLeaseMax, or one before it that was longer while leases given
// under it may still run (SetLimits). A review: with client_lease_max
// lowered from 10m to 1m by a reload, a moved device's old binding was cut
// a minute after the move while its client held 8 more minutes of lease.
func (p *Proxy) leaseMaxFor(now time.Time) time.Duration {
	d := p.lim.Load().ClientLeaseMax
	if hw := p.leaseHigh.Load(); hw != nil && now.Before(hw.until) {
		d = max(d, hw.max)
	}
	return d
}

// Limits returns the limits in force.
func (p *Proxy) Limits() Limits { return *p.lim.Load() }

type circuitKey struct {
	port uint8
	vlan uint16
}

type subKey struct {
	circuit circuitKey
	mac     uint64
}

// Header lengths of the relayed datagram (ispmux sends no IP options).
const ipv4HeaderLen, udpHeaderLen = 20, 8

// Proxy is the DHCP engine. HandleFrame may be called from one goroutine
// (the control plane); Run drives timers. All methods are safe for
// concurrent use.
type Proxy struct {
	cfg Config
	// progress counts Run's rounds of timers and the work items done in
	// them (Progress).
	progress atomic.Uint64
	// intentTurn counts sendRound's rounds: the ISP whose intents go
	// first turns with it.
	intentTurn atomic.Uint64
	// lim holds the limits in force (SetLimits); cfg.Limits is zero.
	lim atomic.Pointer[Limits]
	// leaseHigh is the last ClientLeaseMax SetLimits lowered (leaseMaxFor).
	leaseHigh atomic.Pointer[leaseMaxHigh]
	store     Store
	reg       Registry
	tables    Tables
	send      Sender
	log       *slog.Logger
	// logLimit bounds the INFO event lines (loglimit.go).
	logLimit logLimit
	// now is the clock of a subscriber's message (time.Now; tests move
	// it past an ISP's T1).
	now func() time.Time
	// born is when New made the proxy: RAM state (the handovers' holds)
	// begins then (recentClaim).
	born time.Time

	// Immutable after New.
	circuits map[circuitKey]*Circuit
	uplinks  map[circuitKey]*ISP
	isps     map[string]*ISP
	ispAt    [256]*ISP // by index
	// circuitNamed finds a circuit by its access name and VLAN (a stored
	// binding's).
	circuitNamed map[circuitName]*Circuit

	// mtu is each ISP uplink's current MTU, by ISP index.
	mtu [256]atomic.Int32
	// portMTU is each port's current MTU, by port (0: unknown), for
	// the access ports (accessMTU).
	portMTU [256]atomic.Int32
	// static is the set of static-IP subscribers' MACs (SetStatic).
	static atomic.Pointer[map[uint64]bool]
	// resolved says, by ISP index, whether its next hop was ever
	// resolved since start; waiting bounds the messages waiting for a
	// first resolution (relayLater).
	resolved [256]atomic.Bool
	// unresolvedSaid: the ISP's next hop, never resolved, was logged
	// past startupGrace (noteResolved).
	unresolvedSaid [256]atomic.Bool
	waiting        chan struct{}

	tx         txns
	leases     leaseTable
	reclaims   reclaimWaits    // client identifier reclaims waiting for the holder's RELEASE (clientids.go)
	reclaimed  reclaimHoldoffs // holders recently revoked by a reclaim (clientid_reclaim.go)
	revokedIPs revokedAddrs    // revoked bindings' addresses, NAKed to their unknown MACs (revoked.go)
	limits     limiter
	notes      eventNotes
	intents    intentQueue
	ob         onboardingTable
	fb         fallbacks // failed handovers (onboarding_fallback.go)
	probes     probeTable

	// subMu serialises, per subscriber (striped by MAC), a binding's
	// commit (bindAndAck) and its end (endBinding): an ACK committed
	// while the subscriber's RELEASE ends its binding would bring back
	// a lease the ISP freed. Taken before any concern's lock, never
	// while holding one.
	subMu [64]sync.Mutex
	// cidMu serialises, per client identifier (striped by its cidKey),
	// the ACKs that would bind it (bindAndAck, clientid_ack.go): taken
	// before subMu, never while holding a stripe of it.
	cidMu cidLocks

	committing sync.WaitGroup
	// lapsing runs a start's ends of lapsed bindings (endLapsed); closing
	// stops it between batches.
	lapsing sync.WaitGroup
	closing atomic.Bool

	counters sync.Map // name → *atomic.Uint64
	// storeErrs limits the log lines of store errors (storeError).
	storeErrs logLimiter
	// stats are the per-ISP statistics by ISP index (stats.go).
	stats [256]atomic.Pointer[ispStats]
}

// New returns a proxy. Call Restore before the datapath forwards, then Run.
func New(cfg Config, store Store, reg Registry, tables Tables, send Sender, log *slog.Logger) *Proxy {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{
		cfg: cfg, store: store, reg: reg, tables: tables, send: send, log: log, now: time.Now, born: time.Now(),
		circuits:     map[circuitKey]*Circuit{},
		uplinks:      map[circuitKey]*ISP{},
		isps:         map[string]*ISP{},
		circuitNamed: map[circuitName]*Circuit{},
		waiting:      make(chan struct{}, maxWaiting),
	}
	p.tx.init()
	p.intents.init()
	p.leases.init()
	p.probes.init()
	p.SetLimits(cfg.Limits)
	p.cfg.Limits = Limits{} // p.lim is the one in force
	p.limits.init(&p.lim)
	p.notes.init()
	for i := range cfg.Circuits {
		c := &p.cfg.Circuits[i]
		p.circuits[circuitKey{c.Port, c.VLAN}] = c
		if c.MTU > 0 {
			p.portMTU[c.Port].Store(int32(c.MTU))
		}
		if _, dup := p.circuitNamed[circuitName{c.Name, c.VLAN}]; !dup {
			p.circuitNamed[circuitName{c.Name, c.VLAN}] = c
		}
	}
	p.ob.init(p.cfg.Circuits, log)
	for i := range cfg.ISPs {
		isp := &p.cfg.ISPs[i]
		p.uplinks[circuitKey{isp.Port, isp.VLAN}] = isp
		p.isps[isp.Name] = isp
		p.ispAt[isp.Index] = isp
		p.mtu[isp.Index].Store(int32(isp.MTU))
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

// SetPortMTU records that the interface of port now has MTU mtu (for
// the ISPs whose uplink it is and the circuits on it).
func (p *Proxy) SetPortMTU(port uint8, mtu int) {
	for _, isp := range p.isps {
		if isp.Port == port {
			p.mtu[isp.Index].Store(int32(mtu))
		}
	}
	p.portMTU[port].Store(int32(mtu))
}

// accessMTU is circuit c's access port MTU now.
func (p *Proxy) accessMTU(c *Circuit) int {
	if m := int(p.portMTU[c.Port].Load()); m > 0 {
		return m
	}
	return 1500
}

// replyLimit is the longest DHCP message ispmux sends a client on circuit
// c that takes clientMax bytes (maxReplyOf): no more than one IP datagram
// of the access port's MTU carries either.
func (p *Proxy) replyLimit(c *Circuit, clientMax int) int {
	return min(clientMax, p.accessMTU(c)-ipv4HeaderLen-udpHeaderLen)
}

// fitted returns the ISP's reply b (relayDown's) made to fit what t's
// client takes on its circuit (fitReply), counting a reply laid out again
// (reply_repacked), one with options left out (reply_options_truncated)
// or one that cannot fit (reply_too_big, nil: not to be sent).
func (p *Proxy) fitted(t *txn, b []byte) []byte {
	limit := p.replyLimit(t.circuit, t.replyMax)
	out, how := fitReply(b, limit, t.prl)
	switch how {
	case fitRepacked:
		p.count("reply_repacked")
	case fitTruncated:
		p.count("reply_options_truncated")
		p.log.Debug("dhcp: options of an ISP's reply left out to fit the client", "mac", binding.MACString(t.sub.mac),
			"isp", t.isp.Name, "bytes", len(b), "limit", limit)
	case fitImpossible:
		p.count("reply_too_big")
	}
	return out
}

// uplinkMTU is isp's uplink MTU now.
func (p *Proxy) uplinkMTU(isp *ISP) int {
	if m := int(p.mtu[isp.Index].Load()); m > 0 {
		return m
	}
	return 1500
}

// SetStatic sets the MACs of the static-IP subscribers. Their DISCOVERs
// and REQUESTs are refused (their address is configured; a DHCP lease would
// replace it), INFORM is served, and a DHCP binding they hold is stale.
func (p *Proxy) SetStatic(macs []uint64) {
	m := make(map[uint64]bool, len(macs))
	for _, x := range macs {
		m[x] = true
	}
	p.static.Store(&m)
}

func (p *Proxy) isStatic(mac uint64) bool {
	m := p.static.Load()
	return m != nil && (*m)[mac]
}

func (p *Proxy) circuitByName(name string, vlan uint16) *Circuit {
	return p.circuitNamed[circuitName{name, vlan}]
}

type circuitName struct {
	name string
	vlan uint16
}

// HandleFrame processes one punted frame received on port: DHCP, an ICMP
// unreachable about it, a subscriber's ARP reply to a probe (probes.go).
func (p *Proxy) HandleFrame(port uint8, f []byte) {
	var pkt classifier.Packet
	if pkt.Decode(f) != classifier.ReasonNone {
		p.count("malformed_frame")
		return
	}
	k := circuitKey{port, pkt.VLAN & 0xfff}
	if pkt.Kind == classifier.KindARP {
		if c, ok := p.circuits[k]; ok {
			p.fromSubscriberARP(c, &pkt)
		} else {
			p.count("not_for_us")
		}
		return
	}
	if isp, ok := p.uplinks[k]; ok && pkt.Kind == classifier.KindIPv4 && pkt.Proto == 1 && pkt.FragOff == 0 && pkt.L4+8 <= len(f) && f[pkt.L4] == 3 {
		p.unreachable(isp, &pkt, f)
		return
	}
	payload, ok := udpPayload(&pkt, f)
	if !ok {
		p.count("malformed_frame")
		return
	}
	if !udpChecksumOK(&pkt, f) {
		p.count("udp_bad_checksum")
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

// Run expires pending transactions (rejection by silence), leases and
// onboarding leases and offers, and sends the pending intents, until ctx
// ends. The last summary of the refusals held back is Close's.
func (p *Proxy) Run(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			p.expire(now)
			p.logLimit.flush(p.log, now, false)
			p.progress.Add(1)
		}
	}
}

// Progress counts Run's finished rounds of its timers and the items of
// work done within them (an intent settled or sent, a lease ended): the
// service watchdog's sign that the proxy's timers turn
// (appliance/watchdog.go). A round that works through a backlog (a start
// after an ISP's outage: thousands of RELEASEs pending, each settled by a
// store commit of its own) may take longer than the watchdog's interval,
// and moves it all along; one stuck (a lock, a store that never returns)
// does not.
func (p *Proxy) Progress() uint64 { return p.progress.Load() }

// Close waits for the ACKs being committed (refusing some, maybe) and the
// refusal events being written, then writes the summary of the refusals
// held back since the last one, due or not: the process is ending, and
// with it the count the next summary, up to noiseSummary later, would
// have given the operator's log. Call it once Run has returned and
// nothing hands the proxy frames any more (the appliance: once its
// goroutines, the control plane's among them, have returned; ctl.Run and
// Run stop on the same cancel, and a frame refused after Run returned
// was counted in no summary), before the store closes; the proxy is not
// used after it.
func (p *Proxy) Close() {
	p.closing.Store(true)
	p.lapsing.Wait()
	p.committing.Wait()
	p.notes.wait()
	now := time.Now()
	p.writeSummary(now, p.notes.take(now))
	p.logLimit.flush(p.log, now, true)
}

// expire runs the timers of every concern.
func (p *Proxy) expire(now time.Time) {
	p.noteResolved()
	p.expireTxns(now)
	p.limits.forget(now)
	p.notes.forget(now)
	p.summarize(now)
	p.expireLeases(now)
	p.leases.pruneGens(now)
	p.revokedIPs.prune(now)
	p.cutMoves(now)
	p.sendProbes(now)
	p.expireOnboarding(now)
	p.flushIntents(now)
	p.reclaims.prune(now, p.intents.onWire)
}

// subStripe is the index of subscriber mac's stripe of subMu.
func (p *Proxy) subStripe(mac uint64) int {
	return int((mac ^ mac>>8 ^ mac>>16) % uint64(len(p.subMu)))
}

// lockSub locks subscriber mac's stripe of subMu; the caller unlocks it.
func (p *Proxy) lockSub(mac uint64) *sync.Mutex {
	m := &p.subMu[p.subStripe(mac)]
	m.Lock()
	return m
}

func ip4(a netip.Addr) uint32 {
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
