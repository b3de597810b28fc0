package dhcpproxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
)

// Onboarding: on a circuit with an onboarding pool, ispmux is the DHCP
// server of the MACs without a device record. They get a short lease from
// the pool, bound in the walled garden's VRF (binding.GardenVRF), whose
// router and DNS are the captive portal's; there the device chooses an ISP
// (a claim), gets a device record, and turns to its ISP:
//
//   - DISCOVER: the MAC's lease address, or its outstanding offer (held
//     onboardingOfferTTL, in RAM only), or the next free address (next-fit).
//     Caps (the circuit's MaxLeases, Config.MaxOnboarding over all
//     circuits, and with several onboarding circuits each one's share of
//     it, oneShare) count leases and offers. Full: no answer, a
//     refusal event.
//   - REQUEST for the MAC's offer or lease: committed (the lease and its
//     onboarded event, one fsynced transaction; a renewal writes no
//     event) → installed in the garden VRF → ACK. Any other address: NAK
//     (ispmux is the only server an unknown device has). A SELECTING
//     REQUEST naming another server forgets the offer, silently.
//   - RELEASE, DECLINE (the address quarantined one lease time), expiry:
//     the lease and its onboarding-ended event removed in one transaction,
//     then unbound. A RELEASE or DECLINE naming another server (option
//     54) is ignored, counted (RFC 2131 §4.3.3, §4.3.4).
//   - Handover: the lease is not ended when the MAC gets a device record
//     (the portal's answer travels over the garden). A registered MAC's
//     REQUEST naming an address of any onboarding pool is NAKed by ispmux
//     (its server-id), never relayed, and its onboarding lease on that
//     circuit ended: a stateless rule, so it holds across restarts. Its
//     DISCOVER (or a REQUEST for another address) ends the onboarding lease
//     on that circuit and is relayed as usual. The handover holds the MAC
//     on the lease's circuit one lease time (RAM), and one more from each
//     DISCOVER or REQUEST of its DORA with its ISP there (the ISP may be
//     silent a while). A handover the ISP refuses or leaves unanswered
//     sends the device back to the garden, and is tried again about once
//     a lease time (onboarding_fallback.go).
//   - Another circuit: a MAC's lease, its handover's hold, is only its
//     circuit's to end. A DISCOVER (or a registered MAC's DISCOVER or
//     REQUEST) on another circuit is refused while the lease is live or
//     the hold lasts (onboarding_moved_refused, a rejected event): it may
//     be a device forging the MAC; the device on the lease's circuit
//     renews before the lease ends. Once the lease ran out unrenewed, the
//     other circuit's DISCOVER ends it (moved) and is served: a device
//     really moved waits one lease time at most. A RELEASE or DECLINE from
//     another circuit ends nothing.
//   - Restore: the unexpired leases are bound again, the others ended; every
//     stored lease's address is quarantined one lease time for the other
//     MACs.
//
// The MACs' messages are limited by one token bucket per circuit
// (onboardingRate), separate from the registered subscribers' budget. No
// ISP ever sees an onboarding lease: its events have no ISP, it is not a
// binding and not in the per-ISP statistics.

// Onboarding is a circuit's onboarding pool: MACs with no device record
// get a lease from ispmux itself.
type Onboarding struct {
	// Pool is e.g. 100.64.0.0/22; its first address (network+1) is the
	// router (the portal's side), reserved; network and broadcast unused.
	Pool netip.Prefix
	// LeaseTime is the lease (0: 20 s; configs fills it). T1 is half of
	// it (clients that honour it renew early), T2 seven eighths.
	LeaseTime time.Duration
	// MaxLeases caps the leases and outstanding offers on this circuit
	// (0: the pool's size).
	MaxLeases int
	// DNS is the portal's address (option 6).
	DNS netip.Addr
	// CaptiveURI is sent as RFC 8910 option 114, e.g.
	// https://portal.example.net/api/captive ("" : not sent).
	CaptiveURI string
}

// optCaptivePortal is RFC 8910's Captive-Portal option (the library still
// calls code 114 by its old RFC 3679 name, URL).
const optCaptivePortal = dhcpv4.OptionURL

// OnboardingLease is an onboarding lease ispmux holds.
type OnboardingLease struct {
	MAC              uint64
	Access           string
	Port             uint8
	VLAN             uint16
	IP               netip.Addr
	Granted, Expires time.Time
	// HandoverFailed says why the MAC, registered, is back in the
	// garden: its handover to HandoverISP failed (HandoverRefused,
	// HandoverUnanswered; onboarding_fallback.go), and is tried again
	// from HandoverRetry on. "": it is not; with HandoverISP set, a
	// retry asked for (RetryHandover) is due at HandoverRetry, its
	// outcome not known yet.
	HandoverFailed string
	HandoverISP    string
	HandoverRetry  time.Time
}

func (l obLease) public() OnboardingLease {
	return OnboardingLease{MAC: l.mac, Access: l.pool.c.Name, Port: l.pool.c.Port, VLAN: l.pool.c.VLAN, IP: l.ip,
		Granted: l.granted, Expires: l.expires}
}

func (l obLease) stored() subscribers.OnboardingLease {
	return subscribers.OnboardingLease{MAC: binding.MACBytes(l.mac), Access: l.pool.c.Name, VLAN: l.pool.c.VLAN, IP: l.ip,
		Granted: l.granted, Expires: l.expires}
}

// OnboardingByAddr returns the onboarding lease of address a (the portal
// asks who a request comes from). O(1).
func (p *Proxy) OnboardingByAddr(a netip.Addr) (OnboardingLease, bool) {
	l, ok := p.ob.lookup(a)
	if !ok {
		return OnboardingLease{}, false
	}
	return p.withFailure(l, p.now()), true
}

// OnboardingLeases returns every onboarding lease, sorted by address.
func (p *Proxy) OnboardingLeases() []OnboardingLease {
	all, now := p.ob.all(), p.now()
	out := make([]OnboardingLease, len(all))
	for i, l := range all {
		out[i] = p.withFailure(l, now)
	}
	slices.SortFunc(out, func(a, b OnboardingLease) int { return a.IP.Compare(b.IP) })
	return out
}

// OnboardingStats are the onboarding figures (also in Counters, under the
// names given).
type OnboardingStats struct {
	Leases int // held now
	Offers int // outstanding now
	// Grants (onboarding_grant) and Renewals (onboarding_renewal) are
	// ACKs sent.
	Grants, Renewals uint64
	// Ends counts the leases ended, by reason
	// (subscribers.OnboardingEnd*; onboarding_end_REASON).
	Ends map[string]uint64
	// RefusedFull (onboarding_full): no address (a cap or the pool);
	// RefusedRate (onboarding_rate_limited): over the circuit's budget.
	RefusedFull, RefusedRate uint64
	// NAKs (onboarding_nak): requests for an address not the MAC's;
	// HandoverNAKs (onboarding_handover_nak, also in handover_nak):
	// registered MACs' requests for an onboarding address.
	NAKs, HandoverNAKs uint64
}

var onboardingEndReasons = []string{
	subscribers.OnboardingEndReleased, subscribers.OnboardingEndDeclined, subscribers.OnboardingEndExpired,
	subscribers.OnboardingEndHandover, subscribers.OnboardingEndRemoved, subscribers.OnboardingEndMoved,
	subscribers.OnboardingEndConflict, subscribers.OnboardingEndNoRoom, subscribers.OnboardingEndBlocked,
}

// OnboardingStats returns the onboarding figures.
func (p *Proxy) OnboardingStats() OnboardingStats {
	s := OnboardingStats{Ends: map[string]uint64{}}
	s.Leases, s.Offers = p.ob.counts()
	s.Grants, s.Renewals = p.counter("onboarding_grant"), p.counter("onboarding_renewal")
	for _, r := range onboardingEndReasons {
		if n := p.counter("onboarding_end_" + r); n > 0 {
			s.Ends[r] = n
		}
	}
	s.RefusedFull, s.RefusedRate = p.counter("onboarding_full"), p.counter("onboarding_rate_limited")
	s.NAKs, s.HandoverNAKs = p.counter("onboarding_nak"), p.counter("onboarding_handover_nak")
	return s
}

// counter returns one counter's value.
func (p *Proxy) counter(name string) uint64 {
	if v, ok := p.counters.Load(name); ok {
		return v.(*atomic.Uint64).Load()
	}
	return 0
}

// onboard serves the message m of mac, which has no device record, on c
// (whose pool is pl).
func (p *Proxy) onboard(c *Circuit, pl *obPool, m *dhcpv4.DHCPv4, mac uint64, now time.Time) {
	if !p.ob.allow(pl, now) {
		p.count("onboarding_rate_limited")
		p.refuse(subscribers.EventRateLimited, subject{mac: mac, access: c.Name}, netip.Addr{},
			fmt.Sprintf("access %s's onboarding rate limit (%d/s, burst %d, all MACs without a device record) exceeded", c.Name, onboardingRate, onboardingBurst))
		return
	}
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		p.onboardDiscover(c, pl, m, mac, now)
	case dhcpv4.MessageTypeRequest:
		p.onboardRequest(c, pl, m, mac)
	case dhcpv4.MessageTypeRelease:
		if !p.forOtherServer(c, m) {
			p.onboardEndByClient(pl, mac, addrOf(m.ClientIPAddr), false, now)
		}
	case dhcpv4.MessageTypeDecline:
		if !p.forOtherServer(c, m) {
			p.onboardEndByClient(pl, mac, addrOf(m.RequestedIPAddress()), true, now)
		}
	case dhcpv4.MessageTypeInform:
		ci := addrOf(m.ClientIPAddr)
		if !pl.prefix.Contains(ci) {
			p.count("onboarding_ignored")
			return
		}
		p.onboardInform(c, pl, m)
	default:
		p.count("onboarding_ignored")
	}
}

// onboardInform answers the INFORM m from an address of pl on c as the
// garden's server: its ACK (onboardReply), without a lease.
func (p *Proxy) onboardInform(c *Circuit, pl *obPool, m *dhcpv4.DHCPv4) {
	if r := p.onboardReply(c, pl, m, dhcpv4.MessageTypeAck, netip.Addr{}); r != nil {
		p.deliver(c, r, r.ToBytes())
		p.count("onboarding_inform")
	}
}

// onboardDiscover answers a DISCOVER with an OFFER (see offer), unless
// the MAC is held on another circuit (takeOnboarding).
func (p *Proxy) onboardDiscover(c *Circuit, pl *obPool, m *dhcpv4.DHCPv4, mac uint64, now time.Time) {
	if !p.takeOnboarding(c, subject{mac: mac, access: c.Name}, now) {
		return
	}
	ip, ok := p.ob.offer(pl, mac, now, p.cfg.MaxOnboarding)
	if !ok {
		p.count("onboarding_full")
		p.refuse(subscribers.EventRejected, subject{mac: mac, access: c.Name}, netip.Addr{},
			"onboarding pool of access "+c.Name+" full (or its cap, or its share of max_onboarding, reached): no address offered")
		return
	}
	if r := p.onboardReply(c, pl, m, dhcpv4.MessageTypeOffer, ip); r != nil {
		p.deliver(c, r, r.ToBytes())
		p.count("onboarding_offer")
	}
}

// onboardRequest commits the MAC's offer or lease, or NAKs.
func (p *Proxy) onboardRequest(c *Circuit, pl *obPool, m *dhcpv4.DHCPv4, mac uint64) {
	asked := addrOf(m.RequestedIPAddress())
	if sid := addrOf(m.ServerIdentifier()); sid.IsValid() {
		// SELECTING: the client chose a server; not us, if another.
		if sid != c.Addr {
			p.ob.forgetOffer(mac)
			p.count("onboarding_other_server")
			return
		}
	} else if !asked.IsValid() || asked.IsUnspecified() {
		// RENEWING, REBINDING: the address is ciaddr.
		asked = addrOf(m.ClientIPAddr)
	}
	if !asked.IsValid() || !p.ob.mine(mac, pl, asked) {
		// Another pool's, another MAC's, an expired one, or one from an
		// ISP the device had before: ispmux is the only server of a
		// device without a record, so it says no, and the client
		// starts over (DISCOVER: an onboarding lease).
		p.count("onboarding_nak")
		p.nak(c, m, "not your address: start over")
		return
	}
	p.committing.Add(1)
	go func() {
		defer p.committing.Done()
		p.onboardCommit(c, pl, m, mac, asked)
	}()
}

// onboardCommit grants or renews mac's lease of ip: durable (with its
// event), installed in the garden VRF, then ACKed. Under mac's stripe, so
// its end cannot interleave.
func (p *Proxy) onboardCommit(c *Circuit, pl *obPool, m *dhcpv4.DHCPv4, mac uint64, ip netip.Addr) {
	defer p.lockSub(mac).Unlock()
	renewal, granted, ok := p.ob.pin(mac, pl, ip)
	if !ok {
		// Its offer ran out or it released meanwhile: no answer, the
		// client retries.
		p.count("onboarding_commit_lost")
		return
	}
	now := p.now() // the clock the messages are handled by (heldOn)
	if !renewal {
		granted = now
	}
	l := subscribers.OnboardingLease{MAC: binding.MACBytes(mac), Access: c.Name, VLAN: c.VLAN, IP: ip, Granted: granted, Expires: now.Add(pl.leaseTime)}
	var ev subscribers.Event
	if !renewal {
		ev = subject{mac: mac, access: c.Name}.event(subscribers.EventOnboarded, ip, "onboarding lease "+pl.leaseTime.String()+p.fallbackNote(mac, pl, now))
		ev.LeaseEnd = l.Expires
	}
	e, err := p.store.CommitOnboarding(l, ev)
	if err != nil {
		p.ob.unpin(mac)
		p.storeError("dhcp: onboarding lease not committed; ACK withheld", "mac", binding.MACString(mac), "err", err)
		return
	}
	failpoint.Hit(failpoint.OnboardAfterCommit)
	if err := p.tables.Bind(binding.Binding{Port: c.Port, VLAN: c.VLAN, MAC: mac, ISP: binding.GardenVRF, IP: ip}); err != nil {
		// Another subscriber holds the address in the garden (a static
		// entry, say), or the MAC table is full: the committed lease is
		// ended, no ACK. Only a conflict quarantines the address.
		conflict := errors.Is(err, binding.ErrConflict)
		if conflict {
			p.count("onboarding_bind_conflict")
			p.log.Warn("dhcp: onboarding lease not installable", "mac", binding.MACString(mac), "ip", ip, "err", err)
		} else {
			p.count("onboarding_bind_failed")
			p.log.Error("dhcp: onboarding lease not installable", "mac", binding.MACString(mac), "ip", ip, "err", err)
		}
		p.ob.forgetOffer(mac)
		p.endOnboardingStored(l, notInstalled(err))
		if conflict {
			p.ob.quarantineAddr(ip, now.Add(pl.leaseTime), 0, false)
		}
		return
	}
	p.ob.put(mac, pl, ip, granted, l.Expires)
	if r := p.onboardReply(c, pl, m, dhcpv4.MessageTypeAck, ip); r != nil {
		p.deliver(c, r, r.ToBytes())
	}
	failpoint.Hit(failpoint.OnboardAfterAck)
	if renewal {
		p.count("onboarding_renewal")
		return
	}
	p.count("onboarding_grant")
	p.logEvent(e)
}

// takeOnboarding lets a DISCOVER or REQUEST of s's MAC on c (s: its
// subject there) take the MAC over from its onboarding on another circuit
// (one lease a MAC), and reports whether the message may go on. While the
// MAC is held on another circuit (heldOn: its onboarding lease there is
// live, or its handover there is under way) the message is refused
// (onboarding_moved_refused, a rejected event): c may be a device forging
// the MAC, and the device on the other circuit, still there, renews its
// lease before it ends. A lease there that ran out unrenewed (its expiry
// not yet ticked) is ended (moved) first; false if that end is not
// committed (the client retries). A device really moved is served within
// one onboarding lease time plus its DISCOVER backoff. A handover's hold
// on c is kept one more lease time by each such message on c. A hold on
// another circuit where the MAC is bound now (its ISP took it) refuses
// nothing here: its binding holds the MAC there (endOtherCircuits).
func (p *Proxy) takeOnboarding(c *Circuit, s subject, now time.Time) bool {
	pl, held := p.ob.heldOn(s.mac, now)
	if held && pl.c != c && p.hasLease(subKey{circuitKey{pl.c.Port, pl.c.VLAN}, s.mac}) {
		// Its handover's hold outlives the ISP's ACK there; bound, the
		// MAC is held there by its binding (endOtherCircuits refuses
		// the message, or lets it take the binding over, and says so).
		held = false
	}
	if held && pl.c != c {
		p.count("onboarding_moved_refused")
		p.refuseMisplaced(s,
			"onboarding on access "+pl.c.Name+", where it is in use: not served on "+c.Name+
				" unless its lease there lapses unrenewed")
		return false
	}
	if held {
		// Held on c: its handover's DORA on c goes on (keepHold).
		p.ob.keepHold(s.mac, c, now)
	}
	if l, ok := p.ob.leaseOf(s.mac); !ok || l.pool.c == c {
		return true // the common case, without the stripe
	}
	defer p.lockSub(s.mac).Unlock()
	l, ok := p.ob.leaseOf(s.mac)
	if !ok || l.pool.c == c {
		return true
	}
	if pl, held := p.ob.heldOn(s.mac, now); held && pl.c != c {
		return false // renewed meanwhile
	}
	return p.endOnboardingLocked(l.stored(), subscribers.OnboardingEndMoved)
}

// onboardingHandover applies the onboarding rules to a message of a
// registered MAC before it is relayed, and reports whether it was dealt
// with here (not to be relayed):
//
//   - a REQUEST naming an address inside any onboarding pool (option 50,
//     else ciaddr) is NAKed by ispmux with its own server-id, and the
//     MAC's onboarding lease on c (if any) ended: it has a device record
//     now and must DISCOVER its ISP. Unless the address is its ISP
//     binding's (an ISP pool overlapping an onboarding pool);
//   - a DISCOVER, or a REQUEST for another address, ends its onboarding
//     lease on c (it turns to its ISP) and goes on to serveRequest;
//   - a RELEASE or DECLINE of its onboarding lease's address, on the
//     lease's circuit, ends it, unless it names another server (ignored,
//     forOtherServer).
//
// Every handover end holds the MAC on c a lease time (endHandover). A
// lease on another circuit is never ended here: a DISCOVER or REQUEST
// from c waits for it to lapse (takeOnboarding, from endOtherCircuits), a
// RELEASE or DECLINE names nothing c's (relay: release_not_own_address).
func (p *Proxy) onboardingHandover(c *Circuit, m *dhcpv4.DHCPv4, sk subKey, now time.Time) bool {
	if len(p.ob.prefixes) == 0 {
		return false
	}
	if p.fromGarden(c, m, sk, now) {
		return true // its handover failed: back in the garden
	}
	switch m.MessageType() {
	case dhcpv4.MessageTypeRequest:
		asked := addrOf(m.RequestedIPAddress())
		if !asked.IsValid() || asked.IsUnspecified() {
			asked = addrOf(m.ClientIPAddr)
		}
		if asked.IsValid() && p.ob.inAnyPool(asked) {
			if l, ok := p.leases.get(sk); !ok || l.addr() != asked {
				p.endHandover(c, sk.mac, now)
				p.count("handover_nak")
				p.count("onboarding_handover_nak")
				p.nak(c, m, "onboarding over: start over with your ISP")
				return true
			}
		}
		p.endHandover(c, sk.mac, now)
	case dhcpv4.MessageTypeDiscover:
		p.endHandover(c, sk.mac, now)
	case dhcpv4.MessageTypeInform:
		// From an onboarding address (not its ISP binding's: an ISP
		// pool overlapping an onboarding pool): no ISP sees it. Its
		// own onboarding lease's is answered as the garden's server;
		// any other is nobody's to answer.
		ci := addrOf(m.ClientIPAddr)
		if !ci.IsValid() || !p.ob.inAnyPool(ci) {
			return false
		}
		if l, ok := p.leases.get(sk); ok && l.addr() == ci {
			return false
		}
		if l, ok := p.ob.leaseOf(sk.mac); ok && l.ip == ci && l.pool.c == c {
			p.onboardInform(c, l.pool, m)
			return true
		}
		p.count("onboarding_ignored")
		return true
	case dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
		l, ok := p.ob.leaseOf(sk.mac)
		if !ok {
			return false
		}
		named := addrOf(m.ClientIPAddr)
		if m.MessageType() == dhcpv4.MessageTypeDecline {
			named = addrOf(m.RequestedIPAddress())
		}
		if named != l.ip || l.pool.c != c {
			// Not its onboarding lease, or not on c: the lease's
			// circuit alone ends it.
			return false
		}
		if !p.forOtherServer(c, m) {
			p.onboardEndByClient(l.pool, sk.mac, named, m.MessageType() == dhcpv4.MessageTypeDecline, now)
		}
		return true
	}
	return false
}

// forOtherServer reports whether the RELEASE or DECLINE m names a server
// other than ispmux on c (namesOtherServer), and counts it if so: a
// client's message for another server on its link cannot end an
// onboarding lease.
func (p *Proxy) forOtherServer(c *Circuit, m *dhcpv4.DHCPv4) bool {
	if !namesOtherServer(c, m) {
		return false
	}
	if m.MessageType() == dhcpv4.MessageTypeDecline {
		p.count("onboarding_decline_not_own")
	} else {
		p.count("onboarding_release_not_own")
	}
	return true
}

// namesOtherServer reports whether m names a server other than ispmux on
// c (option 54): a server acts only on a RELEASE or DECLINE naming it (RFC
// 2131 §4.3.3, §4.3.4). One naming no server is taken as ispmux's.
func namesOtherServer(c *Circuit, m *dhcpv4.DHCPv4) bool {
	sid := addrOf(m.ServerIdentifier())
	return sid.IsValid() && sid != c.Addr
}

// onboardReply builds ispmux's answer of type mt to req from pl: OFFER or
// ACK of ip (with the lease times), or the ACK to an INFORM (ip invalid:
// no lease). The server identifier is c's address, the router the pool's
// first address, the DNS the portal.
func (p *Proxy) onboardReply(c *Circuit, pl *obPool, req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, ip netip.Addr) *dhcpv4.DHCPv4 {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(c.Addr.AsSlice()))),
		dhcpv4.WithOption(dhcpv4.OptSubnetMask(pl.mask)),
		dhcpv4.WithOption(dhcpv4.OptRouter(net.IP(pl.router.AsSlice()))),
	}
	if pl.dns.IsValid() {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDNS(net.IP(pl.dns.AsSlice()))))
	}
	if pl.uri != "" {
		mods = append(mods, dhcpv4.WithGeneric(optCaptivePortal, []byte(pl.uri)))
	}
	if ip.IsValid() {
		mods = append(mods,
			dhcpv4.WithYourIP(net.IP(ip.AsSlice())),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(pl.leaseTime)),
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(pl.leaseTime/2)),
			dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(pl.leaseTime*7/8)))
	}
	r, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		p.count("onboarding_reply_error")
		return nil
	}
	// RFC 2131 table 3: ciaddr 0 in an OFFER, the client's in an ACK;
	// giaddr 0 (no relay on the client's link), no siaddr.
	r.ClientIPAddr, r.GatewayIPAddr, r.ServerIPAddr, r.HopCount = net.IPv4zero, net.IPv4zero, net.IPv4zero, 0
	if mt == dhcpv4.MessageTypeAck && req.ClientIPAddr != nil {
		r.ClientIPAddr = append(net.IP(nil), req.ClientIPAddr.To4()...)
	}
	return r
}

// handoverKeep is how many onboarding lease times a device's garden
// address is kept for it after its handover (endOnboardingLocked): a
// handover that fails is known within one lease time, and the device
// asks again after that.
const handoverKeep = 3
