package dhcpproxy

import (
	"sync"
	"sync/atomic"
	"time"
)

// bucket is a token bucket: rate tokens per second up to burst.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) take(now time.Time, rate, burst int) bool {
	if b.last.IsZero() {
		b.tokens, b.last = float64(burst), now
	}
	b.tokens = min(float64(burst), b.tokens+now.Sub(b.last).Seconds()*float64(rate))
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// full reports whether the bucket has refilled (it can be forgotten).
func (b *bucket) full(now time.Time, rate, burst int) bool {
	return b.tokens+now.Sub(b.last).Seconds()*float64(rate) >= float64(burst)
}

// limiter owns the per-MAC and per-circuit token buckets; mu guards them
// and is held only inside these methods.
type limiter struct {
	mu  sync.Mutex
	lim *atomic.Pointer[Limits] // the rates and bursts (read at each call)
	// mac holds a MAC's bucket on each circuit it is heard on: messages
	// with its MAC on another circuit (a device there forging it) spend
	// none of the budget of the device on its own, whose renewals there
	// keep its binding (endOtherCircuits) and must not be rate-limited
	// by someone else's flood.
	mac     map[subKey]*bucket
	circuit map[circuitKey]*bucket
	// declines counts the DECLINEs of a bound subscriber's own address
	// passed to its ISP (allowDecline).
	declines map[subKey]declineCount
	// macMem and declineMem are mac's and declines' peaks, for forget's
	// remaking of them (mapMem). circuit is not remade: it holds one
	// bucket per circuit configured (allow's callers find the circuit
	// first), never forgotten.
	macMem, declineMem mapMem
}

// A bound subscriber's DECLINEs of its own address are passed to its ISP
// at most declineBurst times in a declineWindow; beyond, the address is
// released to the ISP instead (endByClient). An ISP's server quarantines
// a declined address (Kea: a day, decline-probation-period), so a
// subscriber declining every address it is given, within the general
// rate limit, took one address from the ISP's pool a second (a trial
// quarantined 10 in 10 s). A genuine DECLINE (RFC 2131 §4.4.1: the
// address is in use on the client's link) is rare, and its conflict is
// on that subscriber's own link, which ispmux keeps apart from the
// others: a released address given to another subscriber does not meet
// it.
const (
	declineBurst  = 3
	declineWindow = time.Hour
)

// declineCount is a subscriber's DECLINEs passed on since since.
type declineCount struct {
	since time.Time
	n     int
}

func (l *limiter) init(lim *atomic.Pointer[Limits]) {
	l.lim = lim
	l.mac = map[subKey]*bucket{}
	l.circuit = map[circuitKey]*bucket{}
	l.declines = map[subKey]declineCount{}
	l.macMem.div, l.declineMem.div = 16, 16 // see forget
}

// allowDecline reports whether sk's DECLINE at now may be passed to its
// ISP (and counts it), or is over declineBurst in declineWindow. Only a
// bound subscriber's DECLINE of its own address is counted, so the map
// is bounded by the bindings; forget drops the counts whose window ended.
func (l *limiter) allowDecline(sk subKey, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.declines[sk]
	if d.since.IsZero() || now.Sub(d.since) >= declineWindow {
		d = declineCount{since: now}
	}
	if d.n >= declineBurst {
		l.declines[sk] = d
		return false
	}
	d.n++
	l.declines[sk] = d
	return true
}

// allow applies the per-MAC (on its circuit) and then the per-circuit
// limit: a subscriber over its own limit does not spend the circuit's
// shared budget. Callers admit the MAC (registered, not blocked) first,
// so the per-MAC state is bounded by the registry times the circuits a
// MAC is sent on, and forget drops it once refilled.
//
// It returns "" when the message may go on, else which limit refused it:
// "mac" (this subscriber) or "circuit" (its access circuit as a whole).
func (l *limiter) allow(sk subKey, now time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	mb := l.mac[sk]
	if mb == nil {
		mb = &bucket{}
		l.mac[sk] = mb
	}
	lim := l.lim.Load()
	if !mb.take(now, lim.MACRate, lim.MACBurst) {
		return "mac"
	}
	cb := l.circuit[sk.circuit]
	if cb == nil {
		cb = &bucket{}
		l.circuit[sk.circuit] = cb
	}
	if !cb.take(now, lim.CircuitRate, lim.CircuitBurst) {
		return "circuit"
	}
	return ""
}

// forgetBudget is how many per-MAC buckets, and DECLINE counts, forget
// looks at a tick.
const forgetBudget = 1 << 16

// forget drops the per-MAC buckets that have refilled (they hold nothing)
// and the DECLINE counts whose window ended, looking at forgetBudget of
// each at most (the map's random order reaches the rest at the next
// ticks): a walk of a million buckets, an outage's burst, held mu 112–172
// ms on the 2-CPU lab VM at every tick (a quarter second), every DHCP
// message's allow waiting on it; a budget's takes 8–18 ms (17–38 when
// it drops them all). A refilled bucket kept a few ticks longer is the
// same as none: take tops it up to the burst, where a new one starts
// there; a DECLINE count kept past its window is restarted by
// allowDecline. With a million buckets nine in ten of them live, the
// refilled tenth were all dropped within 66 ticks (a review's trial).
//
// Both maps are remade once what they hold has fallen to a sixteenth of
// their peak (mapMem), as the transactions' table is at a quarter
// (shrink): an outage's burst, every modem's DISCOVER within seconds,
// leaves a bucket per subscriber, forgotten a burst's refill later
// (MACBurst/MACRate), and the map kept their room for good (200K: 7 MB;
// 200K DECLINE counts: 15 MB; TestBurstMapsReleaseMemory). Only forget
// deletes from them, so the peak it sees before deleting is theirs. The
// copy is made under mu: the tick that remakes what is left of a million
// buckets takes 61–181 ms at a quarter, 27–36 ms at a sixteenth; the
// budget paces the drain (a quarter to a sixteenth of a
// million in three ticks), so the sixteenth costs little memory more.
func (l *limiter) forget(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.lim.Load()
	l.macMem.note(len(l.mac))
	n := 0
	for sk, b := range l.mac {
		if b.full(now, lim.MACRate, lim.MACBurst) {
			delete(l.mac, sk)
		}
		if n++; n == forgetBudget {
			break
		}
	}
	if l.macMem.due(len(l.mac)) {
		l.mac = remade(l.mac)
	}
	l.declineMem.note(len(l.declines))
	n = 0
	for sk, d := range l.declines {
		if now.Sub(d.since) >= declineWindow {
			delete(l.declines, sk)
		}
		if n++; n == forgetBudget {
			break
		}
	}
	if l.declineMem.due(len(l.declines)) {
		l.declines = remade(l.declines)
	}
}
