package dhcpproxy

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/internal/failpoint"
	"github.com/ispmux/ispmux/subscribers"
)

// How onboarding leases end: released or declined by the client, handed
// over to the ISP the subscriber chose, expired, the device blocked; and
// how they come back at a start (restoreOnboarding).

// onboardEndByClient ends mac's lease of ip on its RELEASE (decline:
// DECLINE, and ip is quarantined one lease time). A DECLINE of an offered
// address drops the offer and quarantines it too. Anything else: nothing.
func (p *Proxy) onboardEndByClient(pl *obPool, mac uint64, ip netip.Addr, decline bool, now time.Time) {
	reason := subscribers.OnboardingEndReleased
	if decline {
		reason = subscribers.OnboardingEndDeclined
	}
	mu := p.lockSub(mac)
	l, ok := p.ob.leaseOf(mac)
	if ok && l.pool == pl && l.ip == ip {
		ended := p.endOnboardingLocked(l.stored(), reason)
		mu.Unlock()
		if ended && decline {
			p.ob.quarantineAddr(ip, now.Add(pl.leaseTime), 0, false)
		}
		return
	}
	mu.Unlock()
	if decline && p.ob.mine(mac, pl, ip) {
		p.ob.forgetOffer(mac)
		p.ob.quarantineAddr(ip, now.Add(pl.leaseTime), 0, false)
		p.count("onboarding_offer_declined")
		return
	}
	p.count("onboarding_release_not_own")
}

// endHandover ends mac's onboarding lease if it is on c (handover: the MAC
// has a device record and turns to its ISP, on c) and holds the MAC on c
// one lease time from now (heldOn), so that no other circuit is served
// the MAC's DHCP while the device does its DORA with its ISP on c (the
// onboarding lease just ended, nothing else would hold it). A lease on
// another circuit is not this message's to end (takeOnboarding).
func (p *Proxy) endHandover(c *Circuit, mac uint64, now time.Time) {
	if l, ok := p.ob.leaseOf(mac); !ok || l.pool.c != c {
		return // the common case, without the stripe
	}
	defer p.lockSub(mac).Unlock()
	l, ok := p.ob.leaseOf(mac)
	if !ok || l.pool.c != c {
		return
	}
	if p.endOnboardingLocked(l.stored(), subscribers.OnboardingEndHandover) {
		p.ob.hold(mac, l.pool, now.Add(l.pool.leaseTime))
	}
}

// endOnboardingStored is endOnboardingLocked for a lease of the store
// (restore, a commit not installable); the caller holds mac's stripe.
func (p *Proxy) endOnboardingStored(l subscribers.OnboardingLease, reason string) bool {
	return p.endOnboardingLocked(l, reason)
}

// notInstalled is the end reason of an onboarding lease the tables
// refused with err: another subscriber holds the address (conflict), or
// there is no room (the MAC table full).
func notInstalled(err error) string {
	if errors.Is(err, binding.ErrConflict) {
		return subscribers.OnboardingEndConflict
	}
	return subscribers.OnboardingEndNoRoom
}

// endOnboardingLocked removes the lease l and appends its onboarding-ended
// event (one transaction), then forgets and unbinds it, unless the MAC's
// entry in the tables is no longer the garden's (bound to an ISP or made
// a static subscriber since: that binding replaced the garden's). False:
// the store refused, nothing changed. The caller holds the MAC's stripe.
func (p *Proxy) endOnboardingLocked(l subscribers.OnboardingLease, reason string) bool {
	mac := binding.MAC48(l.MAC)
	ev := subject{mac: mac, access: l.Access}.event(subscribers.EventOnboardingEnded, l.IP, reason)
	e, found, err := p.store.EndOnboarding(l.MAC, ev)
	if err != nil {
		p.storeError("dhcp: onboarding lease end not committed; nothing changed", "mac", binding.MACString(mac), "reason", reason, "err", err)
		return false
	}
	if found {
		failpoint.Hit(failpoint.OnboardEndAfterCommit)
	}
	if held, ok := p.ob.remove(mac); ok {
		c := held.pool.c
		// Only the garden's binding: the MAC may be bound to an ISP or
		// be a static subscriber now (a reload), whose binding replaced
		// it in the tables.
		if b, ok := p.tables.Holder(binding.GardenVRF, held.ip); ok && b.MAC == mac && b.Port == c.Port && b.VLAN == c.VLAN &&
			!p.hasLease(subKey{circuitKey{c.Port, c.VLAN}, mac}) {
			p.tables.Unbind(c.Port, c.VLAN, mac)
		}
		if reason == subscribers.OnboardingEndHandover {
			// Kept for the device a while: a handover that fails
			// brings it back to the garden, where it gets the same
			// address (allocateLocked), and the portal page it had
			// open works again. It got a new one at each failed
			// retry, which broke its connections to the portal (a
			// portal trial).
			p.ob.quarantineAddr(held.ip, p.now().Add(handoverKeep*held.pool.leaseTime), mac, true)
		}
	}
	if found {
		p.count("onboarding_end_" + reason)
		p.logEvent(e)
	}
	return true
}

// expireOnboarding ends the onboarding leases that ran out, drops the
// offers and quarantines that did (Run's tick).
func (p *Proxy) expireOnboarding(now time.Time) {
	for _, l := range p.ob.due(now) {
		p.expireOnboardingLease(l.mac, now)
		p.progress.Add(1) // a store commit each (Progress)
	}
	p.sweepFallbacks(now)
}

func (p *Proxy) expireOnboardingLease(mac uint64, now time.Time) {
	defer p.lockSub(mac).Unlock()
	l, ok := p.ob.leaseOf(mac)
	if !ok || l.expires.After(now) {
		return // ended, or renewed meanwhile
	}
	if !p.endOnboardingLocked(l.stored(), subscribers.OnboardingEndExpired) {
		p.ob.retry(mac, now.Add(onboardingRetry))
	}
}

// blocked reports whether the operator blocked mac.
func (p *Proxy) blocked(mac uint64) bool {
	reg, ok := p.reg.Lookup(mac)
	return ok && reg.Blocked
}

// endBlockedOnboarding ends mac's onboarding lease, if it holds one, when
// the operator blocked it (RevalidateMACs): a blocked MAC keeps no garden
// service. A store that refuses the end leaves the lease to run out.
func (p *Proxy) endBlockedOnboarding(mac uint64) {
	if _, ok := p.ob.leaseOf(mac); !ok || !p.blocked(mac) {
		return // the common case, without the stripe
	}
	defer p.lockSub(mac).Unlock()
	if l, ok := p.ob.leaseOf(mac); ok && p.blocked(mac) {
		p.endOnboardingLocked(l.stored(), subscribers.OnboardingEndBlocked)
	}
}

// restoreOnboarding reinstalls the stored onboarding leases at start:
// each unexpired one whose circuit still has its pool is bound in the
// garden VRF again (registered since or not: it keeps the garden until its
// handover or expiry); the others are ended (expired, removed; blocked if
// the operator blocked the MAC; handover if the MAC was bound to an ISP
// on that circuit since). Every stored
// lease's address is quarantined one lease time (of its circuit) for the
// other MACs: after a restart no address is handed to another device while
// its last holder may still use it.
func (p *Proxy) restoreOnboarding(now time.Time) (int, error) {
	ls, err := p.store.OnboardingLeases()
	if err != nil {
		return 0, err
	}
	poolOf := func(l *subscribers.OnboardingLease) *obPool {
		if c := p.circuitByName(l.Access, l.VLAN); c != nil {
			return p.ob.pools[circuitKey{c.Port, c.VLAN}]
		}
		return nil
	}
	// Room in the tables, at once, for the leases to bind again, as for
	// the ISP bindings (RestoreLoaded): [portal] max_onboarding may be
	// set to many, and bound one at a time they would grow the tables in
	// steps. Not for those ended below without a bind, expired or of a
	// pool gone, as the ISP bindings' restore does not count its lapsed
	// ones: an onboarding lease lasts 20 s by default, so most of those
	// a restart reads have run out, and counted they grew the tables
	// (which never shrink) for nothing.
	toBind := 0
	for i := range ls {
		if pl := poolOf(&ls[i]); pl != nil && pl.assignable(ls[i].IP) && ls[i].Expires.After(now) {
			toBind++
		}
	}
	if r, ok := p.tables.(reserver); ok && toBind > 0 {
		r.Reserve(toBind)
	}
	n := 0
	for _, l := range ls {
		mac := binding.MAC48(l.MAC)
		pl := poolOf(&l)
		lt := defaultOnboardingLease
		if pl != nil {
			lt = pl.leaseTime
		}
		p.ob.quarantineAddr(l.IP, now.Add(lt), mac, true)
		reason := ""
		switch {
		case pl == nil || !pl.assignable(l.IP):
			reason = subscribers.OnboardingEndRemoved
		case !l.Expires.After(now):
			reason = subscribers.OnboardingEndExpired
		case p.blocked(mac):
			// Blocked by the operator while ispmux was down, or
			// before the lease's end was committed.
			reason = subscribers.OnboardingEndBlocked
		case p.hasLease(subKey{circuitKey{pl.c.Port, pl.c.VLAN}, mac}) || p.isStatic(mac):
			// Bound to an ISP since, or a static subscriber now (its
			// binding is installed before Restore): not installed
			// over it.
			reason = subscribers.OnboardingEndHandover
		}
		if reason == "" {
			if _, taken := p.ob.holder(l.IP); taken {
				reason = subscribers.OnboardingEndConflict
			} else if err := p.tables.Bind(binding.Binding{Port: pl.c.Port, VLAN: pl.c.VLAN, MAC: mac, ISP: binding.GardenVRF, IP: l.IP}); err != nil {
				reason = notInstalled(err)
			}
		}
		if reason != "" {
			mu := p.lockSub(mac)
			ok := p.endOnboardingStored(l, reason)
			mu.Unlock()
			if !ok {
				return n, fmt.Errorf("onboarding lease of %s not ended", binding.MACString(mac))
			}
			continue
		}
		p.ob.put(mac, pl, l.IP, l.Granted, l.Expires)
		p.restoreFallback(mac, pl, l, now)
		n++
	}
	return n, nil
}
