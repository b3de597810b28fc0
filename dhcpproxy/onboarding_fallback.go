package dhcpproxy

import (
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/ispmux/ispmux/internal/binding"
	"github.com/ispmux/ispmux/subscribers"
)

// Handover fallback: a device handed over to its ISP (onboarding.go,
// Handover) that its ISP refuses, or leaves unanswered, goes back to the
// walled garden, where the portal tells its user why, and is handed over
// again about once a garden lease time until its ISP takes it:
//
//   - Failed: while the MAC is held on the circuit for its handover
//     (heldOn: the handover is at most one lease time older than the
//     device's last DISCOVER or REQUEST there) and is bound at no ISP
//     there, its ISP NAKed its SELECTING REQUEST, or answered its
//     DISCOVER with NAKs only (refused); or its DISCOVERs and SELECTING
//     REQUESTs went unanswered (their timeout events) for one onboarding
//     lease time from the first of them timing out (unanswered; a retry's
//     at the first timeout: fallback.silence). A device
//     bound before, or handed over longer ago than its hold, is not sent
//     to the garden: its ISP's outage is reported as ever (nak, timeout
//     events), nothing more. Each return to the garden counts
//     handover_failed and handover_failed_REASON.
//   - Back in the garden: its DISCOVER, and its REQUEST for its garden
//     offer or lease, are served from the circuit's onboarding pool with
//     the rules, lease time and caps of a device without a record; the
//     grant's onboarded event says why it is back. Its REQUEST for any
//     other address (an ISP's late OFFER, taken) goes to its ISP.
//   - Retry: its first DISCOVER or REQUEST for its garden address one
//     lease time or more after the failure (with T1 half the lease: its
//     second renewal) is the handover again (handover_retry): the
//     REQUEST NAKed, the DISCOVER relayed, as for a claim. The ISP takes
//     it now: bound, the failure forgotten. Still failing: back in the
//     garden.
//   - Asked retry: a claim again on the portal with the same ISP and
//     customer ID (the user had the ISP fix it; the registration, and so
//     the record, unchanged) asks for the retry now (RetryHandover): its
//     next DISCOVER or REQUEST (its renewal at T1 at the latest) is the
//     retry, and its failure is not reported (OnboardingLease) until the
//     retry's outcome is known: the portal shows it switching, and a new
//     failure again. Asked retries are due handoverAskEvery apart at
//     least (a later ask's is then due that long after the previous one,
//     if before the retry's time), so a subscriber claiming again and
//     again cannot hammer its ISP with handovers (the claims are limited
//     too: tenants.ClaimLimits).
//   - The failure is a record per MAC in RAM (at most maxFallbacks;
//     beyond, a failing handover is left as it was, handover_fallback_full),
//     forgotten once the MAC is bound at an ISP on that circuit, or
//     registered to another ISP or customer (the next handover is then at
//     once; until that message the lease no longer gives the failure, so
//     a claim corrected on the portal is not shown as refused), or
//     fallbackKeep after its last use (two garden lease times, at least
//     handoverFallbackKeep: the device's next message, its renewal or
//     its retry, comes within one). A restart loses them, but a garden
//     lease restored that was granted after its MAC's registration was
//     last written was a return to the garden (a registered MAC's
//     DISCOVER is otherwise its handover): restoreFallback records it
//     again, failed (HandoverFailedBeforeStart, the reason lost), its
//     retry one lease time after the grant.
//
// A switch the subscriber made on the portal is a handover too
// (switch_fallback.go). Only a MAC with a device record that held an
// onboarding lease, or switched by a claim, gets a record, so a
// subscriber's messages cannot grow it beyond the registry, and
// maxFallbacks bounds it regardless.

// Why a device is back in the garden (OnboardingLease.HandoverFailed).
const (
	// HandoverRefused: its ISP's DHCP server refused it (DHCPNAK).
	HandoverRefused = "refused"
	// HandoverUnanswered: its ISP's DHCP server did not answer.
	HandoverUnanswered = "unanswered"
	// HandoverFailedBeforeStart: its handover failed before ispmux
	// started (restoreFallback), which way is not known.
	HandoverFailedBeforeStart = "failed"
)

const (
	// maxFallbacks bounds the handover records.
	maxFallbacks = 4096
	// handoverFallbackKeep is how long a record outlives its last use
	// (a failure, a message served from the garden) at least
	// (fallbackKeep).
	handoverFallbackKeep = 5 * time.Minute
	// handoverAskEvery is how far apart retries asked for
	// (RetryHandover) are due at least.
	handoverAskEvery = time.Minute
)

// fallbackKeep is how long a record on pl outlives its last use: two of
// pl's lease times, at least handoverFallbackKeep. A device back in the
// garden sends its next message within one lease time (its renewal at
// T1, else its rebinding, else its DISCOVER once its lease ends), and its
// retry is one lease time after the failure: a record gone before would
// hand it over at its next renewal, not once a lease time.
func fallbackKeep(pl *obPool) time.Duration {
	return max(handoverFallbackKeep, 2*pl.leaseTime)
}

// fallback is a MAC's failing handover on pool's circuit, to isp as
// customer.
type fallback struct {
	pool          *obPool
	isp, customer string
	// silentSince is when its handover's first message timed out (zero:
	// none since the handover or its retry).
	silentSince time.Time
	// reason is why it is back in the garden (HandoverRefused,
	// HandoverUnanswered); "": not, its handover goes on.
	reason string
	// retryAt is when it is handed over again (reason set).
	retryAt time.Time
	// asked: its retry was asked for (RetryHandover) and is due at
	// retryAt; its failure is not reported until the retry's outcome.
	asked bool
	// askedDue is when the last retry asked for was due (kept over the
	// retry): the next is not due before handoverAskEvery later.
	askedDue time.Time
	// until is when the record is forgotten.
	until time.Time
	// retry: this handover is a retry of a failed one (handover_retry,
	// or asked): its silence sends it back to the garden at its first
	// timeout (silence).
	retry bool
}

// silence is how long f's handover may go unanswered, from its first
// message's timeout, before the device goes back to the garden: one
// onboarding lease time for a first handover (an ISP slow to set up a
// new customer gets that long), none for a retry (its ISP was silent, or
// refused, for the first; a retry that times out again has the device
// back in the garden at once). Before, every retry waited a lease time
// too: a device whose ISP stayed silent spent about 30 s of every ~60 s
// cycle without an address, and its portal page loaded half the time
// (found by a new-user trial).
func (f *fallback) silence() time.Duration {
	if f.retry {
		return 0
	}
	return f.pool.leaseTime
}

// fallbacks are the handover records by MAC, guarded by mu (never held
// with another lock).
type fallbacks struct {
	mu sync.Mutex
	m  map[uint64]fallback
}

// get returns mac's record, live at now.
func (t *fallbacks) get(mac uint64, now time.Time) (fallback, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.m[mac]
	if !ok || !f.until.After(now) {
		return fallback{}, false
	}
	return f, true
}

// update applies fn to mac's record (a new one: the zero record, with
// pool, isp and customer), keeps it fallbackKeep from now and
// returns it; false: no room for a new one.
func (t *fallbacks) update(mac uint64, pl *obPool, s subject, now time.Time, fn func(*fallback)) (fallback, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.m[mac]
	if ok && (!f.until.After(now) || f.pool != pl || f.isp != s.isp || f.customer != s.customer) {
		ok = false // stale, or of another handover
	}
	if !ok {
		if t.m == nil {
			t.m = map[uint64]fallback{}
		}
		if _, had := t.m[mac]; !had && len(t.m) >= maxFallbacks {
			t.sweepLocked(now)
			if len(t.m) >= maxFallbacks {
				return fallback{}, false
			}
		}
		f = fallback{pool: pl, isp: s.isp, customer: s.customer}
	}
	fn(&f)
	f.until = now.Add(fallbackKeep(pl))
	t.m[mac] = f
	return f, true
}

// ask moves the retry of mac's record, back in the garden and of isp and
// customer, to now (handoverAskEvery after the last asked one's at the
// earliest; never later than it was) and marks it asked, unless it is
// already, and returns it; false: no such record.
func (t *fallbacks) ask(mac uint64, isp, customer string, now time.Time) (fallback, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.m[mac]
	if !ok || !f.until.After(now) || f.reason == "" || f.isp != isp || f.customer != customer {
		return fallback{}, false
	}
	if f.asked {
		return f, true
	}
	due := now
	if next := f.askedDue.Add(handoverAskEvery); next.After(due) {
		due = next
	}
	if due.Before(f.retryAt) {
		f.retryAt = due
	}
	f.asked, f.askedDue = true, f.retryAt
	f.until = now.Add(fallbackKeep(f.pool))
	t.m[mac] = f
	return f, true
}

// live returns a copy of the records live at now, by MAC.
func (t *fallbacks) live(now time.Time) map[uint64]fallback {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[uint64]fallback{}
	for mac, f := range t.m {
		if f.until.After(now) {
			out[mac] = f
		}
	}
	return out
}

// drop forgets mac's record.
func (t *fallbacks) drop(mac uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, mac)
}

// sweep forgets the records past their time and returns the others'
// MACs and pools.
func (t *fallbacks) sweep(now time.Time) map[uint64]*obPool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweepLocked(now)
	if len(t.m) == 0 {
		return nil
	}
	out := make(map[uint64]*obPool, len(t.m))
	for mac, f := range t.m {
		out[mac] = f.pool
	}
	return out
}

// sweepFallbacks forgets the handover records past their time, and those
// of MACs bound at an ISP on their circuit (Run's tick).
func (p *Proxy) sweepFallbacks(now time.Time) {
	for mac, pl := range p.fb.sweep(now) {
		if p.hasLease(subKey{circuitKey{pl.c.Port, pl.c.VLAN}, mac}) {
			p.fb.drop(mac)
		}
	}
}

func (t *fallbacks) sweepLocked(now time.Time) {
	for mac, f := range t.m {
		if !f.until.After(now) {
			delete(t.m, mac)
		}
	}
}

// handoverRefusedByNak notes the ISP's NAK to t, a SELECTING REQUEST (not
// a renewal), as its handover's failure (refused), if it is one.
func (p *Proxy) handoverRefusedByNak(t *txn, now time.Time) {
	if t.msgType != dhcpv4.MessageTypeRequest || !t.selecting || t.renew != nil {
		return
	}
	s := regSubject(t.sub.mac, t.circuit, t.reg)
	p.handoverFailed(s, HandoverRefused, now)
}

// handoverTimedOut notes the timeout of to, a DISCOVER or a SELECTING
// REQUEST (not a renewal), as its handover's failure, if it is one:
// refused when the ISP answered the DISCOVER with a NAK, else silence.
func (p *Proxy) handoverTimedOut(to timedOut, now time.Time) {
	if to.renew != nil || (to.mt != dhcpv4.MessageTypeDiscover && !(to.mt == dhcpv4.MessageTypeRequest && to.selecting)) {
		return
	}
	why := HandoverUnanswered
	if to.nakBy.IsValid() {
		why = HandoverRefused
	}
	p.handoverFailed(to.subj, why, now)
}

// handoverFailed notes that s's ISP refused it (why HandoverRefused) or
// left a message of it unanswered (HandoverUnanswered), if s's MAC is
// being handed over on s's access (heldOn, or a record of its handover
// there) and is not bound there: refused sends it back to the garden at
// once, silence once it has lasted one lease time.
func (p *Proxy) handoverFailed(s subject, why string, now time.Time) {
	pl, ok := p.handoverPool(s, now)
	if !ok {
		return
	}
	failed := false
	f, ok := p.fb.update(s.mac, pl, s, now, func(f *fallback) {
		if f.reason != "" {
			return // back in the garden already: a late answer
		}
		if why == HandoverUnanswered {
			if f.silentSince.IsZero() {
				f.silentSince = now
			}
			if now.Sub(f.silentSince) < f.silence() {
				return
			}
		}
		p.backToGarden(f, why, now)
		failed = true
	})
	if !ok {
		p.count("handover_fallback_full")
		return
	}
	if failed {
		// Its return's onboarded event, logged, says it too.
		p.log.Debug("dhcp: handover failed, back to the walled garden", "mac", binding.MACString(s.mac), "access", s.access,
			"isp", s.isp, "reason", why, "retry_at", f.retryAt)
	}
}

// backToGarden marks f's device back in the garden for why, from now:
// handed over again one lease time later.
func (p *Proxy) backToGarden(f *fallback, why string, now time.Time) {
	f.reason, f.retryAt = why, now.Add(f.pool.leaseTime)
	p.count("handover_failed")
	p.count("handover_failed_" + why)
}

// handoverPool returns the onboarding pool of s's access whose handover
// s's MAC is in at now (its record's, heldOn's, or a recent claim's),
// unless it is bound at an ISP there.
func (p *Proxy) handoverPool(s subject, now time.Time) (*obPool, bool) {
	var pl *obPool
	if f, ok := p.fb.get(s.mac, now); ok {
		pl = f.pool
	} else if h, held := p.ob.heldOn(s.mac, now); held {
		pl = h
	} else if h, recent := p.recentClaim(s, now); recent {
		pl = h
	} else {
		return nil, false
	}
	if pl.c.Name != s.access || p.hasLease(subKey{circuitKey{pl.c.Port, pl.c.VLAN}, s.mac}) {
		return nil, false
	}
	return pl, true
}

// fromGarden serves m of sk's MAC (registered, on c) from the garden if
// its handover failed (see above), and reports whether it did; false: the
// handover's rules apply (onboardingHandover), for a retry too.
func (p *Proxy) fromGarden(c *Circuit, m *dhcpv4.DHCPv4, sk subKey, now time.Time) bool {
	f, ok := p.fb.get(sk.mac, now)
	if !ok || f.pool.c != c {
		return false
	}
	mt := m.MessageType()
	if mt != dhcpv4.MessageTypeDiscover && mt != dhcpv4.MessageTypeRequest {
		return false // INFORM, RELEASE, DECLINE: the handover's rules
	}
	if !p.stillRegistered(sk.mac, f) || p.hasLease(sk) {
		// Registered elsewhere since (handed over at once), or bound.
		p.fb.drop(sk.mac)
		return false
	}
	s := subject{mac: sk.mac, isp: f.isp, customer: f.customer, access: c.Name}
	if f.reason == "" {
		// Its handover goes on: a DISCOVER after one lease time of
		// silence is not relayed again.
		if mt != dhcpv4.MessageTypeDiscover || f.silentSince.IsZero() || now.Sub(f.silentSince) < f.silence() {
			return false
		}
		if f, ok = p.fb.update(sk.mac, f.pool, s, now, func(f *fallback) {
			if f.reason == "" {
				p.backToGarden(f, HandoverUnanswered, now)
			}
		}); !ok {
			return false
		}
	}
	if mt == dhcpv4.MessageTypeRequest {
		asked := addrOf(m.RequestedIPAddress())
		if !asked.IsValid() || asked.IsUnspecified() {
			asked = addrOf(m.ClientIPAddr)
		}
		if !asked.IsValid() || !p.ob.mine(sk.mac, f.pool, asked) {
			return false // another address: its ISP's, say
		}
	}
	if !now.Before(f.retryAt) {
		// Time to try its ISP again: the handover, afresh.
		p.fb.update(sk.mac, f.pool, s, now, func(f *fallback) {
			*f = fallback{pool: f.pool, isp: f.isp, customer: f.customer, askedDue: f.askedDue, retry: true}
		})
		p.count("handover_retry")
		return false
	}
	p.fb.update(sk.mac, f.pool, s, now, func(*fallback) {})
	p.onboard(c, f.pool, m, sk.mac, now)
	return true
}

// inGarden returns the record of mac, holding an onboarding lease on pl,
// if it is back in the garden (its reason set); false: it is not. A
// record of another registration than mac's now (another ISP or customer
// ID, a claim corrected on the portal, say) is no failure of it: its next
// message hands it over at once (fromGarden).
func (p *Proxy) inGarden(mac uint64, pl *obPool, now time.Time) (fallback, bool) {
	f, ok := p.fb.get(mac, now)
	if !ok || f.pool != pl || f.reason == "" || !p.stillRegistered(mac, f) {
		return fallback{}, false
	}
	return f, true
}

// RetryHandover asks for the failed handover of mac, back in the garden
// (see above), to be tried again at its next DISCOVER or REQUEST instead
// of one lease time after the failure, and returns when the retry is due
// (now, or handoverAskEvery after the last asked one's); until its
// outcome is known the failure is not reported (OnboardingLease). The
// portal asks after a claim again from its failure page: with the same
// ISP and customer ID the registration, and so the record, is unchanged.
// False: mac has no failed handover of its registration now (none, its
// retry under way, or registered elsewhere since: handed over at its next
// message anyway).
func (p *Proxy) RetryHandover(mac uint64) (time.Time, bool) {
	now := p.now()
	f, ok := p.fb.get(mac, now)
	if !ok || f.reason == "" || !p.stillRegistered(mac, f) {
		return time.Time{}, false
	}
	if f, ok = p.fb.ask(mac, f.isp, f.customer, now); !ok {
		return time.Time{}, false
	}
	p.count("handover_retry_asked")
	p.log.Debug("dhcp: handover retry asked", "mac", binding.MACString(mac), "access", f.pool.c.Name, "isp", f.isp, "retry_at", f.retryAt)
	return f.retryAt, true
}

// stillRegistered reports whether mac is registered to f's ISP and
// customer ID, the handover f records: not since registered elsewhere.
func (p *Proxy) stillRegistered(mac uint64, f fallback) bool {
	reg, ok := p.reg.Lookup(mac)
	return ok && reg.ISP == f.isp && reg.CustomerID == f.customer
}

// withFailure is l with its handover's failure, if any (or its asked
// retry: HandoverISP and HandoverRetry without HandoverFailed).
func (p *Proxy) withFailure(l obLease, now time.Time) OnboardingLease {
	o := l.public()
	if f, ok := p.inGarden(l.mac, l.pool, now); ok {
		o.HandoverISP, o.HandoverRetry = f.isp, f.retryAt
		if !f.asked {
			o.HandoverFailed = f.reason
		}
	}
	return o
}

// fallbackNote is the onboarded event's note for mac back in the garden
// on pl ("": not).
func (p *Proxy) fallbackNote(mac uint64, pl *obPool, now time.Time) string {
	f, ok := p.inGarden(mac, pl, now)
	if !ok {
		return ""
	}
	return "; back in the walled garden: its handover to ISP " + f.isp + " failed (" + f.reason + "), retried every lease time"
}

// restoreFallback records again, at a start, the failed handover a
// restored garden lease l of mac (on pool pl) was granted for: l was
// granted after mac's registration was last written, and a registered
// MAC's DISCOVER is its handover unless its handover failed, so l is its
// return to the garden. The record, in RAM, died with the process: without
// it the device was handed over at its next renewal, before its retry was
// due (about 30 s more without an address, then back in the garden), and
// its portal page promised a switch instead of saying its ISP had not
// taken it (a new-user trial). The reason is not known (the grant's
// onboarded event says it): HandoverFailedBeforeStart. The retry is due
// one lease time after the grant, as backToGarden sets it. Counted as
// handover_failure_restored.
func (p *Proxy) restoreFallback(mac uint64, pl *obPool, l subscribers.OnboardingLease, now time.Time) {
	reg, ok := p.reg.Lookup(mac)
	if !ok || reg.Blocked || reg.Suspended() || reg.ISP == "" || p.isps[reg.ISP] == nil || reg.Access != "" && reg.Access != pl.c.Name {
		// Not a handover's failure: a device its ISP suspended, or
		// of an ISP no longer configured, is refused as ever.
		return
	}
	r, err := p.store.Registration(l.MAC)
	if err != nil || !r.Updated.Before(l.Granted) {
		return
	}
	if cu, err := p.store.Customer(reg.ISP, reg.CustomerID); err == nil && !cu.Updated.Before(l.Granted) {
		// Its customer changed since the grant: a suspension lifted
		// while ispmux was stopped (the garden served the device for
		// it, suspended_onboarding), not a handover that failed; the
		// device is handed over at its next message. A review: the
		// portal said its ISP had not connected it.
		return
	}
	s := subject{mac: mac, isp: reg.ISP, customer: reg.CustomerID, access: pl.c.Name}
	if _, ok := p.fb.update(mac, pl, s, now, func(f *fallback) {
		f.reason, f.retryAt = HandoverFailedBeforeStart, l.Granted.Add(pl.leaseTime)
	}); ok {
		p.count("handover_failure_restored")
	}
}
