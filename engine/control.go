package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ispmux/ispmux/classifier"
	"github.com/ispmux/ispmux/datapath"
	"github.com/ispmux/ispmux/fib"
	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/lfmap"
)

// Injector sends a frame out of a port on behalf of the control plane
// (a datapath worker's injection queue).
type Injector interface {
	Inject(port uint8, frame []byte) bool
}

// Binding is one subscriber bound to an ISP with an address (the leaf
// package's type, shared with the control plane).
type Binding = binding.Binding

// ErrConflict is returned when a binding's address is bound to another
// subscriber at the same ISP.
var ErrConflict = binding.ErrConflict

// PuntHandler receives punted frames the control plane does not handle
// itself (DHCP). It must not keep p after returning.
type PuntHandler func(p *Punted)

// Control is the single writer of the forwarding state: it installs and
// removes bindings, resolves each ISP's next hop by ARP, and consumes the
// punt queue.
type Control struct {
	s   *State
	inj Injector
	log *slog.Logger
	// ticks counts Run's resolver rounds (Ticks).
	ticks atomic.Uint64

	// mu serialises the table writers (bindings, uplinks). Lock order: mu
	// only; no other lock is taken while holding it.
	// The bindings themselves are the MAC table's entries (the control
	// plane keeps no second copy: at a million subscribers a Go map of
	// them cost ~150 B each and the GC's time to scan it).
	mu sync.Mutex
	// perISP counts bindings by ISP index, DHCP [0] and static [1]
	// (BindingsPerISP: O(ISPs) at scrape time).
	perISP   [256][2]int
	resolver *fib.Resolver

	// OnPunt handles punted frames that are not ARP from an uplink: DHCP,
	// ICMP unreachables about it, subscribers' ARP replies to the DHCP
	// proxy's probes. Set before Run.
	OnPunt PuntHandler

	arpSent, arpLearned, puntOther atomic.Uint64

	// names are the ISPs' names for the log (NameISP; under mu).
	names [256]string
}

// NewControl returns the control plane for s, sending through inj.
func NewControl(s *State, inj Injector, log *slog.Logger) *Control {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Control{
		s: s, inj: inj, log: log,
		resolver: fib.NewResolver(s.Up),
	}
}

// ConfigureISP publishes ISP isp's uplink. Resolution of its next hop
// starts on the next tick of Run.
func (c *Control) ConfigureISP(isp uint8, up fib.Uplink) {
	c.mu.Lock()
	defer c.mu.Unlock()
	up.Configured = true
	c.s.Up.Configure(isp, up)
}

// NameISP gives ISP isp the name the log calls it by (its VRF number
// otherwise).
func (c *Control) NameISP(isp uint8, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.names[isp] = name
}

// ispName is ISP isp's name for the log; c.mu held.
func (c *Control) ispName(isp uint8) string {
	if n := c.names[isp]; n != "" {
		return n
	}
	return fmt.Sprintf("vrf %d", isp)
}

// Bind installs b in the MAC table and its ISP's VRF (replacing an earlier
// binding of the same subscriber).
func (c *Control) Bind(b Binding) error {
	if !b.IP.Is4() {
		return fmt.Errorf("bind %012x: address %v is not IPv4", b.MAC, b.IP)
	}
	ip := ip4(b.IP)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.uplinkAddr(b); err != nil {
		return err
	}
	d, had := c.s.FIB.Lookup(b.ISP, ip)
	if had && (d.MAC != b.MAC || d.Port != b.Port || d.VLAN != b.VLAN) {
		return fmt.Errorf("bind %012x to %v at ISP %d: %w (by %012x)", b.MAC, b.IP, b.ISP, ErrConflict, d.MAC)
	}
	old, hadOld := c.s.MAC.Lookup(b.Port, b.VLAN, b.MAC)
	moved := hadOld && (old.ISP != b.ISP || old.IP != ip)
	off := c.s.offload()
	flags := classifier.FlagBound
	if b.Static {
		flags |= classifier.FlagStatic
	}
	// The new downstream entry first: once the MAC table says bound,
	// replies must already find their way back. The old one goes once
	// both tables hold the new binding; a failure leaves the old binding
	// whole.
	dest := fib.Dest{Port: b.Port, VLAN: b.VLAN, MAC: b.MAC}
	oldKey := fib.Key(old.ISP, old.IP)
	gone := false // the old entry is out of both tables
	dropOld := func() {
		if off != nil {
			off.DelDest(oldKey) // the mirror first: it never says more than the engine
		}
		c.s.FIB.Delete(old.ISP, old.IP)
		gone = true
	}
	err := c.s.FIB.Set(b.ISP, ip, dest)
	if err != nil && moved && errors.Is(err, lfmap.ErrFull) {
		// A full FIB: a move does not add an entry, the old one makes
		// room (its replies are lost for the instant of the move).
		dropOld()
		err = c.s.FIB.Set(b.ISP, ip, dest)
	}
	restore := func() {
		if gone { // the room it left is still there
			if c.s.FIB.Set(old.ISP, old.IP, dest) == nil && off != nil {
				off.SetDest(oldKey, dest.Pack())
			}
		}
	}
	if err != nil {
		restore()
		return fmt.Errorf("bind %012x: fib: %w", b.MAC, err)
	}
	sub := classifier.Sub{IP: ip, ISP: b.ISP, Flags: flags}
	if err := c.s.MAC.Set(b.Port, b.VLAN, b.MAC, sub); err != nil {
		if !had { // the subscriber's own entry, when it had one, stays
			c.s.FIB.Delete(b.ISP, ip) // not mirrored yet
		}
		restore()
		return fmt.Errorf("bind %012x: mac table: %w", b.MAC, err)
	}
	if off != nil {
		off.SetDest(fib.Key(b.ISP, ip), dest.Pack())
		off.SetSub(classifier.Key(b.Port, b.VLAN, b.MAC), sub.Pack())
	}
	if moved && !gone {
		dropOld()
	}
	if hadOld {
		c.perISP[old.ISP][kindOf(old.Flags)]--
	}
	c.perISP[b.ISP][kindOf(flags)]++
	return nil
}

// Reserve grows the MAC table and the FIB at once to hold n bindings more
// than they hold (at most their capacity), for a bulk install of known size
// (the bindings restored at a start): one rebuild each, where Bind one at a
// time grows them in steps (lfmap), each step a new slot array to make and
// fill: for a million bindings about 0.1 s more per table on the lab VM.
func (c *Control) Reserve(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.s.MAC.Reserve(c.s.MAC.Len() + n)
	c.s.FIB.Reserve(c.s.FIB.Len() + n)
}

// kindOf indexes perISP by a MAC table entry's flags: 0 DHCP, 1 static.
func kindOf(flags uint8) int {
	if flags&classifier.FlagStatic != 0 {
		return 1
	}
	return 0
}

// SetAdmitted makes the registered MACs exactly macs (see State.Admitted)
// and turns admission filtering on. Call it with the whole registry at
// start and after every change.
func (c *Control) SetAdmitted(macs []uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.s.Admitted.Len() == 0 {
		// The start-up load: nothing to remove, no set of a million
		// MACs to build to find out, and the count known (Reserve).
		c.s.Admitted.Reserve(len(macs))
		for _, m := range macs {
			if err := c.s.Admitted.Store(m, 1); err != nil {
				return fmt.Errorf("admitted MACs: %w", err)
			}
		}
		c.s.admitOn.Store(true)
		return nil
	}
	want := make(map[uint64]bool, len(macs))
	for _, m := range macs {
		want[m] = true
	}
	var gone []uint64
	c.s.Admitted.Range(func(k, _ uint64) bool {
		if !want[k] {
			gone = append(gone, k)
		}
		return true
	})
	for _, k := range gone {
		c.s.Admitted.Delete(k)
	}
	for m := range want {
		if err := c.s.Admitted.Store(m, 1); err != nil {
			return fmt.Errorf("admitted MACs: %w", err)
		}
	}
	c.s.admitOn.Store(true)
	return nil
}

// Admit adds one registered MAC to the admitted set (a tenant change),
// turning admission filtering on.
func (c *Control) Admit(mac uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.s.Admitted.Store(mac, 1); err != nil {
		return fmt.Errorf("admitted MACs: %w", err)
	}
	c.s.admitOn.Store(true)
	return nil
}

// Unadmit removes one MAC from the admitted set.
func (c *Control) Unadmit(mac uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.s.Admitted.Delete(mac)
}

// SetDHCPBudget sets each subscriber's budget of DHCP frames the workers
// pass to the control plane (per worker, per second and burst; past it,
// dhcp_flood): at least dhcpPuntRate and dhcpPuntBurst, whatever is
// asked. The appliance keeps it above the proxy's own per-MAC limit
// ([dhcp] mac_rate and mac_burst), so the proxy, not the datapath, is
// what a subscriber within reason meets.
//
// An unregistered MAC's message costs at least a quarter of the rate and
// an eighth of the burst (so at most about 4 a second and a burst of 8, as
// at the defaults, whatever they are set to), at least unregCost: with
// [dhcp] mac_rate raised, a fixed cost would let one unregistered device
// spend its port's whole sample of unregistered MACs' DHCP again. A cost
// above a bucket (the rate raised past four times the burst) needs a full
// bucket and leaves it in debt (dhcpBudget).
func (c *Control) SetDHCPBudget(rate, burst float64) {
	rate, burst = max(rate, dhcpPuntRate), max(burst, dhcpPuntBurst)
	c.s.dhcpRate.Store(&puntBudget{rate: rate, burst: burst, unregCost: max(unregCost, rate/4, burst/8)})
}

// DHCPBudget is the budget SetDHCPBudget set (0, 0: none yet).
func (c *Control) DHCPBudget() (rate, burst float64) {
	if b := c.s.dhcpRate.Load(); b != nil {
		return b.rate, b.burst
	}
	return 0, 0
}

// SetMTU sets the largest IPv4 packet port sends (the interface's MTU
// changed); 0 removes the limit. It takes the control plane's lock, as
// SetPortDevice and SetOffload (which copy the MTU into the fast path) do:
// unserialised, one of them could write the MTU it read before this
// change after this change was mirrored.
func (c *Control) SetMTU(port uint8, mtu int) {
	if int(port) >= datapath.MaxPorts {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.s.mtu[port].Store(int32(mtu))
	if off := c.s.offload(); off != nil {
		off.SetMTU(port, mtu)
	}
}

// CheckBind reports whether Bind(b) would conflict with another
// subscriber's binding (ErrConflict), without changing anything.
func (c *Control) CheckBind(b Binding) error {
	if !b.IP.Is4() {
		return fmt.Errorf("bind %012x: address %v is not IPv4", b.MAC, b.IP)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.uplinkAddr(b); err != nil {
		return err
	}
	if d, ok := c.s.FIB.Lookup(b.ISP, ip4(b.IP)); ok && (d.MAC != b.MAC || d.Port != b.Port || d.VLAN != b.VLAN) {
		return fmt.Errorf("%v at ISP %d: %w (by %s)", b.IP, b.ISP, ErrConflict, MACString(d.MAC))
	}
	return nil
}

// uplinkAddr refuses b's address when it is ours or the router's on its
// ISP's uplink: bound, it would be proxy-ARPed on that uplink. c.mu held.
func (c *Control) uplinkAddr(b Binding) error {
	u := c.s.Up.Load().Get(b.ISP)
	if u == nil || !u.Configured {
		return nil
	}
	if ip := ip4(b.IP); ip != 0 && (ip == u.Gateway || ip == u.Addr) {
		return fmt.Errorf("%v at ISP %d: %w (the ISP uplink's own or its router's address)", b.IP, b.ISP, ErrConflict)
	}
	return nil
}

// Unbind removes the subscriber's binding. It reports whether there was one.
func (c *Control) Unbind(port uint8, vlan uint16, mac uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	sub, ok := c.s.MAC.Lookup(port, vlan, mac)
	if !ok {
		return false
	}
	// Upstream first: stop accepting the subscriber's frames, then stop
	// delivering to it.
	// The fast path's copy first: it never forwards what the engine no
	// longer would.
	if off := c.s.offload(); off != nil {
		off.DelSub(classifier.Key(port, vlan, mac))
		off.DelDest(fib.Key(sub.ISP, sub.IP))
	}
	c.s.MAC.Delete(port, vlan, mac)
	c.s.FIB.Delete(sub.ISP, sub.IP)
	c.perISP[sub.ISP][kindOf(sub.Flags)]--
	return true
}

// Holder returns the binding that holds address a in VRF vrf (the portal
// asks who a bound subscriber is). Lock-free: the tables' own lookups.
func (c *Control) Holder(vrf uint8, a netip.Addr) (Binding, bool) {
	if !a.Is4() {
		return Binding{}, false
	}
	d, ok := c.s.FIB.Lookup(vrf, ip4(a))
	if !ok {
		return Binding{}, false
	}
	sub, ok := c.s.MAC.Lookup(d.Port, d.VLAN, d.MAC)
	if !ok || sub.ISP != vrf || sub.IP != ip4(a) {
		return Binding{}, false
	}
	return Binding{Port: d.Port, VLAN: d.VLAN, MAC: d.MAC, ISP: vrf, IP: a, Static: sub.Flags&classifier.FlagStatic != 0}, true
}

// Bindings returns a copy of every binding (a walk of the MAC table).
func (c *Control) Bindings() []Binding {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Binding, 0, c.s.MAC.Len())
	c.s.MAC.Range(func(port uint8, vlan uint16, mac uint64, s classifier.Sub) bool {
		out = append(out, bindingOf(port, vlan, mac, s))
		return true
	})
	return out
}

// Binding returns the subscriber's binding, if it has one.
func (c *Control) Binding(port uint8, vlan uint16, mac uint64) (Binding, bool) {
	s, ok := c.s.MAC.Lookup(port, vlan, mac)
	if !ok {
		return Binding{}, false
	}
	return bindingOf(port, vlan, mac, s), true
}

// bindingOf is the binding a MAC table entry stands for.
func bindingOf(port uint8, vlan uint16, mac uint64, s classifier.Sub) Binding {
	return Binding{Port: port, VLAN: vlan, MAC: mac, ISP: s.ISP, IP: addr4(s.IP), Static: s.Flags&classifier.FlagStatic != 0}
}

// LinkDown withdraws the next hop of every ISP whose uplink is on port (the
// interface lost carrier or went away) and returns those ISPs. Resolution
// resumes by itself: an unresolved next hop is asked every second.
func (c *Control) LinkDown(port uint8) []uint8 {
	c.mu.Lock()
	defer c.mu.Unlock()
	set := c.s.Up.Load()
	var out []uint8
	for i := range set.ISP {
		u := &set.ISP[i]
		if u.Configured && u.Port == port && c.resolver.Withdraw(uint8(i)) {
			out = append(out, uint8(i))
		}
	}
	return out
}

// NextHopMAC returns the resolved MAC of ISP isp's next hop, for frames the
// control plane sends to the ISP.
func (c *Control) NextHopMAC(isp uint8) (uint64, bool) {
	up := c.s.Up.Load().Get(isp)
	if up == nil || !up.Configured || !up.Resolved {
		return 0, false
	}
	return up.GatewayMAC, true
}

// NextHop reports ISP isp's next-hop resolution.
type NextHop struct {
	State string
	MAC   uint64
}

// NextHops returns the next-hop state of the given ISPs.
func (c *Control) NextHops(isps []uint8) []NextHop {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]NextHop, len(isps))
	for i, isp := range isps {
		st, mac, _ := c.resolver.State(isp)
		out[i] = NextHop{State: st.String(), MAC: mac}
	}
	return out
}

// puntRound is how many punted frames Run handles before it looks at its
// timers again.
const puntRound = 256

// Run consumes punted frames and drives next-hop resolution until ctx ends.
func (c *Control) Run(ctx context.Context) {
	tick := time.NewTicker(fib.ProbeInterval / 4)
	defer tick.Stop()
	c.resolve(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.s.Punts.Ready:
			// A bounded round, then back to the select so the
			// resolver's ticks are never starved by a flood.
			n := 0
			for ; n < puntRound; n++ {
				p := c.s.Punts.Next()
				if p == nil {
					break
				}
				c.handlePunt(p)
				c.s.Punts.Release(p)
			}
			if n == puntRound {
				select {
				case c.s.Punts.Ready <- struct{}{}: // more may be waiting
				default:
				}
			}
		case now := <-tick.C:
			c.resolve(now)
			c.ticks.Add(1)
		}
	}
}

// Ticks is how many times Run has driven the next-hop resolution: the
// service watchdog's sign that the control plane's loop turns, punted
// frames and all (appliance/watchdog.go).
func (c *Control) Ticks() uint64 { return c.ticks.Load() }

func (c *Control) resolve(now time.Time) {
	var due [fib.MaxISPs]uint8
	var frame [64]byte
	c.mu.Lock()
	before := c.s.Up.Load()
	isps := c.resolver.Due(now, due[:0])
	set := c.s.Up.Load()
	var names [256]string
	for _, isp := range isps {
		names[isp] = c.ispName(isp)
	}
	c.mu.Unlock()
	for _, isp := range isps {
		up := set.Get(isp)
		if was := before.Get(isp); was.Resolved && !up.Resolved && was.Gateway == up.Gateway {
			// The gateway stayed silent through every refresh probe.
			c.log.Warn("next hop withdrawn: gateway does not answer ARP", "isp", names[isp],
				"ip", netip.AddrFrom4(be4(up.Gateway)), "mac", macString(was.GatewayMAC))
		}
		n := fib.ARPRequest(frame[:], up.MAC, up.Addr, up.Gateway, up.VLAN, up.VLAN != 0)
		if c.inj.Inject(up.Port, frame[:n]) {
			c.arpSent.Add(1)
		}
	}
}

func (c *Control) handlePunt(p *Punted) {
	var pkt classifier.Packet
	f := p.Frame()
	if pkt.Decode(f) != classifier.ReasonNone {
		return
	}
	if pkt.Kind == classifier.KindARP {
		pt := &c.s.ports[p.Port]
		vlan := pkt.VLAN & 0xfff
		if pt.role[vlan] != roleUplink {
			// A subscriber's answer to the DHCP proxy's probe
			// (probeReply): the proxy's.
			if pt.role[vlan] == roleAccess && c.OnPunt != nil {
				c.OnPunt(p)
			}
			return
		}
		isp := pt.isp[vlan]
		src := fib.FromReply
		switch {
		case pkt.SPA == pkt.TPA:
			src = fib.FromGARP // RFC 5227 §2.4, either form
		case pkt.ARPOp == arpRequest:
			src = fib.FromRequestOther
			if up := c.s.Up.Load().Get(isp); up != nil && pkt.TPA == up.Addr {
				src = fib.FromRequestToUs
			} else if _, ok := c.s.FIB.Lookup(isp, pkt.TPA); ok {
				src = fib.FromRequestToUs
			}
		}
		c.mu.Lock()
		var was bool
		var oldMAC uint64
		if old := c.s.Up.Load().Get(isp); old != nil {
			was, oldMAC = old.Resolved, old.GatewayMAC
		}
		changed := c.resolver.LearnFrom(isp, pkt.SPA, pkt.SHA, src, time.Now())
		name := c.ispName(isp)
		c.mu.Unlock()
		c.arpLearned.Add(1)
		switch {
		case changed && was:
			c.log.Warn("next hop moved to another MAC", "port", pt.name, "isp", name,
				"ip", netip.AddrFrom4(be4(pkt.SPA)), "mac", macString(pkt.SHA), "was", macString(oldMAC))
		case changed:
			c.log.Info("next hop resolved", "port", pt.name, "isp", name,
				"ip", netip.AddrFrom4(be4(pkt.SPA)), "mac", macString(pkt.SHA))
		}
		return
	}
	if c.OnPunt != nil {
		c.OnPunt(p)
		return
	}
	c.puntOther.Add(1)
}

// ControlCounters are the control plane's counters.
type ControlCounters struct {
	ARPSent, ARPLearned, PuntUnhandled uint64
}

// Counters returns the control plane's counters.
func (c *Control) Counters() ControlCounters {
	return ControlCounters{c.arpSent.Load(), c.arpLearned.Load(), c.puntOther.Load()}
}

func ip4(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func be4(v uint32) [4]byte { return [4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} }

// IP4 converts an IPv4 address to the uint32 the tables use.
func IP4(a netip.Addr) uint32 { return ip4(a) }

// MAC48 converts a 6-byte MAC to the uint64 the tables use.
func MAC48(b [6]byte) uint64 { return binding.MAC48(b) }

func macString(m uint64) string { return binding.MACString(m) }

// MACString formats a 48-bit MAC.
func MACString(m uint64) string { return binding.MACString(m) }

// addr4 converts the tables' uint32 back to an address.
func addr4(v uint32) netip.Addr { return netip.AddrFrom4(be4(v)) }
