package fib

import (
	"fmt"
	"time"
)

// Neighbour timing. A gateway that has answered is used for ReachableTime;
// then it is re-probed every ProbeInterval while traffic keeps using the
// known MAC, and withdrawn if MaxProbes probes go unanswered. An unresolved
// gateway is asked every ProbeInterval, indefinitely.
const (
	ProbeInterval = time.Second
	ReachableTime = 30 * time.Second
	MaxProbes     = 3
	// LockTime is how long a learnt MAC cannot be replaced by another
	// one from an ARP reply (as Linux's arp locktime): of two answers to
	// one broadcast request the first wins, and a host on the ISP's
	// segment answering for the gateway's address right after it does
	// not take its traffic.
	LockTime = time.Second
)

// ARPSource says what kind of ARP packet a Learn comes from; it decides
// whether the packet may move the gateway to another MAC.
type ARPSource uint8

const (
	// FromReply: an ARP reply (ours to a request of ours, or unsolicited).
	// A new MAC is taken unless another was learnt less than LockTime ago.
	FromReply ARPSource = iota
	// FromGARP: a gratuitous ARP, request or reply with sender address ==
	// target address (RFC 5227 §2.4, a VRRP master taking over, RFC 5798
	// §8.1.2): a new MAC is always taken.
	FromGARP
	// FromRequestToUs: an ARP request from the gateway's address for an
	// address of ours (our uplink address, a bound subscriber's): the
	// router talking to us, from a new MAC after a silent failover or a
	// replacement; a new MAC is taken at once (it is no answer racing
	// another, which LockTime is about).
	FromRequestToUs
	// FromRequestOther: an ARP request from the gateway's address for
	// anyone else: it confirms the MAC already known, never replaces it
	// (a host misconfigured with the gateway's address asks for others
	// too).
	FromRequestOther
)

// NeighState is the resolution state of one ISP gateway.
type NeighState uint8

const (
	// Incomplete: no usable MAC; an ARP request goes out every ProbeInterval.
	Incomplete NeighState = iota
	// Reachable: the gateway answered less than ReachableTime ago.
	Reachable
	// Stale: ReachableTime passed without a reply; the MAC is still used
	// while up to MaxProbes requests ask for confirmation.
	Stale
)

func (s NeighState) String() string {
	switch s {
	case Incomplete:
		return "incomplete"
	case Reachable:
		return "reachable"
	case Stale:
		return "stale"
	}
	return fmt.Sprintf("NeighState(%d)", uint8(s))
}

// neigh is the Resolver's record of one ISP gateway.
type neigh struct {
	gw        uint32 // gateway this record is about; reset when config changes it
	tracked   bool   // record belongs to a configured uplink
	state     NeighState
	mac       uint64
	lastReply time.Time // last accepted Learn
	lastSent  time.Time // last request handed out by Due; zero = none yet
	probes    int       // requests sent in the current Stale episode
}

// Resolver resolves each configured ISP's gateway by ARP and publishes the
// result through Uplinks (SetGatewayMAC). It sends nothing itself: Due
// says which ISPs need a request now, the caller sends them (ARPRequest
// from the uplink's MAC and Addr to its Gateway), and ARP replies heard on
// an uplink are fed to Learn.
//
// The gateway addresses come from the Uplinks snapshot, so reconfiguring an
// ISP's gateway restarts its resolution. Time is passed in (now) so tests
// can drive it. A Resolver is owned by one goroutine: it is not safe for
// concurrent use.
type Resolver struct {
	up *Uplinks
	n  [MaxISPs]neigh
}

// NewResolver returns a Resolver that publishes into up.
func NewResolver(up *Uplinks) *Resolver {
	return &Resolver{up: up}
}

// sync makes r.n[isp] describe the currently configured gateway of isp,
// resetting it if the uplink was removed or its gateway changed.
func (r *Resolver) sync(isp uint8, u *Uplink) *neigh {
	n := &r.n[isp]
	if !u.Configured || u.Gateway == 0 {
		*n = neigh{}
		return n
	}
	// Reset when the gateway changed, or when the published MAC is not the
	// one recorded here (Configure moved the uplink to another port or
	// VLAN, or someone else called SetGatewayMAC).
	if !n.tracked || n.gw != u.Gateway || (n.state != Incomplete) != u.Resolved ||
		(u.Resolved && n.mac != u.GatewayMAC) {
		*n = neigh{gw: u.Gateway, tracked: true}
		if u.Resolved {
			// Adopt a MAC we did not learn as stale: confirm it now
			// rather than trust it for ReachableTime.
			n.state, n.mac = Stale, u.GatewayMAC
		}
	}
	return n
}

// Learn records that ip is at mac on ISP isp's uplink, as told by an ARP
// reply or request heard there. It is accepted only when ip is that ISP's
// configured gateway and mac is a unicast address; the gateway becomes
// Reachable. changed reports whether the published GatewayMAC changed
// (newly resolved, or the gateway moved to another MAC).
func (r *Resolver) Learn(isp uint8, ip uint32, mac uint64, now time.Time) (changed bool) {
	return r.LearnFrom(isp, ip, mac, FromReply, now)
}

// LearnFrom is Learn for an ARP packet of kind src: a request for someone
// else only confirms the known MAC, and a reply does not replace a MAC
// learnt less than LockTime ago.
func (r *Resolver) LearnFrom(isp uint8, ip uint32, mac uint64, src ARPSource, now time.Time) (changed bool) {
	if isp >= MaxISPs {
		return false
	}
	mac &= macMask
	u := r.up.Load().Get(isp)
	n := r.sync(isp, u)
	if !n.tracked || ip != n.gw || mac == 0 || mac&groupBit != 0 {
		return false // not our gateway, or a zero, broadcast or multicast MAC
	}
	if n.state != Incomplete && n.mac != mac {
		switch {
		case src == FromGARP, src == FromRequestToUs:
		case src == FromRequestOther:
			return false
		case !n.lastReply.IsZero() && now.Sub(n.lastReply) < LockTime:
			return false
		}
	} else if n.state == Incomplete && src == FromRequestOther {
		// Nothing known to confirm; a request for someone else names
		// no MAC we asked for (the resolver's own request is answered).
		return false
	}
	changed = !u.Resolved || u.GatewayMAC != mac
	n.state, n.mac, n.lastReply, n.probes = Reachable, mac, now, 0
	if changed {
		r.up.SetGatewayMAC(isp, mac)
	}
	return changed
}

// Due appends to out the ISPs whose gateway needs an ARP request now, and
// returns the extended slice. Each returned ISP is recorded as having been
// sent one request at now, so the caller must send exactly one per entry.
// Due also withdraws the MAC (Resolved=false through Uplinks) of a gateway
// that stayed silent through MaxProbes refresh probes; such an ISP is
// returned too, as it is now unresolved and asked every ProbeInterval.
//
// Call it about every ProbeInterval/4 or more often; it does not allocate
// when out has room for MaxISPs entries.
func (r *Resolver) Due(now time.Time, out []uint8) []uint8 {
	set := r.up.Load()
	for i := range set.ISP {
		isp := uint8(i)
		n := r.sync(isp, &set.ISP[i])
		if !n.tracked {
			continue
		}
		if n.state == Reachable && now.Sub(n.lastReply) >= ReachableTime {
			n.state, n.probes, n.lastSent = Stale, 0, time.Time{}
		}
		if !n.lastSent.IsZero() && now.Sub(n.lastSent) < ProbeInterval {
			continue
		}
		switch n.state {
		case Reachable:
			continue
		case Stale:
			if n.probes >= MaxProbes {
				// The last probe has had ProbeInterval to be answered.
				n.state, n.mac, n.probes = Incomplete, 0, 0
				r.up.SetGatewayMAC(isp, 0)
			} else {
				n.probes++
			}
		}
		n.lastSent = now
		out = append(out, isp)
	}
	return out
}

// Withdraw forgets ISP isp's gateway MAC at once (its uplink lost carrier
// or went away): traffic to the ISP stops being sent to a MAC that cannot
// be reached, and resolution starts over (a request every ProbeInterval).
// It reports whether a MAC was withdrawn.
func (r *Resolver) Withdraw(isp uint8) bool {
	if isp >= MaxISPs {
		return false
	}
	u := r.up.Load().Get(isp)
	n := r.sync(isp, u)
	if !n.tracked || n.state == Incomplete {
		return false
	}
	n.state, n.mac, n.probes, n.lastSent = Incomplete, 0, 0, time.Time{}
	r.up.SetGatewayMAC(isp, 0)
	return true
}

// State returns the resolution state of ISP isp's gateway, its MAC (0 when
// Incomplete) and when it last answered, for status pages and tests.
func (r *Resolver) State(isp uint8) (state NeighState, mac uint64, lastReply time.Time) {
	if isp >= MaxISPs {
		return Incomplete, 0, time.Time{}
	}
	n := r.sync(isp, r.up.Load().Get(isp))
	return n.state, n.mac, n.lastReply
}
