// Package engine is ispmux's forwarding decision: it classifies every frame a
// datapath worker receives and turns it into a verdict (forward to a port
// with a new L2 header, answer in place, punt to the control plane, or drop
// with a counted reason).
//
// # Shared state and who writes it
//
// [State] holds the tables every worker reads: the MAC table (access port,
// VLAN, MAC → subscriber's ISP and address), the downstream FIB (ISP VRF,
// destination address → subscriber location) and the uplink snapshot (per
// ISP: port, VLAN, our MAC and address, next hop and its resolved MAC).
// Only the control plane ([Control]) writes them, one goroutine at a time;
// workers read them without locks, loading each table's view once per
// batch.
//
// # Per worker
//
// Each datapath worker owns one [Processor]: its decode scratch, its
// counters (plain integers, published to atomics once per iteration) and
// its side of the punt queue. Frames the control plane must see (DHCP, ARP
// from ISP routers) are copied into preallocated punt buffers; the UMEM
// frame is recycled at once, so the control plane can never hold up the
// datapath. When the punt queue is full the frame is dropped and counted.
//
// # Forwarding model
//
// From a subscriber (an access port/VLAN): ARP is answered in place for any
// address but the subscriber's own (ispmux is every subscriber's gateway);
// DHCP to port 67 is punted, and any other UDP to or from port 67 or 68
// is dropped (dhcp_bypass: DHCP around the relay); IPv4 from a bound MAC
// whose source address is its bound address goes to its ISP's uplink with
// TTL decremented, the checksum patched and a new L2 header. Anything else
// is dropped with a reason: a subscriber never reaches another subscriber
// at L2.
//
// From an ISP (an uplink port/VLAN): ARP for our uplink address or for a
// subscriber address bound to that ISP is answered in place; ARP from the
// ISP's router is punted so the resolver learns its MAC; IPv4 to our MAC is
// looked up in that ISP's VRF and sent to the subscriber, but a server's
// DHCP to a subscriber's address, which the proxy answers for the ISP
// (67 → 68), and any other UDP to or from port 67 or 68 (dropped).
package engine

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/lfmap"
)

// Role says what a (port, VLAN) is.
const (
	roleNone   = 0
	roleAccess = 1
	roleUplink = 2
)

// PortConfig describes one datapath port to the engine.
type PortConfig struct {
	Name string
	// MAC is our MAC address on the port (48-bit).
	MAC uint64
	// AccessVLANs are the VLANs (0 = untagged) on which subscribers are
	// attached to this port.
	AccessVLANs []uint16
	// AccessAddrs maps an access VLAN to our address on it (the
	// subscribers' gateway; ispmux answers pings to it).
	AccessAddrs map[uint16]uint32
	// Uplinks maps a VLAN (0 = untagged) of this port to the ISP it
	// carries.
	Uplinks map[uint16]uint8
	// MTU is the largest IPv4 packet the port sends (0: no limit).
	MTU int
}

// port is the engine's immutable per-port lookup: role and ISP per VLAN.
type port struct {
	name string
	mac  uint64
	role [4096]uint8
	isp  [4096]uint8
	addr [4096]uint32 // our address on an access VLAN, 0 if none
	// shared: the port has more than one access VLAN (circuit), whose
	// unregistered DHCP each takes its share of the port's sample
	// (unregCircuit); with one, that circuit has the whole sample.
	shared bool
}

// State is the forwarding state shared by all workers.
type State struct {
	ports []port
	MAC   *classifier.MACTable
	FIB   *fib.Table
	Up    *fib.Uplinks

	// Punts carries frames from the workers to the control plane.
	Punts *PuntQueue

	// Admitted holds the registered subscriber MACs (key: the MAC, value
	// 1), written by Control.SetAdmitted. Once set (admitOn), a worker
	// punts DHCP from an unregistered MAC only as a small sample per port
	// (enough for the proxy to record who asked) and drops the rest: a
	// flood of made-up MACs cannot fill the punt queue registered
	// subscribers' DHCP goes through.
	Admitted *lfmap.Map
	admitOn  atomic.Bool

	// mtu is the largest IPv4 packet each port sends (0: no limit); it
	// follows the interface's MTU (Control.SetMTU).
	mtu [datapath.MaxPorts]atomic.Int32

	stats []*portStats // per port, summed over workers

	// lastFrom holds, per port and drop reason a subscriber causes
	// (dropFrom), the source MAC of the last frame dropped for it and
	// when (nanotime): what a count alone cannot say, who (LastFrom).
	lastFrom [datapath.MaxPorts][classifier.NumReasons]lastDrop

	// garden is the walled garden's configuration (SetGarden); nil:
	// none, walled-garden subscribers reach nothing past the gateway.
	garden atomic.Pointer[garden]
	// gardenMu serialises publishing the garden with mirroring its
	// portal into the fast path (SetGarden against SetOffload).
	gardenMu sync.Mutex

	// dhcpRate is each subscriber's DHCP punt budget (Control.SetDHCPBudget);
	// nil: dhcpPuntRate and dhcpPuntBurst.
	dhcpRate atomic.Pointer[puntBudget]

	// off is the kernel fast path the control plane mirrors its tables
	// into (Control.SetOffload); nil: none.
	off atomic.Pointer[offloadRef]
}

// puntBudget is each subscriber's DHCP budget: its rate per second and
// burst, and what an unregistered MAC's message costs of it.
type puntBudget struct{ rate, burst, unregCost float64 }

// puntPerPort is the punt queue depth of each port.
const puntPerPort = 512

// NewState builds the shared state for the given ports. capacity sizes the
// MAC table and FIB (subscribers).
func NewState(ports []PortConfig, capacity int, seed uint64) (*State, error) {
	if len(ports) == 0 || len(ports) > datapath.MaxPorts {
		return nil, fmt.Errorf("engine: %d ports: want 1..%d", len(ports), datapath.MaxPorts)
	}
	s := &State{
		MAC:      classifier.NewMACTable(capacity, seed),
		FIB:      fib.NewTable(capacity, seed^0x9e3779b97f4a7c15),
		Up:       &fib.Uplinks{},
		Punts:    NewPuntQueue(len(ports), puntPerPort),
		Admitted: lfmap.New(capacity, seed^0x5bd1e9955bd1e995),
	}
	for _, pc := range ports {
		p := port{name: pc.Name, mac: pc.MAC}
		s.mtu[len(s.ports)].Store(int32(pc.MTU))
		for _, v := range pc.AccessVLANs {
			if v > 4095 {
				return nil, fmt.Errorf("engine: port %s: vlan %d out of range", pc.Name, v)
			}
			p.role[v] = roleAccess
			p.addr[v] = pc.AccessAddrs[v]
		}
		p.shared = bytes.Count(p.role[:], []byte{roleAccess}) > 1
		for v, isp := range pc.Uplinks {
			if v > 4095 {
				return nil, fmt.Errorf("engine: port %s: vlan %d out of range", pc.Name, v)
			}
			if p.role[v] != roleNone {
				return nil, fmt.Errorf("engine: port %s vlan %d is both access and uplink", pc.Name, v)
			}
			p.role[v] = roleUplink
			p.isp[v] = isp
		}
		s.ports = append(s.ports, p)
		s.stats = append(s.stats, &portStats{})
	}
	return s, nil
}

// NumPorts is the number of ports.
func (s *State) NumPorts() int { return len(s.ports) }

// PortName returns port i's name.
func (s *State) PortName(i int) string { return s.ports[i].name }

// portStats are a port's engine counters summed over workers; each worker
// adds its deltas once per iteration.
type portStats struct {
	drops                       [classifier.NumReasons]atomic.Uint64
	up, down, arpReplies, punts atomic.Uint64
	echoReplies, icmpErrors     atomic.Uint64
	dnsAnswers, gardenResets    atomic.Uint64
	gardenRedirects             atomic.Uint64
	gardenHandshake             atomic.Uint64
	icmpLimited                 [NumICMPBudgets]atomic.Uint64
}

// ICMPBudget names a budget of the ICMP errors ispmux sends
// (PortCounters.ICMPLimited).
type ICMPBudget uint8

// The ICMP error budgets, checked in this order: a subscriber's share of
// its port's, then the port's (per worker: burst 50, 100 a second).
const (
	ICMPBudgetSubscriber ICMPBudget = iota // the subscriber's share (circuit and MAC)
	ICMPBudgetPort                         // the port's, for every sender on it
	// NumICMPBudgets is the number of budgets; not a budget.
	NumICMPBudgets
)

// String returns the budget's name, the metrics' budget label:
// "subscriber" or "port".
func (b ICMPBudget) String() string {
	switch b {
	case ICMPBudgetSubscriber:
		return "subscriber"
	case ICMPBudgetPort:
		return "port"
	}
	return "unknown"
}

// PortCounters is a snapshot of one port's engine counters.
type PortCounters struct {
	Name string
	// Drops counts dropped frames received on the port, by reason.
	Drops classifier.Counters
	// Up counts frames from subscribers forwarded to an ISP; Down frames
	// from an ISP forwarded to a subscriber (by the workers and the kernel
	// fast path, when there is one).
	Up, Down uint64
	// FastUp and FastDown are the part of Up and Down the kernel fast
	// path forwarded (Control.SetOffload); 0 without one.
	FastUp, FastDown uint64
	// ARPReplies counts ARP requests answered in place.
	ARPReplies uint64
	// EchoReplies counts pings to our own addresses answered in place.
	EchoReplies uint64
	// ICMPErrors counts ICMP errors sent for frames that arrived here:
	// time exceeded for TTL ≤ 1 (ttl_expired drops) and fragmentation
	// needed for DF over the egress MTU (too_big drops).
	ICMPErrors uint64
	// ICMPLimited counts the ICMP errors not sent for frames that
	// arrived here, by the budget that refused them: the subscriber's
	// share or the port's (the frames are counted as drops too).
	ICMPLimited [NumICMPBudgets]uint64
	// Punts counts frames copied to the control plane.
	Punts uint64
	// DNSAnswers counts walled-garden subscribers' DNS queries answered
	// in place (see Garden).
	DNSAnswers uint64
	// GardenResets counts walled-garden subscribers' TCP segments to
	// port 443 (or any other but 80) of an address other than the
	// portal's, answered in place with a reset (not counted as drops).
	GardenResets uint64
	// GardenRedirects counts walled-garden subscribers' HTTP requests to
	// port 80 of an address other than the portal's, answered in place
	// with a redirect to the portal (gardenhttp.go).
	GardenRedirects uint64
	// GardenHandshake counts the other segments of those exchanges,
	// sent in place too: SYN-ACKs and the ACKs of the clients' FINs.
	// DNSAnswers, GardenResets, GardenRedirects and GardenHandshake
	// count every frame the walled garden sends, each once.
	GardenHandshake uint64
}

// Counters returns every port's counters.
func (s *State) Counters() []PortCounters {
	out := make([]PortCounters, len(s.ports))
	for i, st := range s.stats {
		c := &out[i]
		c.Name = s.ports[i].name
		for r := range st.drops {
			c.Drops[r] = st.drops[r].Load()
		}
		c.Up, c.Down = st.up.Load(), st.down.Load()
		c.ARPReplies, c.Punts = st.arpReplies.Load(), st.punts.Load()
		c.EchoReplies, c.ICMPErrors = st.echoReplies.Load(), st.icmpErrors.Load()
		c.DNSAnswers, c.GardenResets = st.dnsAnswers.Load(), st.gardenResets.Load()
		c.GardenRedirects, c.GardenHandshake = st.gardenRedirects.Load(), st.gardenHandshake.Load()
		for b := range st.icmpLimited {
			c.ICMPLimited[b] = st.icmpLimited[b].Load()
		}
		if o := s.offload(); o != nil {
			c.FastUp, c.FastDown = o.Forwarded(uint8(i))
			c.Up += c.FastUp
			c.Down += c.FastDown
		}
	}
	return out
}

// lastDrop is the source MAC of a port's last frame dropped for a reason,
// and when (nanotime; 0: none).
type lastDrop struct {
	mac atomic.Uint64
	at  atomic.Int64
}

// DropFrom is the source of a port's last frame dropped for a reason.
type DropFrom struct {
	Reason classifier.Reason
	MAC    uint64
	At     time.Time
}

// LastFrom returns, for port, the source MAC of the last frame dropped for
// each reason a subscriber causes (spoofed_source, unknown_mac,
// subscriber_to_subscriber, dhcp_flood, unregistered_dhcp_circuit,
// walled_garden, not_unicast, ip_options, l2_broadcast), and when; none for a reason that dropped
// nothing since the start.
func (s *State) LastFrom(port int) []DropFrom {
	if port < 0 || port >= datapath.MaxPorts {
		return nil
	}
	var out []DropFrom
	for r := range classifier.NumReasons {
		l := &s.lastFrom[port][r]
		if at := l.at.Load(); at != 0 {
			out = append(out, DropFrom{Reason: r, MAC: l.mac.Load(), At: clock.Add(time.Duration(at))})
		}
	}
	return out
}
